"""Feature-metric Levenberg-Marquardt (reloc_ros.core.featuremetric): the analytic Jacobian
against finite differences, and convergence back to the truth on a real synthetic frame."""

import cv2
import numpy as np

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
