"""Covariance and confidence calibration (reloc_ros.core.calibration) and the 6-vector error."""

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reloc_ros.core.calibration import (SIGNALS, Calibration, CalibrationError, chi2_quantile, chi2_shares,
                                        fit_calibration, mahalanobis2, precision_recall, signals,
                                        wilson_lower)
from reloc_ros.core.geometry import make_pose, pose_error_vector


def test_error_vector_is_the_world_axes_rotation_and_the_translation_difference():
    R_gt = Rotation.random(random_state=2).as_matrix()
    T_gt = np.eye(4)
    T_gt[:3, :3], T_gt[:3, 3] = R_gt, [1.0, 2.0, 3.0]
    delta = np.array([0.02, -0.01, 0.03])
    T_est = T_gt.copy()
    T_est[:3, :3] = Rotation.from_rotvec(delta).as_matrix() @ R_gt  # R_est = exp(δ) R_gt
    T_est[:3, 3] += [0.1, -0.2, 0.05]
    e = pose_error_vector(T_est, T_gt)
    assert np.allclose(e, [0.1, -0.2, 0.05, *delta], atol=1e-12)
    # the rotation vector of R_gtᵀ R_est, rotated into map axes (the documented convention)
    body = Rotation.from_matrix(R_gt.T @ T_est[:3, :3]).as_rotvec()
    assert np.allclose(R_gt @ body, e[3:], atol=1e-12)
    batch = pose_error_vector(np.stack([T_est, T_gt]), np.stack([T_gt, T_gt]))
    assert batch.shape == (2, 6) and np.allclose(batch[1], 0)


def _synthetic(n, rng):
    """Queries whose error scale is a known function of the signals: the second signal (the
    score margin) sets σ, and a tenth of them are wrong retrievals with metres of error."""
    X = rng.normal(size=(n, len(SIGNALS)))
    sig_t = 0.05 * np.exp(0.6 * X[:, 1])
    sig_r = np.radians(2.0) * np.exp(0.4 * X[:, 1])
    R = Rotation.random(n, random_state=rng.integers(1 << 30)).as_matrix()
    u_t = rng.normal(size=(n, 3)) * sig_t[:, None]
    u_r = rng.normal(size=(n, 3)) * sig_r[:, None]
    wrong = X[:, 0] < -1.3  # a low top-1 score: a wrong place
    u_t[wrong] = rng.normal(size=(wrong.sum(), 3)) * 2.0
    E = np.concatenate([np.einsum("nij,nj->ni", R, u_t), np.einsum("nij,nj->ni", R, u_r)], axis=1)
    return X, E, R, np.ones(n, bool)


def _fit(X, E, R, ok, **kw):
    return fit_calibration(X, E, ok, **kw)


@pytest.mark.parametrize("dof", [1, 3, 6])
def test_chi2_quantile_is_scipy_stats_own(dof):
    from scipy.stats import chi2  # the oracle (the module under test avoids importing scipy.stats)

    for level in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert chi2_quantile(level, dof) == pytest.approx(chi2.ppf(level, dof), rel=1e-12)


def test_fitted_covariance_covers_95_percent_of_new_published_errors():
    rng = np.random.default_rng(1)
    cal = _fit(*_synthetic(3000, rng))
    X, E, R, ok = _synthetic(3000, rng)  # fresh queries from the same world
    p = cal.confidence(X)
    pub = p >= cal.threshold
    good = (np.linalg.norm(E[:, :3], axis=1) <= 0.25) & (np.degrees(np.linalg.norm(E[:, 3:], axis=1)) <= 10)
    assert good[pub].mean() >= 0.93  # the threshold was chosen for 95 % on the fit data
    assert 0.5 < pub.mean() < 0.95
    assert p[X[:, 0] < -1.5].mean() < 0.5 < 0.8 < p[X[:, 0] > 0].mean()  # sees the wrong retrievals
    cov = cal.covariance(X[pub], R[pub])
    shares = chi2_shares(mahalanobis2(E[pub], cov))
    assert 0.92 <= shares["within_chi2_6"] <= 0.98
    assert 0.90 <= shares["within_chi2_t3"] <= 0.99 and 0.90 <= shares["within_chi2_r3"] <= 0.99
    # the σ follows the margin signal: a larger margin gets a larger covariance here
    lo, hi = X[pub][:, 1].argmin(), X[pub][:, 1].argmax()
    assert np.trace(cov[hi][:3, :3]) > 5 * np.trace(cov[lo][:3, :3])
    # block-isotropic: no translation-rotation correlation, equal axes, whatever the rotation
    assert np.allclose(cov[0][:3, 3:], 0) and np.allclose(cov[0][:3, :3], cov[0][0, 0] * np.eye(3))
    assert np.allclose(cal.covariance(X[pub][0], np.eye(3)), cov[0])
    # the inflation is split-conformal on the published fit poses: at least 95 % of them inside
    assert cal.info["fit_chi2"]["within_chi2_6"] >= 0.95 and cal.info["published"] >= 10


def test_precision_recall_counts_frames_without_a_pose_as_unpublished():
    conf = np.array([0.9, 0.8, 0.3, -np.inf])
    good = np.array([True, False, True, False])
    c = precision_recall(conf, good, np.array([0.0, 0.5, 0.85, 0.95]))
    assert np.allclose(c["recall"], [0.75, 0.5, 0.25, 0.0])
    assert np.allclose(c["precision"][:3], [2 / 3, 0.5, 1.0]) and np.isnan(c["precision"][3])


def test_signals_see_disagreement_and_ambiguous_scores():
    T = np.stack([make_pose([0.1 * i, 0, 0], [1, 0, 0, 0]) for i in range(5)])
    t = np.array([[0.3, 0.0, 0.4]] * 5)
    fd = np.array([2.0, 3.0, 3.0, 4.0, 4.0])
    x = signals(T, np.array([0.9, 0.8, 0.7, 0.6, 0.5]), T[2], 5, fd, t)
    assert x.shape == (len(SIGNALS),)
    assert np.isclose(x[0], 0.9) and np.isclose(x[1], 0.4) and np.isclose(x[5], 1.0)
    assert np.isclose(x[2], np.log(2.001)) and np.isclose(x[3], np.log(0.51))  # top-1 feature distance, |t_0|
    far = T.copy()
    far[:, 0, 3] *= 20
    assert signals(far, np.ones(5), far[2], 1, fd, t)[4] > x[4] + 2  # log spread grows
    # a non-finite prediction gives a huge baseline, never a confident-looking one
    assert signals(T, np.ones(5), T[2], 5, fd, np.full((5, 3), np.nan))[3] > np.log(100)


def test_file_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(3)
    cal = _fit(*_synthetic(400, rng), info={"fusion_method": "consensus"})

    class Db:
        checksum = "abc"

    path = tmp_path / "cal.json"
    cal.save(path, Db())
    back = Calibration.load(path, Db())
    x = rng.normal(size=len(SIGNALS))
    R = Rotation.random(random_state=4).as_matrix()
    assert np.allclose(back.covariance(x, R), cal.covariance(x, R)) and back.confidence(x) == cal.confidence(x)
    assert back.info["fusion_method"] == "consensus"

    class Other:
        checksum = "xyz"

    with pytest.raises(CalibrationError, match="another database"):
        Calibration.load(path, Other())
    with pytest.raises(CalibrationError, match="does not exist"):
        Calibration.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="bad.json.*not a readable"):
        Calibration.load(tmp_path / "bad.json")
    d = json.loads(path.read_text())
    d["a_t"] = d["a_t"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match="wrong size: a_t"):
        Calibration.load(tmp_path / "short.json")
    d = json.loads(path.read_text())
    d["inflation"] = -1
    (tmp_path / "neg.json").write_text(json.dumps(d))
    with pytest.raises(CalibrationError, match="non-positive"):
        Calibration.load(tmp_path / "neg.json")


def test_too_few_poses_is_an_error():
    rng = np.random.default_rng(5)
    X, E, R, ok = _synthetic(30, rng)
    ok[:15] = False
    with pytest.raises(ValueError, match="at least 50"):
        fit_calibration(X, E, ok)


def test_threshold_rests_on_enough_poses_and_says_when_the_precision_is_missed():
    rng = np.random.default_rng(6)
    X, E, R, ok = _synthetic(400, rng)
    E[:, :3] *= 4  # most poses are now outside 0.25 m: a 99 % bound is out of reach
    cal = _fit(X, E, R, ok, precision=0.99)
    assert not cal.info["precision_reached"] and not cal.target_met
    assert cal.info["precision_lower_bound"] < 0.99 and "precision" in cal.misses()[0]
    # the bound is Wilson's: a handful of good poses never makes a threshold
    assert cal.info["precision_lower_bound"] == pytest.approx(
        wilson_lower(round(cal.info["precision_at_threshold"] * cal.info["published"]), cal.info["published"]))


def test_wilson_lower_bound_is_scipys():
    from scipy.stats import binomtest  # the oracle

    for k, n in ((10, 10), (97, 100), (0, 5), (299, 300), (40, 73)):
        assert wilson_lower(k, n) == pytest.approx(binomtest(k, n).proportion_ci(0.95, method="wilson").low, abs=1e-9)
    assert wilson_lower(0, 0) == 0.0


def test_a_reached_bound_and_a_missed_recall_floor():
    rng = np.random.default_rng(9)
    X, E, R, ok = _synthetic(1000, rng)
    cal = _fit(X, E, R, ok, precision=0.95, recall_floor=0.5)
    i = cal.info
    assert i["precision_reached"] and i["precision_lower_bound"] >= 0.95 and i["recall_good"] >= 0.5
    assert cal.target_met
    cal = _fit(X, E, R, ok, precision=0.95, recall_floor=1.01)  # no threshold can publish more than all
    assert not cal.target_met and "recall" in " ".join(cal.misses())


def _bound(loc, **info):
    """Provenance of a calibration fitted for ``loc`` (its binding included)."""
    return {"fusion_method": loc.cfg.fusion.method, "refiner": loc.cfg.refiner,
            "binding": loc.calibration_binding(), **info}


def test_a_calibration_fitted_with_other_settings_is_refused(tmp_path, tiny_model, tiny_db):
    from dataclasses import replace

    from reloc_ros.core.database import FrameDatabase
    from reloc_ros.core.localizer import Localizer, LocalizerConfig

    loc = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=3), "cpu")
    path = tmp_path / "calibration.json"
    _fit(*_synthetic(200, np.random.default_rng(3)), info=_bound(loc)).save(path, FrameDatabase.load(tiny_db))
    assert Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=3), "cpu", path).cfg.calibration
    with pytest.raises(CalibrationError, match=r"calibration.json.*other settings.*top_k 3 -> 5"):
        Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=5), "cpu", path)
    fusion = replace(LocalizerConfig().fusion, inlier_t_m=0.3)
    with pytest.raises(CalibrationError, match=r"fusion.inlier_t_m 0.5 -> 0.3"):
        Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=3, fusion=fusion), "cpu", path)
    payload = json.loads(path.read_text())
    del payload["info"]["binding"]
    path.write_text(json.dumps(payload))
    with pytest.raises(CalibrationError, match="records no binding"):
        Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(top_k=3), "cpu", path)


def test_localizer_refuses_a_calibration_of_another_fusion_method(tmp_path, tiny_model, tiny_db):
    from reloc_ros.core.database import FrameDatabase
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.localizer import Localizer, LocalizerConfig

    rng = np.random.default_rng(7)
    path = tmp_path / "calibration.json"
    top1 = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(fusion=FusionConfig(method="top1")), "cpu")
    _fit(*_synthetic(200, rng), info=_bound(top1)).save(path, FrameDatabase.load(tiny_db))
    with pytest.raises(CalibrationError, match=r"calibration.json.*fitted for fusion method 'top1'.*'consensus'"):
        Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(), "cpu", path)
    loc = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(fusion=FusionConfig(method="top1")), "cpu", path)
    assert loc.cfg.calibration is not None


def test_calibrate_command_writes_a_file_the_localizer_applies(tmp_path, tiny_model, tiny_db, tiny_scene, capsys):
    """python -m reloc_ros.eval.calibrate end to end on the tiny scene (its 'train' frames, the
    only split with 20 of them; the command warns that they are in the map)."""
    from reloc_ros.core.database import FrameDatabase
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene, read_color
    from reloc_ros.eval.calibrate import main

    out = tmp_path / "cal" / "calibration.json"
    base = ["--model", str(tiny_model), "--db", str(tiny_db), "--data", str(tiny_scene), "--device", "cpu"]
    assert main(base + ["--holdout", "sequence", "--split", "calib", "--out", str(out)]) == 2  # 16 held-out frames
    assert "at least 50 fused poses" in capsys.readouterr().err and not out.exists()
    assert main(base + ["--holdout", "sequence", "--split", "train", "--fusion", "top1", "--min-poses", "20",
                        "--out", str(out)]) == 0
    cal = Calibration.load(out, FrameDatabase.load(tiny_db))
    assert cal.info["fusion_method"] == "top1" and cal.info["queries"] == 32 and cal.info["split"] == "train"
    assert (out.parent / "calibration.md").read_text().startswith("# Calibration")
    assert (out.parent / "calibration_pr.png").stat().st_size > 10_000
    loc = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(fusion=FusionConfig(method="top1")), "cpu", out)
    fr = Scene(tiny_scene).frames("test")[0]
    r = loc.localize(read_color(fr.color_path))
    assert r.calibrated and r.signals.shape == (len(SIGNALS),) and np.all(np.isfinite(r.signals))
    assert r.confidence == cal.confidence(r.signals)
    assert np.allclose(r.covariance, cal.covariance(r.signals, r.pose[:3, :3]))
    assert r.ok == (r.confidence >= cal.threshold)


def test_a_pose_with_non_finite_signals_is_never_published(tmp_path, tiny_model, tiny_db):
    from dataclasses import replace

    from reloc_ros.core.database import FrameDatabase
    from reloc_ros.core.localizer import Localizer, LocalizerConfig

    rng = np.random.default_rng(8)
    path = tmp_path / "calibration.json"
    cfg = LocalizerConfig(min_confidence=0.0, fusion=replace(LocalizerConfig().fusion, min_inliers=1))
    _fit(*_synthetic(200, rng), info=_bound(Localizer.from_files(tiny_model, tiny_db, cfg, "cpu"))).save(
        path, FrameDatabase.load(tiny_db))
    loc = Localizer.from_files(tiny_model, tiny_db, cfg, "cpu", path)
    h = loc.hypothesize(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    assert loc.fuse(h).ok  # threshold 0: published
    h.feature_dist = np.full(len(h.t), np.nan)
    r = loc.fuse(h)
    assert not r.ok and "non-finite" in r.reason
