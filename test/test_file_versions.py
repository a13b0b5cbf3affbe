"""Every file format carries a version: a file of an older or newer version is refused in one
line that names the file and the command that writes it again (the scene metadata's own test
is in test_sevenscenes.py)."""

from __future__ import annotations

import json

import pytest
import torch


def _with_version(src, dst, version):
    payload = torch.load(src, weights_only=True)
    payload["format_version"] = version
    torch.save(payload, dst)
    return dst


def _check(err, path, age, command):
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    assert f"is {age} than the one this code reads" in msg and command in msg, msg


@pytest.mark.parametrize("version,age", [(0, "older"), (99, "newer")])
def test_model_database_and_dro_files_of_another_version(version, age, tmp_path, tiny_model, tiny_db, tiny_dro):
    from reloc_ros.core.database import DatabaseError, FrameDatabase
    from reloc_ros.core.dro import load_dro
    from reloc_ros.core.model import ModelFileError, load_model

    path = _with_version(tiny_model, tmp_path / "model.pt", version)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    _check(e, path, age, "python -m reloc_train.train")
    path = _with_version(tiny_db, tmp_path / "db.pt", version)
    with pytest.raises(DatabaseError) as e:
        FrameDatabase.load(path)
    _check(e, path, age, "python -m reloc_ros.mapping.database build")
    path = _with_version(tiny_dro, tmp_path / "dro.pt", version)
    with pytest.raises(ModelFileError) as e:
        load_dro(path)
    _check(e, path, age, "python -m reloc_train.dro")


@pytest.mark.parametrize("version,age", [(2, "older"), (4, "newer")])
def test_calibration_file_of_another_version(version, age, tmp_path):
    import numpy as np

    from reloc_ros.core.calibration import CALIBRATION_FORMAT_VERSION, Calibration, CalibrationError, fit_calibration

    rng = np.random.default_rng(0)
    X, E = rng.normal(size=(60, 6)), rng.normal(size=(60, 6)) * 0.01
    path = tmp_path / "calibration.json"
    fit_calibration(X, E, np.ones(60, bool)).save(path)
    assert Calibration.load(path).threshold >= 0 and CALIBRATION_FORMAT_VERSION == 3
    d = json.loads(path.read_text())
    d["format_version"] = version
    path.write_text(json.dumps(d))
    with pytest.raises(CalibrationError) as e:
        Calibration.load(path)
    _check(e, path, age, "python -m reloc_ros.eval.calibrate")
