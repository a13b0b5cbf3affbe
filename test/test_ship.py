"""Shipping a run as the generic model: half-precision weights, provenance, the improvement rule."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from reloc_ros.core.model import load_model


def test_ship_writes_a_half_precision_model_with_its_provenance_and_refuses_a_worse_one(tiny_model, tiny_scene,
                                                                                      tmp_path):
    from reloc_train.ship import data_fingerprint, main

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(tiny_model, run / "model.pt")
    out = tmp_path / "models" / "generic"
    assert main(["--run", str(run), "--data", str(tiny_scene), "--out", str(out), "--command", "train it"]) == 0
    src, info = load_model(run / "model.pt")
    net, shipped = load_model(out / "model.pt")
    assert (out / "model.pt").stat().st_size < 0.6 * (run / "model.pt").stat().st_size  # float16 on disk
    for k, v in src.state_dict().items():  # the weights, rounded to float16, loaded back into float32
        w = net.state_dict()[k]
        assert w.dtype == v.dtype and torch.allclose(w, v.to(torch.float16).to(v.dtype)), k
    rel = json.loads((out / "release.json").read_text())
    assert rel["version"] == 1 and rel["source_fingerprint"] == info.fingerprint
    assert rel["fingerprint"] == shipped.fingerprint and shipped.meta["release"]["training_command"] == "train it"
    assert rel["data_fingerprint"] == data_fingerprint(tiny_scene) and len(rel["data_fingerprint"]) == 64
    assert rel["criterion"] == pytest.approx(info.meta["criterion"]) and "7-Scenes" in rel["licence"]
    # the same criterion again does not improve: refused, nothing changed; --force ships and says so
    assert main(["--run", str(run), "--data", str(tiny_scene), "--out", str(out)]) == 2
    assert len(list(csv.DictReader(open(out / "versions.csv")))) == 1
    assert main(["--run", str(run), "--data", str(tiny_scene), "--out", str(out), "--force"]) == 0
    rows = list(csv.DictReader(open(out / "versions.csv")))
    assert [r["version"] for r in rows] == ["1", "2"] and [r["forced"] for r in rows] == ["0", "1"]


def test_data_fingerprint_changes_with_any_byte(tmp_path):
    from reloc_train.ship import data_fingerprint

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"12")
    fp = data_fingerprint(tmp_path / "a")
    (tmp_path / "a" / "x.txt").write_bytes(b"13")
    assert data_fingerprint(tmp_path / "a") != fp
