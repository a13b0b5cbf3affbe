"""Feature-metric Levenberg-Marquardt (reloc_ros.core.featuremetric): the analytic Jacobian
against finite differences, and convergence back to the truth on a real synthetic frame."""

import cv2
import numpy as np
import pytest

from reloc_ros.core.featuremetric import FeatureMetricLM, LMConfig, backproject, bilinear, gradients
from reloc_ros.core.geometry import make_pose, pose_errors


def _perturb(T, dc, dr):
    out = T.copy()
    out[:3, 3] += dc
    out[:3, :3] = cv2.Rodrigues(np.asarray(dr, float))[0] @ T[:3, :3]
    return out


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(0)
    F = np.stack([cv2.GaussianBlur(rng.normal(size=(60, 80)), (0, 0), 6) for _ in range(3)]) * 50
    K = np.array([[70.0, 0, 39.5], [0, 70.0, 29.5], [0, 0, 1]])
    T = make_pose([0.1, -0.2, 0.3], np.array([0.98, 0.1, -0.1, 0.1]) / np.linalg.norm([0.98, 0.1, -0.1, 0.1]))
    Xc = np.c_[rng.uniform(-0.5, 0.5, (50, 2)), rng.uniform(2, 3, 50)]
    X = Xc @ T[:3, :3].T + T[:3, 3]
    lm = FeatureMetricLM()
    gu, gv = gradients(F)
    ref = rng.normal(size=(50, 3))
    r0, J, ok = lm.linearize(T, F, gu, gv, K, X, ref)
    assert ok.all()
    eps = 1e-4
    for j in range(6):
        d = np.zeros(6)
        d[j] = eps
        rp, _, _ = lm.linearize(_perturb(T, d[:3], d[3:]), F, gu, gv, K, X, ref)
        rm, _, _ = lm.linearize(_perturb(T, -d[:3], -d[3:]), F, gu, gv, K, X, ref)
        num = (rp - rm) / (2 * eps)
        rel = np.linalg.norm(num - J[:, :, j]) / np.linalg.norm(num)
        # the analytic side samples central-difference gradients, the numeric side
        # differentiates the bilinear interpolant: a few per cent apart; a wrong sign or
        # axis would be 100 % off
        assert rel < 0.1, (j, rel)


def test_lm_returns_to_the_true_pose_of_a_rendered_frame(tiny_scene):
    from reloc_ros.data.sevenscenes import Scene, read_color

    sc = Scene(tiny_scene)
    fr = sc.frames("train")[4]
    T_gt = sc.pose(fr)
    grey = cv2.cvtColor(read_color(fr.color_path), cv2.COLOR_RGB2GRAY).astype(np.float64) / 255
    depth = sc.depth(fr)
    K_full = sc.color_intrinsics.K
    levels, Ks, refs = [], [], []
    for scale in (0.5, 1.0):  # coarse to fine
        h, w = int(grey.shape[0] * scale), int(grey.shape[1] * scale)
        F = cv2.GaussianBlur(cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA), (0, 0), 1.0)[None]
        K = sc.color_intrinsics.scaled(w, h).K
        X, uv = backproject(cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST), K, step=1)
        f, _ = bilinear(F, uv)
        levels.append(F)
        Ks.append(K)
        refs.append([(T_gt, X, f)])
    assert K_full.shape == (3, 3)
    T0 = _perturb(T_gt, [0.03, -0.02, 0.02], np.radians([1.0, -0.5, 0.5]))
    T, info = FeatureMetricLM(LMConfig(iterations=20)).refine(T0, levels, Ks, refs)
    te0, re0 = pose_errors(T0, T_gt)
    te, re = pose_errors(T, T_gt)
    assert te0 > 0.04 and te < 0.005 and re < 0.2, (te, re)
    assert info["cost"][-1] < 0.05 * info["cost"][0] and info["iterations"] >= 3


def test_dense_set_packs_and_round_trips_through_the_database(tiny_model, tiny_scene, tmp_path):
    import torch

    from reloc_ros.core.database import DatabaseError, FrameDatabase
    from reloc_ros.core.featuremetric import DenseConfig, DenseSet
    from reloc_ros.core.model import load_model
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.mapping.database import build_database

    cfg = DenseConfig(levels=(2, 1), steps=(1, 2))
    xyz = np.ones((2, 3, 3))
    xyz[0, :2, 2] = 0.0  # two pixels without depth
    a = DenseSet.pack([[(xyz, np.ones((2, 3, 4))), (np.ones((1, 2, 3)), np.ones((1, 2, 5)))]], cfg)
    c = DenseSet.concat([a, a])
    assert len(c) == 2 and c.frame(0, 1)[0].shape == (4, 3) and c.frame(1, 1)[1].shape == (2, 5)
    assert c.grid(0, [1, 0])[0].shape == (2, 2, 3, 3) and c.valid_share() == pytest.approx((4 / 6 + 1) / 2)
    with pytest.raises(ValueError, match="grid size"):
        DenseSet.pack([[(xyz, np.ones((2, 3, 4)))], [(np.ones((3, 3, 3)), np.ones((3, 3, 4)))]], DenseConfig((2,), (1,)))
    with pytest.raises(ValueError, match="earlier version"):
        DenseSet.from_tensors({"dense2_offsets": None}, DenseConfig((2,), (1,)))
    model, info = load_model(tiny_model)
    db = build_database(model, info, [Scene(tiny_scene)], "train", progress=False, dense=cfg)
    path = tmp_path / "dense.db.pt"
    db.save(path)
    back = FrameDatabase.load(path)
    assert back.dense is not None and back.dense.config == cfg and len(back.dense) == len(db)
    X, f = back.dense.frame(0, 3)
    assert len(X) > 20 and np.all(X[:, 2] > 0) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-2)
    raw = torch.load(path, weights_only=False)
    raw["tensors"]["dense2_xyz"][0, 0] += 1.0
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(DatabaseError, match="checksum"):
        FrameDatabase.load(tmp_path / "edited.pt")


def test_localizer_lm_refiner_pulls_a_perturbed_pose_back(tiny_model, tiny_scene, tmp_path):
    from dataclasses import replace

    from reloc_ros.core.refiners.lm import SIGNALS as LM_SIGNALS
    from reloc_ros.core.database import DatabaseError
    from reloc_ros.core.featuremetric import DenseConfig
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.core.model import load_model
    from reloc_ros.data.sevenscenes import Scene, read_color
    from reloc_ros.mapping.database import build_database

    model, info = load_model(tiny_model)
    sc = Scene(tiny_scene)
    db = build_database(model, info, [sc], "train", progress=False, dense=DenseConfig(levels=(1, 0), steps=(1, 1)))
    path = tmp_path / "dense.db.pt"
    db.save(path)
    plain = tmp_path / "plain.db.pt"
    build_database(model, info, [sc], "train", progress=False).save(plain)
    with pytest.raises(DatabaseError, match=r"plain.db.pt.*no dense grids.*--dense"):
        Localizer.from_files(tiny_model, plain, LocalizerConfig(refiner="lm"), "cpu")
    loc = Localizer.from_files(tiny_model, path, LocalizerConfig(refiner="lm", fusion=FusionConfig(min_inliers=1)),
                               "cpu")
    fr = sc.frames("train")[5]
    rgb, T_gt = read_color(fr.color_path), sc.pose(fr)
    K = sc.color_intrinsics.scaled(*loc.refine_image_size).K
    h = loc.hypothesize(rgb)
    f, d, _ = loc.encode_image(rgb)  # one encoder pass gives the same hypotheses and the levels
    h2 = loc.hypothesize_encoded(f, d)
    assert np.allclose(h.t, h2.t) and np.allclose(h.scores, h2.scores) and sorted(h.levels) == [0, 1]
    r = loc.fuse(h)
    start = _perturb(T_gt, [0.03, 0.02, -0.02], np.radians([0.5, -0.5, 0.5]))
    out = loc.refine(replace(r, pose=start), rgb, K)
    assert out.refinement["ok"] and out.refinement["iterations"] >= 1 and "refine" in out.timings_ms
    assert out.signals.shape == (len(LM_SIGNALS),) and np.all(np.isfinite(out.covariance))
    te0, _ = pose_errors(start, T_gt)
    te, _ = pose_errors(out.pose, T_gt)
    assert te < 0.5 * te0, (te0, te)
    assert not loc.refine(replace(r, pose=None), rgb, K).ok


def test_refine_benchmark_tables(tiny_model, tiny_scene, tiny_dense_db, tiny_dro, tmp_path):
    """The benchmark command end to end on the tiny scene, for LM and DRO on the same queries:
    0 iterations leaves the fused pose (its row equals the fused errors), the settings are
    restored after the sweep, and the tables and the plot are written."""
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.tools.refine_benchmark import main, perturb, run

    rng = np.random.default_rng(0)
    T = make_pose([1.0, 2.0, 3.0], [1, 0, 0, 0])
    te, re = pose_errors(perturb(T, 0.3, rng), T)
    assert te == pytest.approx(0.3) and re == pytest.approx(6.0, abs=1e-6)
    loc = Localizer.from_files(tiny_model, tiny_dense_db, LocalizerConfig(refiner="lm"), "cpu")
    dro = Localizer.from_files(tiny_model, tiny_dense_db, LocalizerConfig(refiner="dro"), "cpu", dro_path=tiny_dro)
    res = run({"lm": loc, "dro": dro}, [Scene(tiny_scene)], 4, {"lm": [0, 3], "dro": [0, 1]}, [0.02])
    for r in res["iterations"]:
        if r["iterations_per_block"] == 0:
            assert r["median_t_m"] == pytest.approx(res["fused_median_t_m"], abs=1e-6), r["refiner"]
    assert [r["total_iterations"] for r in res["iterations"]] == [0, 6, 0, dro.refiner.iteration_blocks()]
    assert res["queries"] == 4 and loc.refiner.lm.cfg.iterations == 5 and dro.cfg.refine_iterations is None
    assert set(res["basin_80"]) == {"lm", "dro"}
    out = tmp_path / "bench"
    assert main(["--model", str(tiny_model), "--db", str(tiny_dense_db), "--scene", str(tiny_scene),
                 "--dro", str(tiny_dro), "--queries", "4", "--iterations", "0", "3", "--dro-iterations", "2",
                 "--basin", "0.02", "0.5", "--device", "cpu", "--out", str(out)]) == 0
    import csv

    its = list(csv.DictReader(open(out / "iterations.csv")))
    basin = list(csv.DictReader(open(out / "basin.csv")))
    assert [(r["refiner"], int(r["iterations_per_block"])) for r in its] == [("lm", 0), ("lm", 3), ("dro", 2)]
    assert len(basin) == 4 and all(0.0 <= float(r["success"]) <= 1.0 for r in basin)
    assert (out / "refine_benchmark.png").stat().st_size > 10_000 and "Convergence basin" in (out / "summary.md").read_text()
