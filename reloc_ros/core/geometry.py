"""Pose algebra for reloc_ros: 4x4 rigid transforms, (t, q) pairs and error metrics.

Conventions (used everywhere in the project):

* A pose ``T`` is a 4x4 homogeneous **camera-to-world** matrix, as in 7-Scenes:
  ``x_world = T @ x_camera``.
* Quaternions inside the project are **w-first** ``(w, x, y, z)``, as in transforms3d.
  ROS messages store ``(x, y, z, w)``. The only conversion between the two orders is
  :func:`quat_to_ros` / :func:`quat_from_ros`; nothing else in the code base reorders
  quaternion components.
* ``q`` and ``-q`` describe the same rotation. :func:`canonical_quat` picks the one with
  ``w >= 0`` (ties broken on the first non-zero component) so that stored and regressed
  quaternions are comparable.
* ``relative_pose(T_a, T_b) = inv(T_a) @ T_b`` is the pose of frame b expressed in frame a,
  so that ``T_b = T_a @ relative_pose(T_a, T_b)``.
* Translation error is the Euclidean distance between camera centres (metres). Rotation
  error is the angle of the relative rotation ``R_est^T R_gt`` (degrees), in [0, 180].

transforms3d does the single-pose conversions; the batched metrics use closed forms in
numpy (checked against transforms3d in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import transforms3d.quaternions as t3q
from scipy.spatial.transform import Rotation

__all__ = [
    "pose_error_vector",
    "quat_to_ros",
    "estimate_up",
    "gravity_alignment",
    "quat_from_ros",
    "canonical_quat",
    "normalize_quat",
    "quat_to_matrix",
    "matrix_to_quat",
    "make_pose",
    "pose_to_tq",
    "invert",
    "compose",
    "relative_pose",
    "is_rigid",
    "rigidity_error",
    "translation_error",
    "rotation_error_deg",
    "quat_angle_deg",
    "pose_errors",
    "ErrorStats",
    "error_stats",
    "skew",
    "project",
    "align_with_covariance",
    "compose_with_covariance",
]


# --------------------------------------------------------------------------- quaternion order
def quat_to_ros(q_wxyz: Sequence[float]) -> tuple[float, float, float, float]:
    """Reorder a w-first quaternion ``(w, x, y, z)`` into ROS order ``(x, y, z, w)``.

    This and :func:`quat_from_ros` are the only places where the order changes.
    """
    w, x, y, z = (float(v) for v in q_wxyz)
    return (x, y, z, w)


def quat_from_ros(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Build a w-first quaternion from the fields of a ROS ``geometry_msgs/Quaternion``."""
    return np.array([w, x, y, z], dtype=np.float64)


# --------------------------------------------------------------------------- quaternions
def normalize_quat(q: np.ndarray) -> np.ndarray:
    """Unit-normalise quaternion(s) along the last axis. Raises on a (near) zero norm."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError("quaternion with zero norm cannot be normalised")
    return q / n


def canonical_quat(q: np.ndarray) -> np.ndarray:
    """Resolve the sign ambiguity q ~ -q: return the unit quaternion(s) with w >= 0.

    When w == 0 the first non-zero of (x, y, z) is made positive, so the choice is unique.
    Works on a single quaternion (4,) or a batch (..., 4).
    """
    q = normalize_quat(q)
    flat = q.reshape(-1, 4).copy()
    for i in range(flat.shape[0]):
        for c in range(4):
            if abs(flat[i, c]) > 1e-12:
                if flat[i, c] < 0:
                    flat[i] = -flat[i]
                break
    return flat.reshape(q.shape)


def quat_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a w-first quaternion (normalised first)."""
    return t3q.quat2mat(normalize_quat(q_wxyz))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Canonical (w >= 0) w-first unit quaternion of a 3x3 rotation matrix."""
    return canonical_quat(t3q.mat2quat(np.asarray(R, dtype=np.float64)))


# --------------------------------------------------------------------------- rigid transforms
def make_pose(t: Sequence[float], q_wxyz: Sequence[float]) -> np.ndarray:
    """4x4 pose from a translation (3,) and a w-first quaternion (4,)."""
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.asarray(q_wxyz, dtype=np.float64))
    T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T


def pose_to_tq(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 4x4 pose into translation (3,) and canonical w-first quaternion (4,)."""
    T = np.asarray(T, dtype=np.float64)
    return T[:3, 3].copy(), matrix_to_quat(T[:3, :3])


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transform(s) (..., 4, 4), using R^T rather than a general inverse."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Ti = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    Ti[..., :3, :3] = Rt
    Ti[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    Ti[..., 3, 3] = 1.0
    return Ti


def compose(*poses: np.ndarray) -> np.ndarray:
    """Compose rigid transforms left to right: ``compose(A, B, C) = A @ B @ C``."""
    if not poses:
        raise ValueError("compose() needs at least one pose")
    out = np.asarray(poses[0], dtype=np.float64)
    for P in poses[1:]:
        out = out @ np.asarray(P, dtype=np.float64)
    return out


def relative_pose(T_a: np.ndarray, T_b: np.ndarray) -> np.ndarray:
    """Pose of frame b in frame a: ``inv(T_a) @ T_b`` (batched over leading axes)."""
    return invert(T_a) @ np.asarray(T_b, dtype=np.float64)


def rigidity_error(T: np.ndarray) -> float:
    """How far a 4x4 matrix is from a rigid transform: max of |R^T R - I|, |det R - 1| and
    the deviation of the last row from (0, 0, 0, 1). ``inf`` for non-finite input."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return float("inf")
    R = T[:3, :3]
    orth = np.abs(R.T @ R - np.eye(3)).max()
    det = abs(np.linalg.det(R) - 1.0)
    last = np.abs(T[3] - np.array([0.0, 0.0, 0.0, 1.0])).max()
    return float(max(orth, det, last))


def is_rigid(T: np.ndarray, tol: float = 1e-3) -> bool:
    """True when ``T`` is a 4x4 rigid transform within ``tol`` (see :func:`rigidity_error`).

    The default tolerance accepts 7-Scenes poses, which are printed with 8 significant
    digits and drift by up to about 2e-4 from orthonormality.
    """
    return rigidity_error(T) <= tol


# --------------------------------------------------------------------------- error metrics
def translation_error(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """Distance between camera centres in metres (batched over leading axes)."""
    T_est = np.asarray(T_est, dtype=np.float64)
    T_gt = np.asarray(T_gt, dtype=np.float64)
    return np.linalg.norm(T_est[..., :3, 3] - T_gt[..., :3, 3], axis=-1)


def _rotation_angle_deg(R_rel: np.ndarray) -> np.ndarray:
    tr = np.trace(R_rel, axis1=-2, axis2=-1)
    # arccos is ill-conditioned near 0; use atan2 of (|sin|, cos) from the skew part.
    skew = np.stack(
        [
            R_rel[..., 2, 1] - R_rel[..., 1, 2],
            R_rel[..., 0, 2] - R_rel[..., 2, 0],
            R_rel[..., 1, 0] - R_rel[..., 0, 1],
        ],
        axis=-1,
    )
    sin = 0.5 * np.linalg.norm(skew, axis=-1)
    cos = 0.5 * (tr - 1.0)
    return np.degrees(np.arctan2(sin, cos))


def rotation_error_deg(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """Angle of the relative rotation ``R_est^T R_gt`` in degrees, in [0, 180].

    Accepts 4x4 poses or 3x3 rotations (batched over leading axes).
    """
    A = np.asarray(T_est, dtype=np.float64)[..., :3, :3]
    B = np.asarray(T_gt, dtype=np.float64)[..., :3, :3]
    return _rotation_angle_deg(np.swapaxes(A, -1, -2) @ B)


def quat_angle_deg(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle between w-first quaternions in degrees; sign-invariant (q ~ -q)."""
    q1 = normalize_quat(q1)
    q2 = normalize_quat(q2)
    s = np.where(np.sum(q1 * q2, axis=-1) < 0, -1.0, 1.0)[..., None]
    # 4 atan2(|q1 - s q2|, |q1 + s q2|) is exact near 0 where 2 arccos(|q1.q2|) is not.
    a = np.linalg.norm(q1 - s * q2, axis=-1)
    b = np.linalg.norm(q1 + s * q2, axis=-1)
    return np.degrees(4.0 * np.arctan2(a, b))


def pose_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation error in m, rotation error in degrees), batched."""
    return translation_error(T_est, T_gt), rotation_error_deg(T_est, T_gt)


def pose_error_vector(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    r"""The 6-vector error of an estimate, in the covariance convention of the published pose.

    ``(x, y, z)``: the translation error :math:`t_{est} - t_{gt}` in map axes;
    ``(rot_x, rot_y, rot_z)``: the rotation vector of :math:`R_{gt}^T R_{est}`, expressed in
    map axes, i.e. :math:`\delta` with :math:`R_{est} = \exp([\delta]_\times) R_{gt}` (the
    world-axes convention of :func:`reloc_ros.core.fusion.pose_covariance`). Radians.
    Batched: (..., 4, 4) in, (..., 6) out.
    """
    T_est, T_gt = np.asarray(T_est, dtype=np.float64), np.asarray(T_gt, dtype=np.float64)
    e_t = T_est[..., :3, 3] - T_gt[..., :3, 3]
    R_rel = T_est[..., :3, :3] @ np.swapaxes(T_gt[..., :3, :3], -1, -2)  # = exp(δ) in map axes
    e_r = Rotation.from_matrix(R_rel.reshape(-1, 3, 3)).as_rotvec().reshape(e_t.shape)
    return np.concatenate([e_t, e_r], axis=-1)


@dataclass(frozen=True)
class ErrorStats:
    """Summary of a set of pose errors."""

    count: int
    median_t_m: float
    median_r_deg: float
    mean_t_m: float
    mean_r_deg: float

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "median_t_m": self.median_t_m,
            "median_r_deg": self.median_r_deg,
            "mean_t_m": self.mean_t_m,
            "mean_r_deg": self.mean_r_deg,
        }

    def __str__(self) -> str:
        return (
            f"n={self.count} median {self.median_t_m:.3f} m / {self.median_r_deg:.2f} deg, "
            f"mean {self.mean_t_m:.3f} m / {self.mean_r_deg:.2f} deg"
        )


def error_stats(t_err: Iterable[float], r_err: Iterable[float]) -> ErrorStats:
    """Median and mean of translation (m) and rotation (deg) errors; NaN when empty."""
    t = np.asarray(list(t_err) if not isinstance(t_err, np.ndarray) else t_err, dtype=np.float64)
    r = np.asarray(list(r_err) if not isinstance(r_err, np.ndarray) else r_err, dtype=np.float64)
    if t.shape != r.shape:
        raise ValueError(f"translation and rotation errors differ in shape: {t.shape} vs {r.shape}")
    if t.size == 0:
        nan = float("nan")
        return ErrorStats(0, nan, nan, nan, nan)
    return ErrorStats(
        count=int(t.size),
        median_t_m=float(np.median(t)),
        median_r_deg=float(np.median(r)),
        mean_t_m=float(np.mean(t)),
        mean_r_deg=float(np.mean(r)),
    )


def estimate_up(poses_N44: np.ndarray) -> tuple[np.ndarray, float]:
    """The world's up direction estimated from camera poses alone.

    Hand-held and robot cameras keep their x axis (image right) near horizontal, so up is the
    unit vector u that minimises ``sum_i (x_i . u)^2`` over the cameras' x axes in world
    coordinates: the eigenvector of ``sum_i x_i x_i^T`` with the smallest eigenvalue. Its sign
    is chosen against the cameras' y axes, which point down in the optical convention (REP-103).

    Args:
        poses_N44: (N, 4, 4) camera-to-world poses, N >= 2.

    Returns:
        ``(up_3, tilt_deg)``: the unit up vector in world coordinates, and the median angle
        between the cameras' x axes and the horizontal plane it defines (small: the estimate
        is well supported; tens of degrees: the cameras rolled and the estimate is weak).
    """
    poses_N44 = np.asarray(poses_N44, dtype=np.float64)
    if poses_N44.ndim != 3 or poses_N44.shape[1:] != (4, 4) or len(poses_N44) < 2:
        raise ValueError(f"estimate_up needs (N >= 2, 4, 4) poses, got shape {poses_N44.shape}")
    x_N3 = poses_N44[:, :3, 0]
    _, vecs = np.linalg.eigh(x_N3.T @ x_N3)
    up = vecs[:, 0]
    if float(poses_N44[:, :3, 1].sum(axis=0) @ up) > 0:
        up = -up
    tilt = np.degrees(np.arcsin(np.clip(np.abs(x_N3 @ up) / np.linalg.norm(x_N3, axis=1), 0.0, 1.0)))
    return up / np.linalg.norm(up), float(np.median(tilt))


def gravity_alignment(up_3: np.ndarray) -> np.ndarray:
    """The smallest rotation ``R_33`` that takes ``up_3`` to +z: with it, a point p of the
    visual map is ``R_33 @ p`` in a gravity-aligned frame (z up, as REP-103's ``map``).
    It is the rotation of the TF ``map -> reloc_map`` (the visual map's frame in ``map``)."""
    up = np.asarray(up_3, dtype=np.float64)
    up = up / np.linalg.norm(up)
    rot, _ = Rotation.align_vectors([[0.0, 0.0, 1.0]], [up])
    return rot.as_matrix()


# --------------------------------------------------------------------------- pinhole camera
def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices [v]x: (3,) -> (3, 3), or (N, 3) -> (N, 3, 3)."""
    v = np.asarray(v, dtype=np.float64)
    a = np.atleast_2d(v)
    z = np.zeros(len(a))
    m = np.stack([np.stack([z, -a[:, 2], a[:, 1]], -1), np.stack([a[:, 2], z, -a[:, 0]], -1),
                  np.stack([-a[:, 1], a[:, 0], z], -1)], 1)
    return m[0] if v.ndim == 1 else m


def project(T_wc: np.ndarray, X_N3: np.ndarray, K_33: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points seen by a pinhole camera with camera-to-world pose ``T_wc`` (optical
    axes) and intrinsics ``K``: ``(X_cam (N, 3), uv (N, 2) pixels, in_front (N,) z > 1 mm)``."""
    T = np.asarray(T_wc, dtype=np.float64)
    Xc = (np.asarray(X_N3, dtype=np.float64) - T[:3, 3]) @ T[:3, :3]
    z = Xc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K_33[0, 0] * Xc[:, 0] / z + K_33[0, 2], K_33[1, 1] * Xc[:, 1] / z + K_33[1, 2]], 1)
    return Xc, uv, z > 1e-3


# --------------------------------------------------------------------------- pose covariance
# A pose's 6x6 covariance, as in geometry_msgs/PoseWithCovariance, is over (δp, δθ): a
# position perturbation δp (metres) and a small rotation δθ (radians, a rotation vector)
# about the FIXED world axes, so that the true pose is ``p + δp``, ``exp([δθ]x) R``. Rows and
# columns 0-2 are δp, 3-5 are δθ. This is the convention of the fusion
# (:mod:`reloc_ros.core.fusion`) and the calibration.
def align_with_covariance(T_world_db: np.ndarray, T_db_cam: np.ndarray,
                          cov_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pose and its covariance moved into another world frame.

    With ``A = T_world_db`` (4x4, rotation R_A), the pose ``T = A @ T_db_cam`` has position
    ``R_A p + t_A`` and rotation ``R_A R``. A perturbation (δp, δθ) of the input moves them by
    ``R_A δp`` and ``R_A exp([δθ]x) R = exp([R_A δθ]x) R_A R``: both halves rotate with R_A, so
    ``Σ_world = B Σ_db Bᵀ`` with ``B = blockdiag(R_A, R_A)``.

    Args:
        T_world_db: (4, 4) pose of the database's world in the output world.
        T_db_cam: (4, 4) camera-to-world pose in the database's world.
        cov_db: (6, 6) its covariance over (δp, δθ) in the database's world axes.

    Returns:
        ((4, 4) pose in the output world, (6, 6) covariance in its axes).
    """
    A = np.asarray(T_world_db, dtype=np.float64)
    B = np.zeros((6, 6))
    B[:3, :3] = B[3:, 3:] = A[:3, :3]
    return A @ np.asarray(T_db_cam, dtype=np.float64), B @ np.asarray(cov_db, dtype=np.float64) @ B.T


def compose_with_covariance(T_map_cam: np.ndarray, cov_cam: np.ndarray,
                            T_cam_robot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose of a frame rigidly attached to the camera (e.g. the robot's base), and its covariance.

    The robot's position is ``p_r = p_c + R_c t`` (``t``: the robot's position in the camera
    frame) and its rotation ``R_c R_cr``. A perturbation (δp, δθ) of the camera's pose moves
    ``p_r`` by ``δp + δθ x (R_c t) = δp − [R_c t]x δθ`` and the rotation by the same δθ (fixed
    axes), so ``Σ_robot = J Σ_cam Jᵀ`` with ``J = [[I, −[R_c t]x], [0, I]]`` (first order).

    Args:
        T_map_cam: (4, 4) camera-to-world pose.
        cov_cam: (6, 6) its covariance over (δp, δθ), world axes.
        T_cam_robot: (4, 4) pose of the attached frame in the camera frame.

    Returns:
        ((4, 4) pose of the attached frame in the world, (6, 6) its covariance, world axes).
    """
    T_map_cam = np.asarray(T_map_cam, dtype=np.float64)
    T_cam_robot = np.asarray(T_cam_robot, dtype=np.float64)
    J = np.eye(6)
    J[:3, 3:] = -skew(T_map_cam[:3, :3] @ T_cam_robot[:3, 3])
    return T_map_cam @ T_cam_robot, J @ np.asarray(cov_cam, dtype=np.float64) @ J.T
