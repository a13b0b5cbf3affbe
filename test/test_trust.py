"""Trust on any map: cross-fitted calibration, the default covariance, publish checks."""

import numpy as np
import pytest

from reloc_ros.core.checks import CHECKS, RegressionAgreement
from reloc_ros.core.geometry import make_pose
from reloc_ros.core.refiners import REFINERS, Refinement, Refiner
from reloc_ros.core.uncalibrated import DefaultCovariance, defaults, fit_default


def test_crossfit_folds_hold_out_blocks_with_guards_and_never_touch_test_frames(tiny_scene):
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.eval.calibrate import crossfit_folds

    sc = Scene(tiny_scene)
    train = {f.id for f in sc.frames("train")}
    test = {f.id for f in sc.frames("test")}
    by_seq = crossfit_folds(sc, "train")  # two training sequences: each against the map without it
    assert [{f.seq for f in q} for q, _ in by_seq] == [{1}, {2}]
    assert all(out == {f.id for f in q} and not out & test for q, out in by_seq)
    folds = crossfit_folds(sc, "train", block_share=0.25, guard_share=0.125, folds="block")  # a single run's way
    queried = [f.id for q, _ in folds for f in q]
    assert sorted(queried) == sorted(train)  # every map frame queried once
    for q, out in folds:
        assert out <= train and not out & test
        ids = {f.id for f in q}
        assert ids <= out  # the block itself is out of the map ...
        seq = q[0].seq
        idx = sorted(f.index for f in sc.frames("train") if f.seq == seq)
        lo, hi = idx.index(q[0].index), idx.index(q[-1].index)
        guard = {f"seq-{seq:02d}/frame-{i:06d}" for i in idx[max(0, lo - 2):hi + 3]}
        assert out == guard  # ... with 2 frames (12.5 % of 16) either side, nothing else


def test_database_subset_keeps_each_frames_keypoints(tiny_kp_db):
    from reloc_ros.core.database import FrameDatabase

    db = FrameDatabase.load(tiny_kp_db)
    rows = [3, 0, 7]
    sub = db.subset(rows)
    assert sub.frame_ids == [db.frame_ids[i] for i in rows] and len(sub.keypoints) == 3
    for j, i in enumerate(rows):
        a, b = sub.keypoints.frame(j), db.keypoints.frame(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(sub.poses.numpy(), db.poses.numpy()[rows])


def test_crossfit_calibration_records_what_was_held_out(tiny_model, tiny_db, tiny_scene):
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.eval.calibrate import calibrate

    loc = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=3), "cpu")
    cal, _ = calibrate(loc, [Scene(tiny_scene)], "train", holdout="crossfit", progress=False, min_poses=10)
    h = cal.info["holdout"]
    assert h["method"] == "crossfit" and h["split"] == "train"
    assert sum(b[2] for b in h["blocks"]["synth_a"]) == cal.info["queries"] == 32
    assert cal.info["binding"] == loc.calibration_binding()
    assert cal.info["model_trained_on"] == ["synth_a"] and "optimistic" in cal.info["bias"]  # it trained there
    with pytest.raises(ValueError, match="at least 50"):
        calibrate(loc, [Scene(tiny_scene)], "train", holdout="crossfit", progress=False)


def test_default_covariance_is_a_scale_and_a_floor_per_block():
    d = DefaultCovariance("x", g_t=4.0, g_r=9.0, f_t_m=0.1, f_r_rad=0.02)
    raw = np.diag([1e-4, 4e-4, 9e-4, 1e-6, 1e-6, 1e-6])
    raw[0, 3] = raw[3, 0] = 5e-6
    c = d.apply(raw)
    assert np.allclose(np.diag(c)[:3], 4 * np.diag(raw)[:3] + 0.01)
    assert np.allclose(np.diag(c)[3:], 9 * 1e-6 + 0.02 ** 2)
    assert c[0, 3] == pytest.approx(6 * 5e-6)  # √(g_t g_r) on the cross terms
    assert np.allclose(d.apply(np.full((6, 6), np.nan)), np.diag([0.01] * 3 + [0.0004] * 3))  # floors alone


def test_fit_default_reaches_the_level_on_understated_errors():
    rng = np.random.default_rng(0)
    n = 2000
    C = np.tile(np.diag([1e-4] * 3 + [1e-6] * 3), (n, 1, 1))  # claims 1 cm and 0.06°
    E = np.concatenate([rng.normal(size=(n, 3)) * 0.05, rng.normal(size=(n, 3)) * 0.01], 1)  # is 5 cm, 0.6°
    d, fit = fit_default("x", E, C)
    from reloc_ros.core.calibration import chi2_quantile, mahalanobis2

    d2 = mahalanobis2(E, np.stack([d.apply(c) for c in C]))
    assert 0.94 <= np.mean(d2[:, 1] <= chi2_quantile(0.95, 3)) <= 0.97
    assert 0.94 <= np.mean(d2[:, 2] <= chi2_quantile(0.95, 3)) <= 0.97
    assert fit["median_sigma_t"] == pytest.approx(0.05, rel=0.15)


def test_shipped_defaults_cover_every_builtin_refiner_and_inflate():
    table = defaults()
    for name in ("none", "pnp", "lm", "pnp+lm"):
        d = table[name]
        assert d.g_t >= 1.0 or d.f_t_m >= 0.05, name  # never tighter than the raw covariance claims
    plugin = DefaultCovariance.for_refiner("a_plugin_refiner")
    assert plugin.f_t_m == max(d.f_t_m for d in table.values())


def test_uncalibrated_localizer_publishes_the_default_covariance(tiny_model, tiny_db):
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.ros.startup import covariance_source, initialpose_withheld

    loc = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=3), "cpu")
    h = loc.hypothesize(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    r = loc.fuse(h)
    assert r.covariance_source == "default" and not r.calibrated
    assert np.allclose(r.covariance, DefaultCovariance.for_refiner("none").apply(r.raw_covariance))
    assert "NOT calibrated" in covariance_source(loc) and "no calibration" in initialpose_withheld(loc)


@REFINERS.register("test_jump")
class _Jump(Refiner):
    """A refiner that lands 2 m away from the fused pose, sure of itself (a repeated texture)."""

    signal_names = ("x",)
    row = "jump"

    @classmethod
    def build(cls, setup):
        return cls()

    def image_size(self):
        return (64, 48)

    def run(self, fused, image, K_33):
        pose = fused.pose.copy()
        pose[:3, 3] += [2.0, 0.0, 0.0]
        return Refinement(True, pose, np.eye(6) * 1e-6, np.array([1.0]), 0.99, {"ok": True})


def test_regression_check_stops_a_refined_pose_far_from_the_regression(tiny_model, tiny_db):
    from dataclasses import replace

    from reloc_ros.core.localizer import Localizer, LocalizerConfig

    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    base = LocalizerConfig(top_k=3, refiner="test_jump", fusion=replace(LocalizerConfig().fusion, min_inliers=1))
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    free = Localizer.from_files(tiny_model, tiny_db, base, "cpu")
    r = free.localize(img, K)
    assert r.ok  # without the check the 2 m jump is published
    checked = Localizer.from_files(tiny_model, tiny_db, replace(base, checks=("regression",)), "cpu")
    r = checked.localize(img, K)
    assert not r.ok and "publish check regression" in r.reason and "2.00 m" in r.reason
    assert r.refinement["checks"]["regression"] == {"passed": False, "value": pytest.approx(2.0)}


def test_checks_pass_agreeing_poses_and_fail_without_evidence():
    class Fused:  # what a check reads of the fused result
        pose = make_pose([1.0, 2.0, 0.0], [1, 0, 0, 0])

    near = Refinement(True, make_pose([1.3, 2.0, 0.0], [1, 0, 0, 0]))
    passed, why, v = RegressionAgreement()(Fused, near)
    assert passed and v == pytest.approx(0.3)
    Fused.pose = None
    assert not RegressionAgreement()(Fused, near)[0]
    assert set(CHECKS.names()) >= {"regression", "retrieved"}


def test_verify_check_passes_the_true_pose_and_stops_a_shifted_one(tiny_model, tiny_kp_db, tiny_scene):
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene, read_color

    loc = Localizer.from_files(tiny_model, tiny_kp_db, LocalizerConfig(refiner="pnp", checks=("verify",)), "cpu")
    check = loc.checks[0][1]
    sc = Scene(tiny_scene)
    fr = sc.frames("train")[4]  # a mapped view (the tiny scene's test frames lie beyond 1.5 m of the map)
    img, T = read_color(fr.color_path), sc.pose(fr)
    K = sc.color_intrinsics.scaled(*loc.refine_image_size).K
    passed, _, share = check(None, Refinement(True, T), img, K)
    assert passed and share > 0.2  # the map seen from the true pose lands on the query's features
    shifted = T.copy()
    shifted[:3, 3] += T[:3, :3] @ np.array([0.4, 0.0, 0.0])  # 40 cm sideways: the map lands beside them
    passed, why, low = check(None, Refinement(True, shifted), img, K)
    assert not passed and low < 0.5 * share and "land on matching query features" in why
