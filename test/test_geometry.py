"""Property-based tests of reloc_ros.core.geometry (pose algebra, quaternion order, metrics).

transforms3d is the oracle for rotations of a known angle; hypothesis draws random unit
quaternions and translations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import transforms3d.axangles as t3a
import transforms3d.quaternions as t3q
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from reloc_ros.core import geometry as g

SETTINGS = settings(max_examples=150, deadline=None)

# --------------------------------------------------------------------------- strategies
_comp = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def unit_quats(draw) -> np.ndarray:
    """Random w-first unit quaternion (either sign)."""
    q = np.array([draw(_comp) for _ in range(4)])
    n = np.linalg.norm(q)
    assume(n > 1e-3)
    return q / n


@st.composite
def unit_vectors(draw) -> np.ndarray:
    v = np.array([draw(_comp) for _ in range(3)])
    n = np.linalg.norm(v)
    assume(n > 1e-3)
    return v / n


translations = st.lists(
    st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False), min_size=3, max_size=3
).map(np.array)


@st.composite
def poses(draw) -> np.ndarray:
    return g.make_pose(draw(translations), draw(unit_quats()))


def assert_close_quat_up_to_sign(a, b, atol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    assert np.allclose(a, b, atol=atol) or np.allclose(a, -b, atol=atol), (a, b)


# --------------------------------------------------------------------------- round trips
@SETTINGS
@given(translations, unit_quats())
def test_make_pose_is_rigid_and_holds_t_and_rotation(t, q):
    T = g.make_pose(t, q)
    assert T.shape == (4, 4)
    assert np.array_equal(T[3], [0, 0, 0, 1])
    assert np.allclose(T[:3, 3], t)
    assert np.allclose(T[:3, :3], t3q.quat2mat(q), atol=1e-12)
    assert g.rigidity_error(T) < 1e-12


@SETTINGS
@given(poses())
def test_pose_to_tq_make_pose_round_trip(T):
    t, q = g.pose_to_tq(T)
    assert q[0] >= -1e-12  # |w| below 1e-12 counts as zero (tie-break on x, y, z)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(g.make_pose(t, q), T, atol=1e-12)
    # and back again: the (t, q) pair is stable
    t2, q2 = g.pose_to_tq(g.make_pose(t, q))
    assert np.allclose(t2, t)
    assert_close_quat_up_to_sign(q2, q)


@SETTINGS
@given(unit_quats())
def test_quat_matrix_round_trip(q):
    R = g.quat_to_matrix(q)
    assert np.allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    q2 = g.matrix_to_quat(R)
    assert q2[0] >= -1e-12
    assert_close_quat_up_to_sign(q2, q)
    assert np.allclose(g.quat_to_matrix(q2), R, atol=1e-12)


def test_quat_to_matrix_normalises():
    q = np.array([1.0, 0.0, 0.0, 1.0])  # 90 deg about z, not unit
    R = g.quat_to_matrix(q)
    assert np.allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_make_pose_known_rotation():
    s = math.sqrt(0.5)
    T = g.make_pose([1.0, 2.0, 3.0], [s, 0.0, 0.0, s])  # 90 deg about z
    # x_world = T @ x_camera: the camera x axis maps to world y
    assert np.allclose(T @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, 3.0, 1.0])


@SETTINGS
@given(unit_quats())
def test_ros_order_round_trip(q):
    ros = g.quat_to_ros(q)
    assert isinstance(ros, tuple) and len(ros) == 4
    assert ros == (q[1], q[2], q[3], q[0])
    back = g.quat_from_ros(*ros)
    assert back.dtype == np.float64
    assert np.array_equal(back, q)


def test_ros_order_is_xyzw_for_known_quaternion():
    q = t3q.axangle2quat([0.0, 0.0, 1.0], math.pi / 2)  # w-first, 90 deg about z
    s = math.sqrt(0.5)
    assert np.allclose(q, [s, 0, 0, s])
    x, y, z, w = g.quat_to_ros(q)
    assert (x, y) == (0.0, 0.0)
    assert z == pytest.approx(s) and w == pytest.approx(s)
    # 180 deg about x: w = 0, x = 1 -> ROS (1, 0, 0, 0)
    assert g.quat_to_ros([0.0, 1.0, 0.0, 0.0]) == (1.0, 0.0, 0.0, 0.0)
    # identity: ROS (0, 0, 0, 1)
    assert g.quat_to_ros([1.0, 0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0, 1.0)
    assert np.array_equal(g.quat_from_ros(0.0, 0.0, 0.0, 1.0), [1.0, 0.0, 0.0, 0.0])
    # a message's (x, y, z, w) fields give the matrix of the same rotation
    R = g.quat_to_matrix(g.quat_from_ros(0.0, 0.0, s, s))
    assert np.allclose(R, t3a.axangle2mat([0, 0, 1], math.pi / 2), atol=1e-12)


# --------------------------------------------------------------------------- composition
@SETTINGS
@given(poses())
def test_compose_with_inverse_is_identity(T):
    assert np.allclose(g.compose(T, g.invert(T)), np.eye(4), atol=1e-9)
    assert np.allclose(g.compose(g.invert(T), T), np.eye(4), atol=1e-9)
    assert np.allclose(g.invert(g.invert(T)), T, atol=1e-9)
    assert np.allclose(g.invert(T), np.linalg.inv(T), atol=1e-9)
    assert np.array_equal(g.invert(T)[3], [0, 0, 0, 1])


@SETTINGS
@given(poses(), poses(), poses())
def test_compose_is_left_to_right_product(A, B, C):
    assert np.allclose(g.compose(A, B, C), A @ B @ C, atol=1e-9)
    assert np.array_equal(g.compose(A), A)
    # inverse of a product reverses the order
    assert np.allclose(g.invert(g.compose(A, B)), g.compose(g.invert(B), g.invert(A)), atol=1e-9)


def test_compose_is_not_commutative_and_needs_a_pose():
    A = g.make_pose([1, 0, 0], t3q.axangle2quat([0, 0, 1], 0.5))
    B = g.make_pose([0, 2, 0], t3q.axangle2quat([1, 0, 0], 0.7))
    assert not np.allclose(g.compose(A, B), g.compose(B, A))
    with pytest.raises(ValueError):
        g.compose()


@SETTINGS
@given(poses(), poses())
def test_relative_pose(a, b):
    rel = g.relative_pose(a, b)
    assert np.allclose(a @ rel, b, atol=1e-9)
    assert np.allclose(g.compose(a, rel), b, atol=1e-9)
    assert np.allclose(g.relative_pose(b, a), g.invert(rel), atol=1e-9)
    assert np.allclose(g.relative_pose(a, a), np.eye(4), atol=1e-9)
    assert g.rigidity_error(rel) < 1e-9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(poses(), poses()), min_size=1, max_size=6))
def test_batched_invert_and_relative_pose_match_per_element(pairs):
    A = np.stack([p[0] for p in pairs])
    B = np.stack([p[1] for p in pairs])
    Ai = g.invert(A)
    R = g.relative_pose(A, B)
    assert Ai.shape == R.shape == (len(pairs), 4, 4)
    for i in range(len(pairs)):
        assert np.allclose(Ai[i], g.invert(A[i]), atol=1e-12)
        assert np.allclose(R[i], g.relative_pose(A[i], B[i]), atol=1e-12)
    # two leading batch axes
    A2 = np.stack([A, B])
    assert np.allclose(g.invert(A2)[1], g.invert(B), atol=1e-12)


# --------------------------------------------------------------------------- sign ambiguity
@SETTINGS
@given(unit_quats())
def test_canonical_quat_resolves_sign(q):
    c = g.canonical_quat(q)
    assert np.array_equal(c, g.canonical_quat(-q))
    assert c[0] >= -1e-12
    assert np.linalg.norm(c) == pytest.approx(1.0, abs=1e-12)
    assert_close_quat_up_to_sign(c, q, atol=1e-12)
    # idempotent (up to the rounding of re-normalisation)
    assert np.allclose(g.canonical_quat(c), c, atol=1e-15)


@SETTINGS
@given(unit_quats())
def test_quat_angle_of_q_and_minus_q_is_zero(q):
    assert g.quat_angle_deg(q, -q) == pytest.approx(0.0, abs=1e-5)
    assert g.quat_angle_deg(q, q) == pytest.approx(0.0, abs=1e-5)
    # the matrices agree exactly in meaning
    assert np.allclose(g.quat_to_matrix(q), g.quat_to_matrix(-q), atol=1e-12)


@pytest.mark.parametrize(
    "q, expected",
    [
        ([0.0, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]),
        ([0.0, 0.0, -0.6, 0.8], [0.0, 0.0, 0.6, -0.8]),
        ([0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 1.0]),
        ([0.0, 0.6, -0.8, 0.0], [0.0, 0.6, -0.8, 0.0]),
        ([-0.0, -0.6, 0.8, 0.0], [0.0, 0.6, -0.8, 0.0]),
        ([-0.5, 0.5, -0.5, 0.5], [0.5, -0.5, 0.5, -0.5]),
        ([0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 1.0]),
    ],
)
def test_canonical_quat_tie_break_when_w_is_zero(q, expected):
    c = g.canonical_quat(np.array(q))
    assert np.allclose(c, expected, atol=1e-15)
    assert np.allclose(g.canonical_quat(-np.array(q)), expected, atol=1e-15)


def test_canonical_quat_batched_and_zero_norm():
    qs = np.array([[[-1.0, 0, 0, 0], [0, 0, -1.0, 0]], [[0.5, 0.5, 0.5, 0.5], [-0.5, 0.5, 0.5, 0.5]]])
    c = g.canonical_quat(qs)
    assert c.shape == (2, 2, 4)
    assert np.allclose(c[0, 0], [1, 0, 0, 0])
    assert np.allclose(c[0, 1], [0, 0, 1, 0])
    assert np.allclose(c[1, 0], [0.5, 0.5, 0.5, 0.5])
    assert np.allclose(c[1, 1], [0.5, -0.5, -0.5, -0.5])
    # input untouched
    assert qs[0, 0, 0] == -1.0
    with pytest.raises(ValueError):
        g.canonical_quat(np.zeros(4))
    with pytest.raises(ValueError):
        g.normalize_quat(np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]]))


# --------------------------------------------------------------------------- error metrics
@SETTINGS
@given(poses())
def test_error_of_pose_with_itself_is_zero(a):
    assert g.translation_error(a, a) == 0.0
    assert g.rotation_error_deg(a, a) == pytest.approx(0.0, abs=1e-6)
    t_err, r_err = g.pose_errors(a, a)
    assert t_err == 0.0 and r_err == pytest.approx(0.0, abs=1e-6)


@SETTINGS
@given(poses(), poses())
def test_errors_are_symmetric(a, b):
    assert g.rotation_error_deg(a, b) == pytest.approx(g.rotation_error_deg(b, a), abs=1e-9)
    assert g.translation_error(a, b) == pytest.approx(g.translation_error(b, a), abs=1e-12)
    assert g.translation_error(a, b) == pytest.approx(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    r = g.rotation_error_deg(a, b)
    assert 0.0 <= r <= 180.0


@SETTINGS
@given(poses(), poses(), poses())
def test_errors_invariant_to_common_left_transform(a, b, G):
    r = g.rotation_error_deg(a, b)
    assert g.rotation_error_deg(G @ a, G @ b) == pytest.approx(r, abs=1e-7)
    # a common change of world frame keeps the distance between camera centres
    assert g.translation_error(G @ a, G @ b) == pytest.approx(g.translation_error(a, b), abs=1e-9)
    # rotation error also ignores a common right rotation (conjugation keeps the angle)
    Rg = G.copy()
    Rg[:3, 3] = 0.0
    assert g.rotation_error_deg(a @ Rg, b @ Rg) == pytest.approx(r, abs=1e-7)


@SETTINGS
@given(unit_vectors(), st.floats(0.0, 180.0), poses())
def test_rotation_error_matches_transforms3d_angle(axis, theta_deg, base):
    R = t3a.axangle2mat(axis, math.radians(theta_deg))
    Rel = np.eye(4)
    Rel[:3, :3] = R
    assert g.rotation_error_deg(np.eye(3), R) == pytest.approx(theta_deg, abs=1e-9)
    assert g.rotation_error_deg(base, base @ Rel) == pytest.approx(theta_deg, abs=1e-7)
    # quaternion oracle
    q = t3q.axangle2quat(axis, math.radians(theta_deg))
    assert g.quat_angle_deg([1.0, 0.0, 0.0, 0.0], q) == pytest.approx(theta_deg, abs=1e-5)


@pytest.mark.parametrize(
    "theta_deg",
    [0.0, 1e-9, 1e-7, 1e-6, 1e-4, 0.01, 1.0, 90.0, 179.0, 179.99, 180.0 - 1e-5, 180.0 - 1e-7, 180.0],
)
@pytest.mark.parametrize("axis", [[0, 0, 1], [1, 0, 0], [0.3, -0.5, 0.8], [-0.9, 0.1, 0.4]])
def test_rotation_error_precise_near_0_and_180(theta_deg, axis):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    R = t3a.axangle2mat(axis, math.radians(theta_deg))
    got = float(g.rotation_error_deg(np.eye(3), R))
    if theta_deg < 1.0:
        # relative precision at tiny angles (arccos of the trace would return 0 here)
        assert got == pytest.approx(theta_deg, rel=1e-6, abs=1e-12)
    else:
        assert got == pytest.approx(theta_deg, abs=1e-6)
    # and from the oracle's matrix for the same axis/angle in 4x4 form
    T = np.eye(4)
    T[:3, :3] = R
    assert float(g.rotation_error_deg(T, np.eye(4))) == pytest.approx(got, abs=1e-12)


@SETTINGS
@given(unit_quats(), unit_quats())
def test_quat_angle_agrees_with_rotation_error(q1, q2):
    a = g.quat_angle_deg(q1, q2)
    b = g.rotation_error_deg(g.quat_to_matrix(q1), g.quat_to_matrix(q2))
    assert a == pytest.approx(b, abs=1e-5)
    # sign-invariant
    assert g.quat_angle_deg(q1, -q2) == pytest.approx(a, abs=1e-9)
    assert g.quat_angle_deg(q2, q1) == pytest.approx(a, abs=1e-9)


def test_quat_angle_known_values():
    qz90 = t3q.axangle2quat([0, 0, 1], math.pi / 2)
    qz180 = t3q.axangle2quat([0, 0, 1], math.pi)
    ident = np.array([1.0, 0, 0, 0])
    assert g.quat_angle_deg(ident, qz90) == pytest.approx(90.0, abs=1e-9)
    assert g.quat_angle_deg(ident, qz180) == pytest.approx(180.0, abs=1e-9)
    assert g.quat_angle_deg(qz90, qz180) == pytest.approx(90.0, abs=1e-9)
    # not-unit inputs are normalised
    assert g.quat_angle_deg(2 * ident, 3 * qz90) == pytest.approx(90.0, abs=1e-9)
    # batched
    got = g.quat_angle_deg(np.stack([ident, ident]), np.stack([qz90, -qz180]))
    assert np.allclose(got, [90.0, 180.0])


def test_batched_errors_shapes_and_values():
    a = np.stack([np.eye(4)] * 3)
    b = a.copy()
    b[0, :3, 3] = [3.0, 4.0, 0.0]
    b[1, :3, :3] = t3a.axangle2mat([0, 1, 0], math.radians(30))
    b[2, :3, :3] = t3a.axangle2mat([1, 1, 0], math.radians(120))
    b[2, :3, 3] = [0.0, 0.0, -2.0]
    t_err, r_err = g.pose_errors(a, b)
    assert t_err.shape == r_err.shape == (3,)
    assert np.allclose(t_err, [5.0, 0.0, 2.0])
    assert np.allclose(r_err, [0.0, 30.0, 120.0], atol=1e-9)


# --------------------------------------------------------------------------- error_stats
def test_error_stats_known_set():
    s = g.error_stats([1.0, 2.0, 3.0, 10.0], [4.0, 1.0, 3.0, 2.0])
    assert s.count == 4
    assert s.median_t_m == pytest.approx(2.5)
    assert s.mean_t_m == pytest.approx(4.0)
    assert s.median_r_deg == pytest.approx(2.5)
    assert s.mean_r_deg == pytest.approx(2.5)
    assert s.as_dict() == {
        "count": 4, "median_t_m": 2.5, "median_r_deg": 2.5, "mean_t_m": 4.0, "mean_r_deg": 2.5,
    }
    assert str(s) == "n=4 median 2.500 m / 2.50 deg, mean 4.000 m / 2.50 deg"
    # odd count, generators and arrays are accepted
    s = g.error_stats((x for x in [0.1, 0.5, 0.2]), np.array([5.0, 1.0, 9.0]))
    assert s.count == 3
    assert s.median_t_m == pytest.approx(0.2)
    assert s.median_r_deg == pytest.approx(5.0)
    assert s.mean_t_m == pytest.approx(0.8 / 3)
    assert s.mean_r_deg == pytest.approx(5.0)


def test_error_stats_empty_is_nan():
    s = g.error_stats([], [])
    assert s.count == 0
    for v in (s.median_t_m, s.median_r_deg, s.mean_t_m, s.mean_r_deg):
        assert math.isnan(v)
    s = g.error_stats(np.zeros(0), np.zeros(0))
    assert s.count == 0 and math.isnan(s.mean_t_m)


def test_error_stats_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="differ in shape"):
        g.error_stats([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        g.error_stats(np.zeros(3), np.zeros((3, 1)))


# --------------------------------------------------------------------------- rigidity
def _rigid():
    return g.make_pose([0.5, -1.0, 2.0], t3q.axangle2quat([0.2, 0.3, 0.9], 1.1))


def test_rigid_transform_accepted():
    T = _rigid()
    assert g.rigidity_error(T) < 1e-12
    assert g.is_rigid(T)
    assert g.is_rigid(np.eye(4))
    # a perturbation like 7-Scenes' 8-digit printing passes the default tolerance only
    P = T.copy()
    P[:3, :3] += 1e-6
    assert g.is_rigid(P)
    assert not g.is_rigid(P, tol=1e-8)


def _broken(kind):
    T = _rigid()
    if kind == "scaled":
        T[:3, :3] *= 1.01
    elif kind == "sheared":
        T[:3, :3] = T[:3, :3] @ np.array([[1.0, 0.05, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    elif kind == "reflected":
        T[:3, :3] = T[:3, :3] @ np.diag([1.0, 1.0, -1.0])
    elif kind == "nan":
        T[1, 2] = np.nan
    elif kind == "inf":
        T[0, 3] = np.inf
    elif kind == "last_row_scale":
        T[3, 3] = 2.0
    elif kind == "last_row_projective":
        T[3, 0] = 0.1
    elif kind == "shape":
        T = T[:3]
    return T


@pytest.mark.parametrize(
    "kind, min_err",
    [
        ("scaled", 0.01),
        ("sheared", 0.04),
        ("reflected", 1.9),
        ("nan", math.inf),
        ("inf", math.inf),
        ("last_row_scale", 0.99),
        ("last_row_projective", 0.099),
        ("shape", math.inf),
    ],
)
def test_non_rigid_rejected(kind, min_err):
    T = _broken(kind)
    err = g.rigidity_error(T)
    assert err >= min_err
    assert not g.is_rigid(T)
    assert not g.is_rigid(T, tol=0.009)


def test_skew_and_project_against_numpy_cross_and_a_hand_projection():
    from reloc_ros.core.geometry import make_pose, project, skew

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", skew(a), b), np.cross(a, b))
    np.testing.assert_allclose(skew(a[0]) @ b[0], np.cross(a[0], b[0]))
    K = np.array([[100.0, 0, 50], [0, 120.0, 40], [0, 0, 1]])
    T = make_pose([1.0, 0.0, 0.0], [1, 0, 0, 0])  # camera at x = 1, axes of the world
    Xc, uv, front = project(T, np.array([[1.0, 0.0, 2.0], [2.0, 1.0, 4.0], [1.0, 0.0, -1.0]]), K)
    np.testing.assert_allclose(Xc[1], [1.0, 1.0, 4.0])
    np.testing.assert_allclose(uv[:2], [[50.0, 40.0], [75.0, 70.0]])
    assert front.tolist() == [True, True, False]


# --------------------------------------------------------------------------- pose covariance
def _perturb(T: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """``T`` moved by ``xi = (δp, δθ)`` in the covariance convention: position + δp, rotation
    exp([δθ]x) R (about the fixed world axes)."""
    out = T.copy()
    out[:3, 3] = T[:3, 3] + xi[:3]
    out[:3, :3] = Rotation.from_rotvec(xi[3:]).as_matrix() @ T[:3, :3]
    return out


def _error(T: np.ndarray, T_ref: np.ndarray) -> np.ndarray:
    """The ``(δp, δθ)`` that moves ``T_ref`` to ``T`` (inverse of :func:`_perturb`)."""
    return np.concatenate([T[:3, 3] - T_ref[:3, 3], Rotation.from_matrix(T[:3, :3] @ T_ref[:3, :3].T).as_rotvec()])


def _numerical_jacobian(f, T: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(6, 6) d error(f(perturb(T, xi)), f(T)) / d xi at xi = 0, by central differences."""
    ref = f(T)
    J = np.zeros((6, 6))
    for i in range(6):
        d = np.zeros(6)
        d[i] = eps
        J[:, i] = (_error(f(_perturb(T, d)), ref) - _error(f(_perturb(T, -d)), ref)) / (2 * eps)
    return J


def _random_cov(rng) -> np.ndarray:
    A = rng.normal(size=(6, 6)) * np.array([0.1, 0.1, 0.1, 0.02, 0.02, 0.02])[:, None]
    return A @ A.T + 1e-4 * np.eye(6)


def _random_pose(rng, scale: float = 2.0) -> np.ndarray:
    q = rng.normal(size=4)
    return g.make_pose(rng.normal(size=3) * scale, q / np.linalg.norm(q))


@pytest.mark.parametrize("seed", range(5))
def test_align_and_compose_with_covariance_match_finite_differences(seed):
    """Both propagations are J Σ Jᵀ with J the numerical Jacobian of the pose map (the
    oracle: central differences of the actual transforms, no algebra shared)."""
    rng = np.random.default_rng(seed)
    T_world_db, T_db_cam, T_cam_robot = _random_pose(rng), _random_pose(rng), _random_pose(rng, 0.7)
    cov = _random_cov(rng)

    T, C = g.align_with_covariance(T_world_db, T_db_cam, cov)
    np.testing.assert_allclose(T, T_world_db @ T_db_cam, atol=1e-12)
    J = _numerical_jacobian(lambda X: T_world_db @ X, T_db_cam)
    np.testing.assert_allclose(C, J @ cov @ J.T, atol=1e-8)
    assert C.shape == (6, 6) and np.allclose(C, C.T)

    T2, C2 = g.compose_with_covariance(T, C, T_cam_robot)
    np.testing.assert_allclose(T2, T @ T_cam_robot, atol=1e-12)
    J2 = _numerical_jacobian(lambda X: X @ T_cam_robot, T)
    np.testing.assert_allclose(C2, J2 @ C @ J2.T, atol=1e-8)
    assert np.all(np.linalg.eigvalsh(C2) > 0)


def test_compose_with_covariance_matches_monte_carlo():
    """Samples of the camera pose drawn from Σ, carried rigidly to the robot frame: their
    spread is the propagated covariance (first order: small rotations)."""
    rng = np.random.default_rng(1)
    T_map_cam = _random_pose(rng)
    T_cam_robot = g.make_pose([0.3, -0.5, 1.2], [np.cos(0.4), 0.0, np.sin(0.4), 0.0])
    cov = np.diag([0.02, 0.01, 0.03, 0.01, 0.02, 0.005]) ** 2
    T_robot, C = g.compose_with_covariance(T_map_cam, cov, T_cam_robot)
    xi = rng.multivariate_normal(np.zeros(6), cov, size=20000)
    err = np.array([_error(_perturb(T_map_cam, x) @ T_cam_robot, T_robot) for x in xi])
    C_mc = np.cov(err.T)
    scale = np.sqrt(np.outer(np.diag(C), np.diag(C)))
    assert np.max(np.abs(C_mc - C) / scale) < 0.05, (C_mc, C)


def test_align_with_identity_changes_nothing_and_rotation_turns_the_axes():
    rng = np.random.default_rng(2)
    T, cov = _random_pose(rng), _random_cov(rng)
    T1, C1 = g.align_with_covariance(np.eye(4), T, cov)
    np.testing.assert_allclose(T1, T)
    np.testing.assert_allclose(C1, cov)
    # a 90° turn about z swaps the x and y variances of both halves
    Rz = g.make_pose([5.0, 0.0, 0.0], [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    _, C2 = g.align_with_covariance(Rz, T, np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    np.testing.assert_allclose(np.diag(C2), [2.0, 1.0, 3.0, 5.0, 4.0, 6.0], atol=1e-12)
