r"""Fusion of k absolute-pose hypotheses into one pose with a covariance.

The localizer retrieves the k nearest database frames of a query image, best first. Frame
``i`` has a known camera-to-world pose :math:`T_i` and a retrieval similarity :math:`s_i`.
The network regresses the pose of the query in frame ``i``'s camera frame, :math:`(t_i,
q_i)`, so each frame gives one hypothesis of the query's absolute pose:

.. math::  H_i = T_i \, \mathrm{make\_pose}(t_i, q_i).

:func:`fuse` turns the k hypotheses into one :class:`FusionResult` with one of three
methods (:data:`FUSION_METHODS`, chosen by :attr:`FusionConfig.method`):

``top1``
    The best-ranked hypothesis :math:`H_0`, as in the seed paper. It never rejects.
``consensus``
    RANSAC-style voting among the hypotheses themselves (Fischler & Bolles 1981), one
    local-optimisation step (Chum et al. 2003), then the mean of the inlier centres and
    the chordal L2 mean of the inlier rotations (:func:`average_rotations`).
``triangulate``
    Only the *directions* of the predicted translations are used, as in NN-Net (Laskar
    et al. 2017): the query centre is the least-squares intersection of the rays from the
    database centres, found by RANSAC over pairs of rays.

Conventions (see :mod:`reloc_ros.core.geometry`): poses are 4x4 camera-to-world matrices,
quaternions are w-first. The 6x6 covariance is in the ROS order of
``geometry_msgs/PoseWithCovariance`` (x, y, z, rot_x, rot_y, rot_z). The rotation part is
about the **fixed (world) axes**, as REP-103 and that message ask: a small error
:math:`\delta` acts as :math:`R = \exp([\delta]_\times)\,\bar R`
(:func:`pose_covariance`). Units are metres and radians; ``covariance.ravel()`` is the
row-major ``float64[36]`` that the message stores.

Non-finite hypotheses (NaN or inf in :math:`T_i`, :math:`t_i` or :math:`q_i`, or a zero
quaternion) are dropped before fusion. A method never raises on bad numbers. It returns
``ok=False`` with a ``reason``.

References
----------
* M. A. Fischler, R. C. Bolles. Random sample consensus. Comm. ACM 24(6), 1981.
* O. Chum, J. Matas, J. Kittler. Locally optimized RANSAC. DAGM 2003.
* P. H. S. Torr, A. Zisserman. MLESAC: a new robust estimator with application to
  estimating image geometry. CVIU 78(1), 2000 (the MSAC cost).
* F. L. Markley, Y. Cheng, J. L. Crassidis, Y. Oshman. Averaging quaternions. Journal of
  Guidance, Control, and Dynamics 30(4), 2007.
* R. Hartley, J. Trumpf, Y. Dai, H. Li. Rotation averaging. IJCV 103, 2013.
* Z. Laskar, I. Melekhov, S. Kalia, J. Kannala. Camera relocalization by computing
  pairwise relative poses using convolutional neural network. ICCV Workshops 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation

from reloc_ros.core.hypotheses import Hypotheses
from reloc_ros.core.registry import Registry
from reloc_ros.core.geometry import (
    normalize_quat,
    quat_to_matrix,
    rotation_error_deg,
    translation_error,
)

__all__ = [
    "FusionConfig",
    "FusionResult",
    "fuse_hypotheses",
    "fuse",
    "average_rotations",
    "pose_covariance",
    "fuse_top1",
    "fuse_consensus",
    "fuse_triangulate",
    "FUSION_METHODS",
]

#: Above this many pairs of rays, ``triangulate`` draws this many pairs with a fixed seed
#: instead of trying all of them (all pairs up to k = 64).
MAX_RAY_PAIRS = 2016


# --------------------------------------------------------------------------- config, result
@dataclass
class FusionConfig:
    """Settings of :func:`fuse` (each field documented below it)."""

    method: str = "consensus"
    """``"top1"``, ``"consensus"`` or ``"triangulate"`` (keys of :data:`FUSION_METHODS`)."""
    inlier_t_m: float = 0.5
    """consensus and top1: two hypotheses agree when their camera centres are at most this
    far apart (metres) ..."""
    inlier_r_deg: float = 15.0
    """... and their rotations differ by at most this angle (degrees)."""
    ray_inlier_deg: float = 10.0
    """triangulate: a ray ``(c_i, d_i)`` supports a centre ``x`` when the angle between
    ``d_i`` and ``x - c_i`` is below this (degrees) and ``x`` lies in front of ``c_i``."""
    min_inliers: int = 2
    """fewer agreeing hypotheses (rays) than this gives no pose ("weak consensus").
    ``triangulate`` always needs at least 2. ``top1`` ignores it."""
    min_translation_m: float = 0.05
    """triangulate: a predicted ``|t_i|`` below this carries no usable direction, so that
    hypothesis gives no ray."""
    cov_floor_t_m: float = 0.02
    """standard deviation (metres) added in quadrature to every translation axis of the
    covariance, so that it is positive definite even with one inlier."""
    cov_floor_r_deg: float = 1.0
    """the same for every rotation axis (degrees; stored in radians²)."""
    weighted: bool = True
    """weight the hypotheses by their retrieval similarity (negative and non-finite
    similarities weigh 0). Otherwise, or without scores, all weigh 1."""
    max_ray_condition: float = 1e4
    """triangulate: the largest condition number of the 3x3 system
    :math:`\\sum_i w_i (I - d_i d_i^T)` that is still solved. Two rays at an angle θ give about
    :math:`4/θ^2`, so 1e4 rejects pairs closer than about 1.1°."""

    def __post_init__(self) -> None:
        FUSION_METHODS.get(self.method)  # a ValueError that lists the known methods
        checks = {
            "inlier_t_m": self.inlier_t_m > 0,
            "inlier_r_deg": 0 < self.inlier_r_deg <= 180,
            "ray_inlier_deg": 0 < self.ray_inlier_deg < 90,
            "min_inliers": int(self.min_inliers) == self.min_inliers and self.min_inliers >= 1,
            "min_translation_m": self.min_translation_m >= 0,
            "cov_floor_t_m": self.cov_floor_t_m > 0,
            "cov_floor_r_deg": self.cov_floor_r_deg > 0,
            "max_ray_condition": self.max_ray_condition > 1,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, good in checks.items() if not good]
        if bad:
            raise ValueError("invalid FusionConfig: " + ", ".join(bad))
        self.min_inliers = int(self.min_inliers)


@dataclass
class FusionResult:
    """Outcome of :func:`fuse`.

    Attributes:
        ok: a pose was produced.
        pose: 4x4 camera-to-world pose of the query, or None when ``ok`` is False.
        covariance: 6x6 covariance in ROS order (x, y, z, rot_x, rot_y, rot_z), metres and
            radians, rotations about the world axes (see :func:`pose_covariance`), or None.
        inliers: indices into the k input hypotheses (ascending) that support the pose. On
            a weak consensus, the best set found; otherwise empty when ``ok`` is False.
        confidence: in [0, 1]. The inlier fraction ``n_inliers / k``, where k counts all
            input hypotheses, including the non-finite ones. ``consensus`` and
            ``triangulate`` multiply it by the spread term
            ``exp(-((rms_1/tau_1)^2 + (rms_r/tau_r)^2) / 2)``. There, rms_1 is the weighted
            RMS centre residual (consensus, tau_1 = inlier_t_m) or ray-angle residual
            (triangulate, tau_1 = ray_inlier_deg), and rms_r is the weighted RMS rotation
            residual (tau_r = inlier_r_deg). ``top1`` reports the bare inlier fraction.
            The confidence is 0 when ``ok`` is False.
        reason: why there is no pose; ``""`` when ``ok``.
        method: the method that produced this result.
    """

    ok: bool
    pose: np.ndarray | None
    covariance: np.ndarray | None
    inliers: np.ndarray
    confidence: float
    reason: str
    method: str

    @classmethod
    def failure(cls, method: str, reason: str, inliers: np.ndarray | None = None) -> "FusionResult":
        """A result without a pose."""
        idx = np.asarray([] if inliers is None else inliers, dtype=np.int64)
        return cls(False, None, None, idx, 0.0, reason, method)


# --------------------------------------------------------------------------- building blocks
def average_rotations(R: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted chordal L2 mean of rotations, by the quaternion eigenvector method.

    The mean minimises :math:`\\sum_i w_i \\|R - R_i\\|_F^2` over SO(3) (Hartley et al.
    2013). Since :math:`\\|R(q) - R(q_i)\\|_F^2 = 8 - 8 (q^T q_i)^2`, the minimiser is the
    unit eigenvector of the largest eigenvalue of :math:`M = \\sum_i w_i q_i q_i^T`
    (Markley et al. 2007). :math:`M` does not change when :math:`q_i \\to -q_i`, so the
    result is sign-safe. It is the same mean as ``scipy.spatial.transform.Rotation.mean``.

    Args:
        R: (n, 3, 3) rotation matrices, or (n, 4) w-first quaternions of either sign.
        weights: (n,) non-negative weights, not all zero; None means all 1.

    Returns:
        (3, 3) mean rotation matrix.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2 and R.shape[1] == 4:
        Q = normalize_quat(R)
    elif R.ndim == 3 and R.shape[1:] == (3, 3):
        Q = Rotation.from_matrix(R).as_quat()[:, [3, 0, 1, 2]] if len(R) else np.zeros((0, 4))
    else:
        raise ValueError(f"expected (n, 3, 3) rotations or (n, 4) quaternions, got shape {R.shape}")
    if len(Q) == 0:
        raise ValueError("average_rotations() needs at least one rotation")
    w = _check_weights(weights, len(Q))
    M = np.einsum("i,ij,ik->jk", w, Q, Q)
    _, vecs = np.linalg.eigh(0.5 * (M + M.T))
    return quat_to_matrix(vecs[:, -1])


def pose_covariance(
    poses: np.ndarray,
    mean_pose: np.ndarray,
    weights: np.ndarray | None = None,
    floor_t: float = 0.02,
    floor_r_rad: float = math.radians(1.0),
) -> np.ndarray:
    """6x6 covariance of pose samples about a fused pose, in ROS order, with a floor.

    Each sample gives the joint residual

    .. math::  e_i = \\big(c_i - \\bar c,\\; \\log(R_i \\bar R^T)^\\vee\\big) \\in \\mathbb R^6,

    where :math:`c` is a camera centre (world frame, metres). The second part is the
    rotation vector (radians) of the small rotation about the **world** axes that takes
    :math:`\\bar R` to :math:`R_i`. This is the fixed-axis convention of REP-103 and
    ``geometry_msgs/PoseWithCovariance`` (x, y, z, rot_x, rot_y, rot_z). Then

    .. math::  \\Sigma = \\sum_i \\bar w_i\\, e_i e_i^T
               + \\mathrm{diag}(\\sigma_t^2, \\sigma_t^2, \\sigma_t^2,
                               \\sigma_r^2, \\sigma_r^2, \\sigma_r^2),

    with :math:`\\bar w_i = w_i / \\sum_j w_j`. This is the weighted second moment about
    the given fused pose, not about the sample mean. The cross terms come from the joint
    residuals. The covariance is the *dispersion* of the hypotheses, not the standard error
    of their mean (there is no division by n). Hypotheses from one network are correlated,
    so the standard error would be overconfident. The covariance scales with the square of
    the spread, and the floors make it positive definite even for a single sample.

    Args:
        poses: (n, 4, 4) samples (the inlier hypotheses), n >= 1.
        mean_pose: (4, 4) fused pose about which the residuals are taken.
        weights: (n,) non-negative weights, not all zero; None means all 1.
        floor_t: translation standard-deviation floor (metres).
        floor_r_rad: rotation standard-deviation floor (radians).

    Returns:
        (6, 6) symmetric positive definite covariance (metres², radians²).
    """
    e = _residuals(poses, mean_pose)
    w = _check_weights(weights, len(e))
    C = np.einsum("i,ij,ik->jk", w, e, e)
    C = 0.5 * (C + C.T)
    C += np.diag([floor_t**2] * 3 + [floor_r_rad**2] * 3)
    return C


# --------------------------------------------------------------------------- entry point
def fuse(
    T_db: np.ndarray,
    t: np.ndarray,
    q: np.ndarray,
    scores: np.ndarray | None = None,
    cfg: FusionConfig | None = None,
) -> FusionResult:
    """Fuse k relative-pose predictions into one absolute pose of the query.

    Args:
        T_db: (k, 4, 4) camera-to-world poses of the retrieved database frames, best
            retrieved first. The order is the rank that ``top1`` and tie-breaks use.
        t: (k, 3) predicted translation of the query in each database camera frame.
        q: (k, 4) predicted w-first rotation of the query in each database camera frame.
        scores: (k,) retrieval similarities (higher is better), or None.
        cfg: settings; ``FusionConfig()`` when None.

    Returns:
        A :class:`FusionResult`. Non-finite hypotheses are dropped first. When none is
        left, ``ok`` is False with reason ``"no finite hypothesis"``.
    """
    h = Hypotheses(T_db=T_db, t=t, q=q, scores=None if scores is None else np.asarray(scores, np.float64).reshape(-1))
    if scores is not None and np.shape(h.scores) != (len(h.T_db),):
        raise ValueError(f"scores must have shape ({len(h.T_db)},), got {np.shape(scores)}")
    return fuse_hypotheses(h, cfg)


def fuse_hypotheses(h: Hypotheses, cfg: FusionConfig | None = None) -> FusionResult:
    """Fuse a query's :class:`~reloc_ros.core.hypotheses.Hypotheses` into one pose (see :func:`fuse`).

    The fusion weights are the retrieval similarities (clipped at 0; non-finite ones 0) with
    ``cfg.weighted``, else 1. Non-finite hypotheses are dropped before the method runs.
    """
    cfg = FusionConfig() if cfg is None else cfg
    method = FUSION_METHODS.get(cfg.method)
    w = np.ones(len(h.T_db))
    if cfg.weighted:
        with np.errstate(invalid="ignore"):
            s = np.asarray(h.scores, dtype=np.float64)
            w = np.where(np.isfinite(s), np.maximum(s, 0.0), 0.0)
    finite = replace(h, weights=w).finite()
    if len(finite.T_db) == 0:
        return FusionResult.failure(cfg.method, "no finite hypothesis")
    return method(finite, cfg)


# --------------------------------------------------------------------------- methods
def fuse_top1(hs: Hypotheses, cfg: FusionConfig) -> FusionResult:
    """The best-ranked finite hypothesis :math:`H_0`, as it is (the seed paper's way).

    Inliers are the hypotheses within ``inlier_t_m`` and ``inlier_r_deg`` of :math:`H_0`,
    including itself. They are for information and for the covariance, which is their
    spread about :math:`H_0` (:func:`pose_covariance`). The confidence is the inlier
    fraction. ``top1`` never rejects a finite hypothesis.
    """
    ref = hs.poses[0]
    inl = _within(hs.poses, ref, cfg)
    cov = pose_covariance(hs.poses[inl], ref, _safe_weights(hs.weights[inl]), *_floors(cfg))
    return FusionResult(True, ref.copy(), cov, hs.rank[inl], len(inl) / hs.k, "", "top1")


def fuse_consensus(hs: Hypotheses, cfg: FusionConfig) -> FusionResult:
    """RANSAC-style voting among the hypotheses, then refinement on the inliers.

    1. Every hypothesis is a candidate (the minimal sample is one pose, so all m are
       tried: deterministic). Its inliers are the hypotheses within ``inlier_t_m`` (centre
       distance) **and** ``inlier_r_deg`` (relative rotation angle) of it.
    2. The best candidate has the most inliers. Ties go to the larger summed weight, then
       to the better rank.
    3. Refinement: centre :math:`\\bar c = \\sum_i \\bar w_i c_i` and rotation = chordal
       mean of the inlier rotations (:func:`average_rotations`).
    4. One local-optimisation step (LO-RANSAC, Chum et al. 2003): the inliers are scored
       again against the refined pose. When that set is at least as large and differs,
       the pose is refined once more on it.

    With fewer than ``min_inliers`` inliers the result is ``ok=False`` with reason
    ``"weak consensus: n of k hypotheses agree"``.
    """
    H, m = hs.poses, len(hs.poses)
    dt = translation_error(H[:, None], H[None, :])
    dr = rotation_error_deg(H[:, None], H[None, :])
    agree = (dt <= cfg.inlier_t_m) & (dr <= cfg.inlier_r_deg)
    count = agree.sum(axis=1)
    support = agree.astype(np.float64) @ hs.weights
    best = np.lexsort((np.arange(m), -support, -count))[0]
    inl = np.flatnonzero(agree[best])
    pose = _mean_pose(H[inl], hs.weights[inl])

    rescored = _within(H, pose, cfg)
    if len(rescored) >= len(inl) and not np.array_equal(rescored, inl):
        inl = rescored
        pose = _mean_pose(H[inl], hs.weights[inl])

    if len(inl) < cfg.min_inliers:
        return FusionResult.failure(
            "consensus",
            f"weak consensus: {len(inl)} of {hs.k} hypotheses agree "
            f"(min_inliers={cfg.min_inliers})",
            hs.rank[inl],
        )
    w = _safe_weights(hs.weights[inl])
    cov = pose_covariance(H[inl], pose, w, *_floors(cfg))
    e = _residuals(H[inl], pose)
    rms_t = math.sqrt(float(w @ np.sum(e[:, :3] ** 2, axis=1)))
    rms_r = math.degrees(math.sqrt(float(w @ np.sum(e[:, 3:] ** 2, axis=1))))
    conf = len(inl) / hs.k * _spread_term(rms_t, cfg.inlier_t_m, rms_r, cfg.inlier_r_deg)
    return FusionResult(True, pose, cov, hs.rank[inl], conf, "", "consensus")


def fuse_triangulate(hs: Hypotheses, cfg: FusionConfig) -> FusionResult:
    """Query centre from the translation *directions* only (NN-Net, Laskar et al. 2017).

    Hypothesis i gives the world-frame ray from the database centre :math:`c_i` along
    :math:`d_i = R_i t_i / \\|t_i\\|` (:math:`R_i` is the rotation of :math:`T_i`). The
    scale of :math:`t_i` is ignored, and rays with :math:`\\|t_i\\|` < ``min_translation_m``
    are not used. With :math:`P_i = I - d_i d_i^T`, the point nearest to the rays in the
    weighted least-squares sense is

    .. math::  x^* = \\Big(\\sum_i w_i P_i\\Big)^{-1} \\sum_i w_i P_i c_i .

    RANSAC over pairs of rays: all pairs (at most :data:`MAX_RAY_PAIRS`, else that many
    drawn with a fixed seed), so the result is deterministic. Pairs whose two-ray 3x3 system
    has a condition number above ``max_ray_condition`` (near-parallel) are skipped. A
    ray supports :math:`x` when :math:`\\lambda_i = d_i^T (x - c_i) > 0` (x in front) and
    :math:`\\angle(d_i, x - c_i)` < ``ray_inlier_deg``. The best pair has the most
    supporting rays. Ties go to the smaller MSAC cost :math:`\\sum_{inliers}
    (\\angle_i / \\text{ray\\_inlier\\_deg})^2` (Torr & Zisserman 2000), then to the
    summed weight, then to the rank. A wrong pair can gather as many loose rays as the
    right one, and the residuals tell them apart. :math:`x^*` is then solved on its
    inliers, with one LO step as in :func:`fuse_consensus`. The rotation is the chordal
    mean of the inlier hypotheses' rotations.

    Covariance: the translation block is the least-squares covariance
    :math:`\\hat\\sigma^2 (\\sum_i \\tilde w_i P_i)^{-1}`, where :math:`\\tilde w` are the
    weights scaled to mean 1 and :math:`\\hat\\sigma^2 = \\sum_i \\tilde w_i \\|P_i(x^* - c_i)\\|^2
    / \\max(2n - 3, 1)` (each ray constrains 2 dof). It is therefore large along the rays
    when they are nearly parallel. The centres of the hypotheses are not used, because
    their scale is what this method distrusts. The rotation block is as in
    :func:`pose_covariance`. The cross terms are 0, since the centre and the rotation are
    estimated separately. The floors are added as everywhere.

    ``ok=False`` when fewer than 2 rays are usable, when every pair (or the inlier set) is
    near-parallel ("degenerate: ..."), or when fewer than ``max(2, min_inliers)`` rays
    agree ("weak consensus: ...").
    """
    tn = np.linalg.norm(hs.t, axis=1)
    ray = np.flatnonzero(tn >= max(cfg.min_translation_m, 1e-12))
    if len(ray) < 2:
        return FusionResult.failure(
            "triangulate",
            f"degenerate: {len(ray)} usable ray(s) (predicted |t| >= {cfg.min_translation_m} m); "
            "triangulation needs at least 2",
        )
    c = hs.T_db[ray, :3, 3]
    d = np.einsum("nij,nj->ni", hs.T_db[ray, :3, :3], hs.t[ray])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    w_ray = hs.weights[ray]
    P = np.eye(3) - d[:, :, None] * d[:, None, :]
    n = len(ray)

    pairs = _ray_pairs(n)
    A = P[pairs[:, 0]] + P[pairs[:, 1]]
    b = np.einsum("pij,pj->pi", P[pairs[:, 0]], c[pairs[:, 0]]) + np.einsum(
        "pij,pj->pi", P[pairs[:, 1]], c[pairs[:, 1]]
    )
    good = np.linalg.cond(A) <= cfg.max_ray_condition
    if not good.any():
        return FusionResult.failure(
            "triangulate",
            f"degenerate: all {len(pairs)} pairs of rays are near-parallel "
            f"(condition number > {cfg.max_ray_condition:g})",
        )
    x = np.linalg.solve(A[good], b[good][:, :, None])[:, :, 0]
    support_mat, ang = _ray_support(x, c, d, cfg.ray_inlier_deg)
    count = support_mat.sum(axis=1)
    cost = np.sum(np.where(support_mat, (ang / cfg.ray_inlier_deg) ** 2, 0.0), axis=1)
    support = support_mat.astype(np.float64) @ w_ray
    best = np.lexsort((np.arange(len(x)), -support, cost, -count))[0]
    inl = np.flatnonzero(support_mat[best])

    need = max(2, cfg.min_inliers)
    if len(inl) < need:
        return FusionResult.failure(
            "triangulate",
            f"weak consensus: {len(inl)} of {hs.k} rays agree (min_inliers={need})",
            hs.rank[ray[inl]],
        )
    x_ref, cond = _intersect(P[inl], c[inl], w_ray[inl])
    if cond > cfg.max_ray_condition:
        return FusionResult.failure(
            "triangulate",
            f"degenerate: the {len(inl)} inlier rays are near-parallel "
            f"(condition number {cond:.3g} > {cfg.max_ray_condition:g})",
            hs.rank[ray[inl]],
        )
    rescored = np.flatnonzero(_ray_support(x_ref[None], c, d, cfg.ray_inlier_deg)[0][0])
    if len(rescored) >= len(inl) and not np.array_equal(rescored, inl):
        x2, cond2 = _intersect(P[rescored], c[rescored], w_ray[rescored])
        if cond2 <= cfg.max_ray_condition:
            inl, x_ref = rescored, x2

    Hin = hs.poses[ray[inl]]
    w = _safe_weights(w_ray[inl])
    pose = np.eye(4)
    pose[:3, :3] = average_rotations(Hin[:, :3, :3], w)
    pose[:3, 3] = x_ref

    # Translation block: least-squares covariance of the ray intersection.
    wt = w * len(inl)  # mean 1
    r = np.einsum("nij,nj->ni", P[inl], x_ref - c[inl])  # perpendicular offsets
    sigma2 = float(wt @ np.sum(r**2, axis=1)) / max(2 * len(inl) - 3, 1)
    A_in = np.einsum("n,nij->ij", wt, P[inl])
    cov = pose_covariance(Hin, pose, w, *_floors(cfg))
    cov[:3, :] = 0.0
    cov[:, :3] = 0.0
    cov_t = sigma2 * np.linalg.inv(A_in)
    cov[:3, :3] = 0.5 * (cov_t + cov_t.T) + cfg.cov_floor_t_m**2 * np.eye(3)

    _, ang = _ray_support(x_ref[None], c[inl], d[inl], cfg.ray_inlier_deg)
    rms_a = math.sqrt(float(w @ ang[0] ** 2))
    e_r = _residuals(Hin, pose)[:, 3:]
    rms_r = math.degrees(math.sqrt(float(w @ np.sum(e_r**2, axis=1))))
    conf = len(inl) / hs.k * _spread_term(rms_a, cfg.ray_inlier_deg, rms_r, cfg.inlier_r_deg)
    return FusionResult(True, pose, cov, hs.rank[ray[inl]], conf, "", "triangulate")


#: The fusion methods by name: ``f(Hypotheses, FusionConfig) -> FusionResult``, each reading
#: the finite hypotheses of one query. A plugin adds one with ``@FUSION_METHODS.register(name)``.
FUSION_METHODS: Registry = Registry("fusion method")
FUSION_METHODS.register("top1")(fuse_top1)
FUSION_METHODS.register("consensus")(fuse_consensus)
FUSION_METHODS.register("triangulate")(fuse_triangulate)


# --------------------------------------------------------------------------- helpers
def _check_weights(weights, n: int) -> np.ndarray:
    """Public-API weights: None -> uniform; otherwise non-negative, finite, positive sum."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def _safe_weights(w: np.ndarray) -> np.ndarray:
    """Normalised weights; uniform when they sum to zero (all similarities <= 0)."""
    s = float(np.sum(w))
    return w / s if s > 0 and math.isfinite(s) else np.full(len(w), 1.0 / len(w))


def _floors(cfg: FusionConfig) -> tuple[float, float]:
    return cfg.cov_floor_t_m, math.radians(cfg.cov_floor_r_deg)


def _residuals(poses: np.ndarray, mean_pose: np.ndarray) -> np.ndarray:
    """(n, 6) residuals (c_i - c, log(R_i R^T)) of poses about ``mean_pose`` (world frame)."""
    P = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    M = np.asarray(mean_pose, dtype=np.float64)
    dc = P[:, :3, 3] - M[:3, 3]
    dr = Rotation.from_matrix(P[:, :3, :3] @ M[:3, :3].T).as_rotvec().reshape(-1, 3)
    return np.hstack([dc, dr])


def _within(H: np.ndarray, ref: np.ndarray, cfg: FusionConfig) -> np.ndarray:
    """Indices of the hypotheses within the consensus thresholds of ``ref``."""
    ok = (translation_error(H, ref) <= cfg.inlier_t_m) & (
        rotation_error_deg(H, ref) <= cfg.inlier_r_deg
    )
    return np.flatnonzero(ok)


def _mean_pose(H: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean centre and chordal mean rotation of poses (n, 4, 4)."""
    w = _safe_weights(w)
    T = np.eye(4)
    T[:3, 3] = w @ H[:, :3, 3]
    T[:3, :3] = average_rotations(H[:, :3, :3], w)
    return T


def _spread_term(rms_a: float, tau_a: float, rms_b: float, tau_b: float) -> float:
    """exp(-((rms_a/tau_a)^2 + (rms_b/tau_b)^2) / 2): 1 without spread, decreasing."""
    return math.exp(-0.5 * ((rms_a / tau_a) ** 2 + (rms_b / tau_b) ** 2))


def _ray_pairs(n: int) -> np.ndarray:
    """(p, 2) index pairs i < j: all of them, or MAX_RAY_PAIRS drawn with a fixed seed."""
    i, j = np.triu_indices(n, k=1)
    pairs = np.stack([i, j], axis=1)
    if len(pairs) > MAX_RAY_PAIRS:
        pick = np.random.default_rng(0).choice(len(pairs), MAX_RAY_PAIRS, replace=False)
        pairs = pairs[np.sort(pick)]
    return pairs


def _ray_support(
    x: np.ndarray, c: np.ndarray, d: np.ndarray, thr_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which rays (c, d) support each point x (p, 3), and their angles (p, n) in degrees.

    A ray supports x when x is in front of it (lambda = d.(x - c) > 0) and the angle
    between d and x - c is below ``thr_deg``.
    """
    v = x[:, None, :] - c[None, :, :]
    lam = np.einsum("pnj,nj->pn", v, d)
    perp = np.linalg.norm(np.cross(v, d[None, :, :]), axis=-1)
    ang = np.degrees(np.arctan2(perp, lam))
    return (lam > 1e-9) & (ang < thr_deg), ang


def _intersect(P: np.ndarray, c: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted least-squares point nearest to rays (projectors P, origins c): (x, cond)."""
    w = _safe_weights(w)
    A = np.einsum("n,nij->ij", w, P)
    b = np.einsum("n,nij,nj->i", w, P, c)
    cond = float(np.linalg.cond(A))
    if not math.isfinite(cond) or cond > 1e15:
        return np.full(3, np.nan), math.inf
    return np.linalg.solve(A, b), cond
