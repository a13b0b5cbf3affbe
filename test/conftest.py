"""Shared fixtures: the real 7-Scenes sample (read-only) and writable copies of it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

#: Where CI puts the sample: ``shared/`` beside the repository checkout.
DEFAULT_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "7scenes-stairs-sample"
SAMPLE_ENV = "RELOC_7SCENES_SAMPLE"


def _sample_path() -> Path:
    env = os.environ.get(SAMPLE_ENV)
    return Path(env) if env else DEFAULT_SAMPLE


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The 12-frame 7-Scenes 'stairs' sample; the tests are skipped when it is absent."""
    path = _sample_path()
    if not (path / "TrainSplit.txt").is_file():
        how = f"${SAMPLE_ENV}={os.environ[SAMPLE_ENV]}" if os.environ.get(SAMPLE_ENV) else "default location"
        msg = f"7-Scenes sample not found at {path} ({how}); set {SAMPLE_ENV} to its folder"
        if os.environ.get("CI"):  # CI clones with shared/ beside the repo: never skip there
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def copy_sample(sample_dir: Path):
    """``copy_sample(dst)``: a writable copy of the sample (which is read-only) at ``dst``."""

    def copy(dst: Path) -> Path:
        shutil.copytree(sample_dir, dst, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("*.rtf", "*.md"))
        for d, _, files in os.walk(dst):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        return dst

    return copy


@pytest.fixture
def scene_copy(copy_sample, tmp_path: Path) -> Path:
    """A writable copy of the sample at ``tmp_path/stairs``, to be broken by a test."""
    return copy_sample(tmp_path / "stairs")


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """A tiny synthetic 7-Scenes-format scene (preset 'tiny', seed 0), rendered once per run."""
    from reloc_sim import synthetic

    root = tmp_path_factory.mktemp("synth")
    return Path(synthetic.generate_scene(root, synthetic.PRESETS["tiny"], seed=0, workers=1, progress=False))


#: Settings of the briefly trained test model (ResNet-18 at 48x64).
TINY_TRAIN = [
    "model.arch=resnet18", "model.input_size=[48,64]", "model.head_hidden=64", "model.pretrained=none",
    "optim.batch_size=8", "optim.lr=1.0e-3", "run.workers=0", "run.log_every=50", "eval.max_frames=4",
    "data.pairs.max_distance_m=1.5", "data.pairs.max_angle_deg=45",
]


@pytest.fixture(scope="session")
def tiny_model(tiny_scene, tmp_path_factory) -> Path:
    """model.pt of a ResNet-18 trained briefly (3 epochs of 8 steps) on the tiny scene."""
    from reloc_train.config import load_config
    from reloc_train.train import Trainer

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = load_config([], TINY_TRAIN + [f"data.root={tiny_scene}", f"run.out={out}", "optim.epochs=3",
                                        "run.max_steps_per_epoch=8", "mtl.method=uniform"])
    Trainer(cfg).fit()
    return out / "model.pt"


@pytest.fixture(scope="session")
def tiny_db(tiny_model, tiny_scene, tmp_path_factory) -> Path:
    """A database of the tiny scene's training frames, built with tiny_model."""
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.mapping.database import build_database
    from reloc_ros.core.model import load_model

    model, info = load_model(tiny_model)
    db = build_database(model, info, [Scene(tiny_scene)], "train", progress=False)
    path = tmp_path_factory.mktemp("db") / "tiny.db.pt"
    db.save(path)
    return path


@pytest.fixture(autouse=True)
def _autograd_left_enabled():
    """A test that leaves torch's autograd disabled would break every later training test."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("the test left torch's autograd disabled")


@pytest.fixture(scope="session")
def tiny_kp_db(tiny_model, tiny_scene, tmp_path_factory) -> Path:
    """The tiny database with SIFT keypoints at 160x120 for the PnP refiner (at most 200 per
    frame, 8 inliers needed: the tiny frames are 80x60)."""
    from reloc_ros.core.model import load_model
    from reloc_ros.core.pnp import PnPConfig
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.mapping.database import build_database

    model, info = load_model(tiny_model)
    db = build_database(model, info, [Scene(tiny_scene)], "train", progress=False,
                        keypoints=PnPConfig(image_size=(160, 120), max_keypoints=200, min_inliers=8))
    path = tmp_path_factory.mktemp("kpdb") / "kp.db.pt"
    db.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_dense_db(tiny_model, tiny_scene, tmp_path_factory) -> Path:
    """The tiny database with dense points for the LM refiner (stages 1 and 0 of the tiny
    ResNet: stride 4, 12x16 maps at its 48x64 input)."""
    from reloc_ros.core.featuremetric import DenseConfig
    from reloc_ros.core.model import load_model
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.mapping.database import build_database

    model, info = load_model(tiny_model)
    db = build_database(model, info, [Scene(tiny_scene)], "train", progress=False,
                        dense=DenseConfig(levels=(1, 0), steps=(1, 1), iterations=5))
    path = tmp_path_factory.mktemp("densedb") / "dense.db.pt"
    db.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_dro(tiny_model, tiny_dense_db, tmp_path_factory) -> Path:
    """dro.pt of a DRO trained briefly (20 steps, 2 iterations per stage) on the tiny dense
    database (references from the same sequence: the tiny scene's sequences do not overlap)."""
    from reloc_train.dro import main

    out = tmp_path_factory.mktemp("dro")
    assert main(["--model", str(tiny_model), "--db", str(tiny_dense_db), "--out", str(out), "--steps", "20",
                 "--batch", "4", "--iterations", "2", "--hidden", "8", "--val-split", "", "--warmup", "5",
                 "--own-sequence-gap", "2", "--device", "cpu"]) == 0
    return out / "dro.pt"
