"""Tests of reloc_ros.core.fusion: top1 / consensus / triangulate, rotation averaging, covariance.

The scenes are made by hand from a known true pose. Each hypothesis H_i is built first:
the true pose, or the true pose moved by a chosen offset. The predictions are then
(t_i, q_i) = relative_pose(T_i, H_i), so the error of every hypothesis is known exactly.
scipy's ``Rotation.mean`` (chordal L2 mean) is the oracle for rotation averaging.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from reloc_ros.core import fusion as fu
from reloc_ros.core import geometry as g
from reloc_ros.core.hypotheses import compose

SETTINGS = settings(max_examples=30, deadline=None)
FLOOR_T = 0.02
FLOOR_R = math.radians(1.0)
FLOOR_DIAG = np.diag([FLOOR_T**2] * 3 + [FLOOR_R**2] * 3)


# --------------------------------------------------------------------------- scene helpers
def rotvec_matrix(v) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(v, dtype=np.float64)).as_matrix()


def perturb(T: np.ndarray, dt, drot) -> np.ndarray:
    """T moved by dt (world frame, m) and rotated by the world-frame rotation vector drot."""
    out = T.copy()
    out[:3, 3] = T[:3, 3] + np.asarray(dt, dtype=np.float64)
    out[:3, :3] = rotvec_matrix(drot) @ T[:3, :3]
    return out


def predictions(T_db: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t, q) such that hypotheses(T_db, t, q) == H."""
    rel = g.relative_pose(T_db, H)
    t = rel[:, :3, 3].copy()
    q = np.stack([g.matrix_to_quat(r) for r in rel[:, :3, :3]])
    return t, q


def random_rotation(rng) -> np.ndarray:
    return g.quat_to_matrix(rng.normal(size=4))


def database_around(rng, centre: np.ndarray, k: int, r_min=1.0, r_max=3.0) -> np.ndarray:
    """k database frames with random orientation, 1-3 m from ``centre``."""
    T = np.zeros((k, 4, 4))
    for i in range(k):
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        T[i] = np.eye(4)
        T[i, :3, :3] = random_rotation(rng)
        T[i, :3, 3] = centre + u * rng.uniform(r_min, r_max)
    return T


T_GT = g.make_pose([1.0, -0.5, 1.2], [0.9, 0.1, -0.3, 0.2])

#: Outliers of the consensus scene: metres off, tens of degrees, in different directions.
OUTLIERS = {
    0: ([3.0, 0.0, 0.5], [0.0, 0.0, math.radians(40)]),
    7: ([0.0, -2.5, 0.0], [math.radians(35), 0.0, 0.0]),
    8: ([-1.0, 0.0, 2.0], [0.0, math.radians(50), 0.0]),
}
INLIERS = [1, 2, 3, 4, 5, 6]


def consensus_scene(seed: int = 0, spread: float = 1.0, noise_t=0.03, noise_r_deg=1.0):
    """9 hypotheses: 6 inliers (3 cm / 1 deg noise, times ``spread``), 3 outliers; the
    outlier at index 0 is ranked first. Returns (T_db, t, q, scores, H)."""
    rng = np.random.default_rng(seed)
    k = 9
    T_db = database_around(rng, T_GT[:3, 3], k)
    H = np.zeros((k, 4, 4))
    for i in range(k):
        if i in OUTLIERS:
            H[i] = perturb(T_GT, *OUTLIERS[i])
        else:
            dt = rng.normal(scale=noise_t, size=3) * spread
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            dr = axis * math.radians(rng.normal(scale=noise_r_deg)) * spread
            H[i] = perturb(T_GT, dt, dr)
    t, q = predictions(T_db, H)
    scores = np.linspace(0.95, 0.55, k)
    return T_db, t, q, scores, H


def ray_scene(seed: int = 0, n_in: int = 5, outliers=(0, 4), noise_r_deg=1.0):
    """Hypotheses whose translation directions point exactly at the true centre, with a
    random scale error (x0.2 .. x5); the rays at ``outliers`` are turned 30-60 deg away.
    Returns (T_db, t, q, scores, outlier indices)."""
    rng = np.random.default_rng(seed)
    k = n_in + len(outliers)
    T_db = database_around(rng, T_GT[:3, 3], k, 1.5, 3.0)
    H = np.zeros((k, 4, 4))
    for i in range(k):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        H[i] = perturb(T_GT, np.zeros(3), axis * math.radians(rng.normal(scale=noise_r_deg)))
    t, q = predictions(T_db, H)
    t *= rng.uniform(0.2, 5.0, size=(k, 1))
    for i in outliers:
        # turn the ray (database frame) by 30-60 deg about an axis perpendicular to it
        ax = np.cross(t[i], rng.normal(size=3))
        ax /= np.linalg.norm(ax)
        t[i] = rotvec_matrix(ax * math.radians(rng.uniform(30, 60))) @ t[i]
    scores = np.linspace(0.9, 0.5, k)
    return T_db, t, q, scores, list(outliers)


def cfg(method: str, **kw) -> fu.FusionConfig:
    return fu.FusionConfig(method=method, **kw)


def errors(pose, T) -> tuple[float, float]:
    return float(g.translation_error(pose, T)), float(g.rotation_error_deg(pose, T))


def assert_spd(C: np.ndarray) -> None:
    assert C.shape == (6, 6)
    assert np.array_equal(C, C.T)
    assert np.linalg.eigvalsh(C).min() > 0


# --------------------------------------------------------------------------- hypotheses()
def test_hypotheses_compose_database_pose_and_prediction():
    rng = np.random.default_rng(1)
    T_db = database_around(rng, np.zeros(3), 4)
    t = rng.normal(size=(4, 3))
    q = rng.normal(size=(4, 4)) * 3.0  # any norm, any sign
    H = compose(T_db, t, q)
    for i in range(4):
        assert np.allclose(H[i], T_db[i] @ g.make_pose(t[i], q[i]), atol=1e-12)
        assert g.is_rigid(H[i], 1e-9)


def test_hypotheses_bad_rows_are_nan_and_shapes_are_checked():
    T_db = np.stack([np.eye(4)] * 3)
    t = np.zeros((3, 3))
    q = np.array([[1.0, 0, 0, 0], [0.0, 0, 0, 0], [np.nan, 0, 0, 0]])
    H = compose(T_db, t, q)
    assert np.allclose(H[0], np.eye(4))
    assert np.isnan(H[1]).all() and np.isnan(H[2]).all()
    with pytest.raises(ValueError):
        compose(T_db, t[:2], q)
    with pytest.raises(ValueError):
        compose(T_db[:, :3], t, q)


# --------------------------------------------------------------------------- consensus vs top1
def test_consensus_recovers_true_pose_and_exact_inlier_set():
    T_db, t, q, scores, _ = consensus_scene()
    res = fu.fuse(T_db, t, q, scores, cfg("consensus"))
    assert res.ok and res.reason == "" and res.method == "consensus"
    assert res.inliers.tolist() == INLIERS
    et, er = errors(res.pose, T_GT)
    assert et < 0.05, et
    assert er < 1.0, er
    assert g.is_rigid(res.pose, 1e-9)
    assert_spd(res.covariance)
    assert 0.0 < res.confidence <= 6 / 9 + 1e-12


def test_top1_takes_the_first_ranked_outlier():
    T_db, t, q, scores, H = consensus_scene()
    res = fu.fuse(T_db, t, q, scores, cfg("top1"))
    assert res.ok and res.method == "top1"
    assert np.allclose(res.pose, H[0], atol=1e-12)
    et, er = errors(res.pose, T_GT)
    assert et > 2.0 and er > 30.0
    assert res.inliers.tolist() == [0]  # no other hypothesis agrees with the outlier
    assert res.confidence == pytest.approx(1 / 9)
    # its covariance is the floor alone: one inlier, no spread
    assert np.allclose(res.covariance, FLOOR_DIAG, rtol=0, atol=1e-15)


def test_top1_on_an_inlier_reports_the_agreeing_hypotheses():
    T_db, t, q, scores, _ = consensus_scene()
    keep = [1, 2, 3, 4, 5, 6, 7]  # the first ranked is now an inlier
    res = fu.fuse(T_db[keep], t[keep], q[keep], scores[keep], cfg("top1"))
    assert res.ok
    assert res.inliers.tolist() == [0, 1, 2, 3, 4, 5]
    assert res.confidence == pytest.approx(6 / 7)
    assert res.covariance[0, 0] > FLOOR_T**2


def test_consensus_unweighted_and_weighted_both_find_inliers():
    T_db, t, q, scores, _ = consensus_scene(seed=3)
    a = fu.fuse(T_db, t, q, scores, cfg("consensus", weighted=False))
    b = fu.fuse(T_db, t, q, None, cfg("consensus"))
    assert a.inliers.tolist() == INLIERS
    assert np.allclose(a.pose, b.pose, atol=1e-12)  # no scores == unweighted


def test_consensus_ties_go_to_the_larger_similarity():
    # two pairs of agreeing hypotheses, 5 m apart: the pair with more similarity wins
    T_db = np.stack([np.eye(4)] * 4)
    H = np.stack([
        perturb(T_GT, [5, 0, 0], [0, 0, 0]),
        T_GT,
        perturb(T_GT, [5.01, 0, 0], [0, 0, 0]),
        perturb(T_GT, [0.01, 0, 0], [0, 0, 0]),
    ])
    t, q = predictions(T_db, H)
    r1 = fu.fuse(T_db, t, q, np.array([0.5, 0.9, 0.5, 0.9]), cfg("consensus"))
    assert r1.inliers.tolist() == [1, 3]
    r2 = fu.fuse(T_db, t, q, np.array([0.9, 0.5, 0.9, 0.5]), cfg("consensus"))
    assert r2.inliers.tolist() == [0, 2]
    r3 = fu.fuse(T_db, t, q, None, cfg("consensus"))  # full tie: better rank
    assert r3.inliers.tolist() == [0, 2]


# --------------------------------------------------------------------------- weak consensus
def test_scattered_hypotheses_are_a_weak_consensus():
    rng = np.random.default_rng(5)
    k = 6
    T_db = database_around(rng, np.zeros(3), k)
    H = np.stack([perturb(T_GT, [2.0 * i, 0, 0], [0, 0, math.radians(25) * i]) for i in range(k)])
    t, q = predictions(T_db, H)
    res = fu.fuse(T_db, t, q, None, cfg("consensus"))
    assert not res.ok
    assert res.pose is None and res.covariance is None and res.confidence == 0.0
    assert "weak consensus" in res.reason and "1 of 6" in res.reason
    # top1 still answers
    assert fu.fuse(T_db, t, q, None, cfg("top1")).ok


def test_min_inliers_is_respected():
    T_db, t, q, scores, _ = consensus_scene()
    keep = [0, 1, 2, 3, 7, 8]  # 3 inliers, 3 scattered outliers
    args = (T_db[keep], t[keep], q[keep], scores[keep])
    weak = fu.fuse(*args, cfg("consensus", min_inliers=4))
    assert not weak.ok and "weak consensus: 3 of 6" in weak.reason
    assert weak.inliers.tolist() == [1, 2, 3]
    good = fu.fuse(*args, cfg("consensus", min_inliers=3))
    assert good.ok and good.inliers.tolist() == [1, 2, 3]
    assert fu.fuse(*args, cfg("consensus", min_inliers=1)).ok


# --------------------------------------------------------------------------- non-finite input
@pytest.mark.parametrize("method", sorted(fu.FUSION_METHODS))
def test_non_finite_hypotheses_are_dropped(method):
    T_db, t, q, scores, _ = consensus_scene()
    if method == "triangulate":
        T_db, t, q, scores, _ = ray_scene(n_in=8, outliers=())
    k = len(t)
    t[0] = np.nan
    q[1] = 0.0
    q[2, 0] = np.nan
    T_db = T_db.copy()
    T_db[3, 0, 3] = np.inf
    scores = scores.copy()
    scores[4] = np.nan  # a bad score only loses its weight
    res = fu.fuse(T_db, t, q, scores, cfg(method))
    assert res.ok, res.reason
    assert not set(res.inliers.tolist()) & {0, 1, 2, 3}
    if method == "top1":
        assert res.inliers[0] == 4  # the best-ranked finite hypothesis
    elif method == "consensus":
        assert res.inliers.tolist() == [4, 5, 6]
    else:
        assert res.inliers.tolist() == list(range(4, k))
        assert g.translation_error(res.pose, T_GT) < 1e-9
    assert np.all(np.isfinite(res.pose)) and np.all(np.isfinite(res.covariance))


@pytest.mark.parametrize("method", sorted(fu.FUSION_METHODS))
def test_all_nan_gives_no_pose(method):
    T_db, t, q, scores, _ = consensus_scene()
    t[:] = np.nan
    res = fu.fuse(T_db, t, q, scores, cfg(method))
    assert not res.ok and res.pose is None and res.covariance is None
    assert res.reason == "no finite hypothesis"
    assert res.inliers.size == 0 and res.confidence == 0.0
    empty = fu.fuse(np.zeros((0, 4, 4)), np.zeros((0, 3)), np.zeros((0, 4)), None, cfg(method))
    assert not empty.ok and empty.reason == "no finite hypothesis"


# --------------------------------------------------------------------------- triangulate
def test_triangulate_recovers_centre_from_directions_and_rejects_outliers():
    T_db, t, q, scores, outliers = ray_scene()
    res = fu.fuse(T_db, t, q, scores, cfg("triangulate"))
    assert res.ok, res.reason
    assert res.inliers.tolist() == [i for i in range(len(t)) if i not in outliers]
    et, er = errors(res.pose, T_GT)
    assert et < 0.01, et  # noise-free directions: exact up to round-off
    assert er < 1.5, er
    assert_spd(res.covariance)
    # noise-free rays: the translation block is the floor alone
    assert np.allclose(res.covariance[:3, :3], FLOOR_T**2 * np.eye(3), atol=1e-12)
    # the scale errors defeat consensus on the same input, which is the point of triangulating
    cons = fu.fuse(T_db, t, q, scores, cfg("consensus"))
    assert not cons.ok or g.translation_error(cons.pose, T_GT) > 0.1


def test_triangulate_noisy_directions_widen_the_covariance():
    T_db, t, q, scores, _ = ray_scene(seed=2, n_in=8, outliers=())
    rng = np.random.default_rng(7)
    tn = t.copy()
    for i in range(len(tn)):
        ax = np.cross(tn[i], rng.normal(size=3))
        tn[i] = rotvec_matrix(ax / np.linalg.norm(ax) * math.radians(2.0)) @ tn[i]
    exact = fu.fuse(T_db, t, q, scores, cfg("triangulate"))
    noisy = fu.fuse(T_db, tn, q, scores, cfg("triangulate"))
    assert noisy.ok and len(noisy.inliers) == len(t)
    assert np.trace(noisy.covariance[:3, :3]) > 2 * np.trace(exact.covariance[:3, :3])
    assert noisy.confidence < exact.confidence
    assert g.translation_error(noisy.pose, T_GT) < 0.2


def test_triangulate_degenerate_inputs():
    # fewer than 2 rays: the predicted translations are too short to carry a direction
    T_db, t, q, scores, _ = ray_scene(outliers=())
    short = t / np.linalg.norm(t, axis=1, keepdims=True) * 0.01
    short[0] *= 100.0
    res = fu.fuse(T_db, short, q, scores, cfg("triangulate"))
    assert not res.ok and res.pose is None
    assert "degenerate" in res.reason and "1 usable ray" in res.reason
    # parallel rays: database centres on a line, all looking along it at the query
    k = 5
    T_db = np.stack([g.make_pose([float(i), 0.0, 0.0], [1, 0, 0, 0]) for i in range(k)])
    t = np.tile([1.0, 0.0, 0.0], (k, 1)) * np.arange(1, k + 1)[:, None]
    q = np.tile([1.0, 0.0, 0.0, 0.0], (k, 1))
    res = fu.fuse(T_db, t, q, None, cfg("triangulate"))
    assert not res.ok and "near-parallel" in res.reason and "degenerate" in res.reason


def test_triangulate_weak_consensus():
    T_db, t, q, scores, _ = ray_scene(outliers=())
    keep = [0, 1]
    res = fu.fuse(T_db[keep], t[keep], q[keep], None, cfg("triangulate", min_inliers=3))
    assert not res.ok and "weak consensus: 2 of 2" in res.reason


# --------------------------------------------------------------------------- average_rotations
def _cluster(rng, n, spread_deg):
    centre = Rotation.from_matrix(random_rotation(rng))
    noise = Rotation.from_rotvec(rng.normal(size=(n, 3)) * math.radians(spread_deg))
    return (noise * centre).as_matrix()


@pytest.mark.parametrize("seed", range(8))
def test_average_rotations_matches_scipy_chordal_mean(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 20))
    R = _cluster(rng, n, spread_deg=rng.uniform(1, 40))
    w = rng.uniform(0.05, 1.0, size=n)
    for weights in (None, w):
        ours = fu.average_rotations(R, weights)
        oracle = Rotation.from_matrix(R).mean(weights=weights).as_matrix()
        assert np.allclose(ours, oracle, atol=1e-9), g.rotation_error_deg(ours, oracle)
        assert np.allclose(ours.T @ ours, np.eye(3), atol=1e-12)
        assert np.linalg.det(ours) == pytest.approx(1.0)
    # weights matter: a weighted mean differs from the plain one
    assert g.rotation_error_deg(fu.average_rotations(R, w), fu.average_rotations(R)) > 1e-6


def test_average_rotations_is_sign_safe():
    rng = np.random.default_rng(11)
    R = _cluster(rng, 7, 30.0)
    Q = np.stack([g.matrix_to_quat(r) for r in R])
    signs = rng.choice([-1.0, 1.0], size=(7, 1))
    signs[0] = -1.0
    w = rng.uniform(0.1, 1.0, size=7)
    ref = fu.average_rotations(R, w)
    assert np.allclose(fu.average_rotations(Q, w), ref, atol=1e-12)
    assert np.allclose(fu.average_rotations(Q * signs, w), ref, atol=1e-12)
    assert np.allclose(fu.average_rotations(-Q, w), ref, atol=1e-12)


def test_average_rotations_rejects_bad_input():
    R = np.stack([np.eye(3)] * 2)
    with pytest.raises(ValueError):
        fu.average_rotations(np.zeros((0, 3, 3)))
    with pytest.raises(ValueError):
        fu.average_rotations(R, [1.0, -1.0])
    with pytest.raises(ValueError):
        fu.average_rotations(R, [0.0, 0.0])
    with pytest.raises(ValueError):
        fu.average_rotations(np.zeros((2, 3)))


# --------------------------------------------------------------------------- covariance
def _samples(mean_pose, residuals):
    return np.stack([perturb(mean_pose, e[:3], e[3:]) for e in residuals])


def test_pose_covariance_world_frame_convention_and_cross_terms():
    e = np.array([0.1, -0.2, 0.05, 0.02, -0.03, 0.01])
    P = _samples(T_GT, [e, -e])
    C = fu.pose_covariance(P, T_GT, None, 1e-9, 1e-9)
    assert np.allclose(C, np.outer(e, e), atol=1e-12)
    # body-frame residuals would give a different rotation block: the convention matters
    body = T_GT[:3, :3].T @ e[3:]
    assert not np.allclose(C[3:, 3:], np.outer(body, body), atol=1e-6)


def test_pose_covariance_grows_with_spread_and_respects_floors():
    rng = np.random.default_rng(3)
    res = rng.normal(size=(8, 6)) * np.array([0.1] * 3 + [0.05] * 3)
    w = rng.uniform(0.2, 1.0, size=8)
    C1 = fu.pose_covariance(_samples(T_GT, res), T_GT, w, FLOOR_T, FLOOR_R) - FLOOR_DIAG
    C2 = fu.pose_covariance(_samples(T_GT, 2 * res), T_GT, w, FLOOR_T, FLOOR_R) - FLOOR_DIAG
    assert np.allclose(C2, 4 * C1, atol=1e-12)
    one = fu.pose_covariance(T_GT[None], T_GT, None, FLOOR_T, FLOOR_R)
    assert np.allclose(one, FLOOR_DIAG, atol=1e-18)
    assert_spd(one)


def test_fused_covariance_grows_with_inlier_spread():
    base = consensus_scene(seed=4, spread=1.0)
    wide = consensus_scene(seed=4, spread=2.0)  # the same noise draws, doubled
    r1 = fu.fuse(*base[:4], cfg("consensus"))
    r2 = fu.fuse(*wide[:4], cfg("consensus"))
    assert r1.inliers.tolist() == INLIERS and r2.inliers.tolist() == INLIERS
    for r in (r1, r2):
        assert_spd(r.covariance)
        assert np.all(np.diag(r.covariance) >= np.diag(FLOOR_DIAG))
    c1, c2 = r1.covariance - FLOOR_DIAG, r2.covariance - FLOOR_DIAG
    ratio_t = np.trace(c2[:3, :3]) / np.trace(c1[:3, :3])
    ratio_r = np.trace(c2[3:, 3:]) / np.trace(c1[3:, 3:])
    assert ratio_t == pytest.approx(4.0, rel=1e-6)  # the centre mean is linear
    assert 3.5 < ratio_r < 4.5  # the chordal mean nearly so
    assert r2.confidence < r1.confidence


def test_config_validation():
    with pytest.raises(ValueError):
        fu.FusionConfig(method="median")
    with pytest.raises(ValueError):
        fu.FusionConfig(cov_floor_t_m=0.0)
    with pytest.raises(ValueError):
        fu.FusionConfig(min_inliers=0)
    assert set(fu.FUSION_METHODS) == {"top1", "consensus", "triangulate"}


# --------------------------------------------------------------------------- properties
_comp = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def poses(draw, scale=50.0) -> np.ndarray:
    q = np.array([draw(_comp) for _ in range(4)])
    assume(np.linalg.norm(q) > 1e-3)
    t = [draw(st.floats(-scale, scale, allow_nan=False)) for _ in range(3)]
    return g.make_pose(t, q)


@SETTINGS
@given(poses(), st.integers(1, 8), st.integers(0, 2**31 - 1),
       st.sampled_from(["consensus", "top1"]))
def test_identical_hypotheses_fuse_to_that_pose(H, k, seed, method):
    rng = np.random.default_rng(seed)
    T_db = database_around(rng, H[:3, 3], k, 0.5, 20.0)
    t, q = predictions(T_db, np.stack([H] * k))
    scores = rng.uniform(0.0, 1.0, size=k)
    res = fu.fuse(T_db, t, q, scores, cfg(method, min_inliers=1))
    assert res.ok
    assert np.allclose(res.pose, H, rtol=0, atol=1e-9)
    assert res.inliers.tolist() == list(range(k))
    assert res.confidence == pytest.approx(1.0)
    assert np.allclose(res.covariance, FLOOR_DIAG, atol=1e-15)


def _moved_covariance(W, C):
    A = np.zeros((6, 6))
    A[:3, :3] = A[3:, 3:] = W[:3, :3]
    return A @ C @ A.T


@SETTINGS
@given(poses(scale=100.0), st.integers(0, 2**31 - 1), st.sampled_from(["consensus", "triangulate"]))
def test_fusion_is_invariant_to_a_world_transform(W, seed, method):
    if method == "consensus":
        T_db, t, q, scores, _ = consensus_scene(seed=seed % 1000)
    else:
        T_db, t, q, scores, _ = ray_scene(seed=seed % 1000, noise_r_deg=2.0)
    a = fu.fuse(T_db, t, q, scores, cfg(method))
    b = fu.fuse(W @ T_db, t, q, scores, cfg(method))
    assert a.ok and b.ok
    assert a.inliers.tolist() == b.inliers.tolist()
    assert np.allclose(b.pose, W @ a.pose, atol=1e-7)
    assert np.allclose(b.covariance, _moved_covariance(W, a.covariance), atol=1e-10)
    assert b.confidence == pytest.approx(a.confidence, abs=1e-9)
