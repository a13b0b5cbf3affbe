"""Appearance augmentation (reloc_train.augment): each effect, determinism, and its use by the
training inputs (images afresh, cached feature maps as augmented copies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reloc_train.augment import AugmentConfig, augment_image
from reloc_train.config import ConfigError, load_config


def _image() -> np.ndarray:
    """A grey textured test image, 60 x 80: squares with sharp edges (grey, so that JPEG at
    quality 100, with its colour subsampling, leaves it almost as it is)."""
    y, x = np.mgrid[0:60, 0:80]
    g = ((x // 4 + y // 5) % 2) * 150 + 50
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


def _sharpness(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img.astype(np.float64), axis=1)).mean())


NONE = dict(gain=(1.0, 1.0), gamma=(1.0, 1.0), blur_sigma=0.0, motion_px=0, noise_sigma=0.0, jpeg_quality=(100, 100))


def _outs(**effect) -> list[np.ndarray]:
    """The outputs for seeds 0..29 with only ``effect`` switched on (the others neutral)."""
    cfg = AugmentConfig(p=1.0, **{**NONE, **effect})
    return [augment_image(_image(), cfg, np.random.default_rng(s)) for s in range(30)]


def test_each_effect_does_what_it_says():
    img = _image()
    # each effect happens about half the time, and does what it says when it does
    dark = [o.astype(float).mean() / img.astype(float).mean() for o in _outs(gain=(0.6, 0.6))]
    assert all(abs(r - 1.0) < 0.01 or abs(r - 0.6) < 0.02 for r in dark) and 5 < sum(r < 0.8 for r in dark) < 25
    sharp = [_sharpness(o) / _sharpness(img) for o in _outs(blur_sigma=1.2)]
    assert 5 < sum(r < 0.85 for r in sharp) < 25 and max(sharp) < 1.01
    streaks = [_sharpness(o) / _sharpness(img) for o in _outs(motion_px=5)]
    assert min(streaks) < 0.9
    jpeg = [np.abs(o.astype(float) - img).mean() for o in _outs(jpeg_quality=(30, 30))]
    assert 5 < sum(d > 1.0 for d in jpeg) < 25
    out = augment_image(img, AugmentConfig(p=1.0), np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    # the same generator state gives the same image: a resumed run sees the same inputs
    a = augment_image(img, AugmentConfig(p=1.0), np.random.default_rng([1, 2, 3]))
    b = augment_image(img, AugmentConfig(p=1.0), np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a, b)


def test_noise_changes_a_flat_image_half_the_time():
    flat = np.full((40, 40, 3), 128, np.uint8)
    outs = [augment_image(flat, AugmentConfig(p=1.0, gain=(1.0, 1.0), gamma=(1.0, 1.0), blur_sigma=0.0,
                                              motion_px=0, noise_sigma=12.0), np.random.default_rng(s))
            for s in range(20)]
    noisy = [o for o in outs if o.std() > 2.0]
    assert noisy and len(noisy) < len(outs)  # about half of them get noise


def test_config_checks():
    cfg = load_config([], ["data.augment.p=0.5", "data.augment.jpeg_quality=[40,80]"])
    assert cfg.data.augment.p == 0.5 and cfg.data.augment.jpeg_quality == (40, 80)
    with pytest.raises(ConfigError, match="data.augment.p must lie in"):
        load_config([], ["data.augment.p=2"])
    with pytest.raises(ConfigError, match="jpeg_quality"):
        load_config([], ["data.augment.jpeg_quality=[90,40]"])


def test_training_inputs_are_augmented_images_or_cached_copies(tiny_scene):
    from reloc_ros.core.model import ModelConfig, RelPoseNet
    from reloc_ros.data.sevenscenes import Scene
    from reloc_train.dataset import FeatureStore, FrameSet, ImageStore, PairDataset
    from reloc_train.pairs import PairConfig

    fs = FrameSet.from_scenes([Scene(tiny_scene)], "train")
    images = ImageStore(fs, (48, 64))
    pairs = PairConfig(max_distance_m=1.5, max_angle_deg=45)
    aug = AugmentConfig(p=1.0)
    clean = PairDataset(fs, images, pairs, seed=3)
    augmented = PairDataset(fs, images, pairs, seed=3, augment=aug)
    again = PairDataset(fs, images, pairs, seed=3, augment=aug)
    differ = [not torch.equal(clean[k]["a"], augmented[k]["a"]) for k in range(8)]
    assert sum(differ) >= 6  # p = 1: almost every image differs (a draw may switch every effect off)
    assert all(torch.equal(augmented[k]["a"], again[k]["a"]) for k in range(8))  # deterministic
    assert all(torch.equal(clean[k]["t"], augmented[k]["t"]) for k in range(8))  # the pose is untouched
    augmented.set_epoch(1)
    again.set_epoch(0)
    assert not all(torch.equal(augmented[k]["a"], again[k]["a"]) for k in range(4))  # new draws each epoch
    # cached frozen stages: the clean maps and two augmented copies of each
    torch.manual_seed(0)
    model = RelPoseNet(ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=32))
    store = FeatureStore(model, images, 2, torch.device("cpu"), augment=AugmentConfig(p=0.5, variants=2))
    plain = FeatureStore(model, images, 2, torch.device("cpu"))
    assert len(store) == len(plain) == len(fs) and store.cache.shape[0] == 3 * len(fs)
    assert torch.equal(store[0], plain[0]) and torch.equal(store.variant(0, 0), plain[0])
    assert not torch.equal(store.variant(0, 1), plain[0]) and not torch.equal(store.variant(0, 1), store.variant(0, 2))
    ds = PairDataset(fs, store, pairs, seed=3, augment=AugmentConfig(p=0.5, variants=2))
    picked = [ds[k]["a"] for k in range(20)]
    n_clean = sum(any(torch.equal(x, store[i]) for i in range(len(fs))) for x in picked)
    assert 3 <= n_clean <= 17  # about half clean, half augmented copies


def test_a_training_run_with_augmentation_on_cached_stages(tiny_scene, tmp_path):
    from reloc_ros.core.model import load_model
    from reloc_train.train import main

    args = ["--data", str(tiny_scene), "--out", str(tmp_path / "run"), "--epochs", "1"]
    for s in ["model.arch=resnet18", "model.input_size=[48,64]", "model.head_hidden=32", "model.pretrained=none",
              "model.freeze_stages=2", "optim.batch_size=4", "run.workers=0", "run.max_steps_per_epoch=2",
              "eval.max_frames=4", "data.pairs.max_distance_m=1.5", "data.pairs.max_angle_deg=45",
              "data.augment.p=0.5", "data.augment.variants=1"]:
        args += ["--set", s]
    assert main(args) == 0
    _, info = load_model(tmp_path / "run" / "model.pt")
    assert info.meta["train_config"]["data"]["augment"]["p"] == 0.5 and info.meta["steps"] == 2
