r"""SIFT + PnP-RANSAC against the database depth: the classical refinement baseline (OpenCV).

The database stores, per frame, up to ``max_keypoints`` SIFT keypoints whose depth is
valid, as 3-D points in that frame's camera (optical axes, metres) with their 128-byte
descriptors (:class:`KeypointSet`, built by ``python -m reloc_ros.mapping.database build
--keypoints``). A query is resized to the same ``image_size``, its SIFT keypoints are
matched to those of the top-m retrieved frames (Lowe's ratio test), the matched points are
moved into the world with each frame's pose, and the pose is solved by PnP-RANSAC, then
refined by Levenberg–Marquardt on the inliers:

.. math::  \min_{R,t} \sum_{i \in \mathcal{I}} \| \pi(K (R X_i + t)) - u_i \|^2,
           \qquad X_i = T_{db(i)}\, \tilde X_i

This is the bar that the learned refinement (DRO) is measured against; it needs no
training. A query with too few matches or inliers gets no pose (``ok`` False and a
reason), never a guess.

Storage per frame at the defaults: 300 keypoints x (12 bytes of float32 xyz + 128 bytes of
uint8 descriptor) = 42 KB at most, inside a 64 KB per-frame budget.

Example::

    cfg = PnPConfig()
    uv_K2, desc_KD = extract_sift(rgb, cfg)                      # a database frame
    xyz_K3, ok_K = lift(uv_K2, depth_m, K_33, cfg.image_size)    # its depth
    refiner = PnPRefiner(keypoints, poses_N44, cfg)
    r = refiner.refine(query_rgb, K_query_33, rows=[12, 40, 41])  # top-m database rows
    if r.ok: pose_44 = r.pose
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from reloc_ros.core.geometry import project

__all__ = ["PnPConfig", "KeypointSet", "PnPResult", "PnPRefiner", "extract_sift", "lift", "resize_for",
           "reprojection_covariance"]

DESCRIPTOR_BYTES = 128


@dataclass(frozen=True)
class PnPConfig:
    """Settings of the SIFT + PnP refiner (each documented below it)."""

    image_size: tuple[int, int] = (320, 240)
    """(width, height) that database frames and queries are resized to before SIFT."""
    max_keypoints: int = 300
    """keypoints kept per database frame (the strongest with valid depth) and per query."""
    ratio: float = 0.8
    """Lowe's ratio test: keep a match when its distance is below this times the second's."""
    top_m: int = 3
    """retrieved database frames matched against the query."""
    reproj_px: float = 3.0
    """RANSAC inlier threshold, pixels at ``image_size``."""
    iterations: int = 1000
    """RANSAC iterations."""
    min_inliers: int = 12
    """fewer inliers than this gives no pose."""

    def __post_init__(self):
        w, h = self.image_size
        if int(w) < 16 or int(h) < 16:
            raise ValueError(f"image_size must be at least 16x16, got {self.image_size}")
        if self.max_keypoints < 4 or self.top_m < 1 or self.min_inliers < 4:
            raise ValueError("max_keypoints and min_inliers must be >= 4, top_m >= 1")
        if not 0 < self.ratio <= 1 or self.reproj_px <= 0 or self.iterations < 1:
            raise ValueError("ratio must be in (0, 1], reproj_px > 0, iterations >= 1")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PnPConfig":
        d = dict(d)
        d["image_size"] = tuple(int(v) for v in d["image_size"])
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def resize_for(rgb_HW3: np.ndarray, cfg: PnPConfig) -> np.ndarray:
    """The grey image SIFT sees: ``rgb`` resized (area filter) to ``cfg.image_size``."""
    w, h = cfg.image_size
    grey = cv2.cvtColor(np.ascontiguousarray(rgb_HW3), cv2.COLOR_RGB2GRAY)
    if grey.shape != (h, w):
        grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
    return grey


def extract_sift(rgb_HW3: np.ndarray, cfg: PnPConfig, max_keypoints: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints of an RGB uint8 image at ``cfg.image_size``: pixel coordinates
    ``uv_K2`` (float32, pixel centres at integers) and descriptors ``desc_KD`` (uint8),
    strongest first."""
    n = int(max_keypoints or cfg.max_keypoints)
    sift = cv2.SIFT_create(nfeatures=n)
    kps, desc = sift.detectAndCompute(resize_for(rgb_HW3, cfg), None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8)
    order = np.argsort([-k.response for k in kps], kind="stable")[:n]
    uv = np.array([kps[i].pt for i in order], dtype=np.float32).reshape(-1, 2)
    return uv, np.clip(np.rint(desc[order]), 0, 255).astype(np.uint8)


def lift(uv_K2: np.ndarray, depth_m_HW: np.ndarray, K_33: np.ndarray, image_size: tuple[int, int]
         ) -> tuple[np.ndarray, np.ndarray]:
    """3-D points (camera frame, metres) of pixels ``uv`` of an image of ``image_size``
    (width, height) with intrinsics ``K``, from a depth map (metres; NaN or <= 0 invalid) of
    the same view at any resolution, sampled at the nearest depth pixel.

    Returns ``(xyz_K3 float32, valid_K bool)``; invalid points are zeros."""
    uv = np.asarray(uv_K2, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(depth_m_HW, dtype=np.float64)
    K = np.asarray(K_33, dtype=np.float64)
    sx, sy = d.shape[1] / image_size[0], d.shape[0] / image_size[1]
    col = np.clip(np.rint((uv[:, 0] + 0.5) * sx - 0.5), 0, d.shape[1] - 1).astype(int)
    row = np.clip(np.rint((uv[:, 1] + 0.5) * sy - 0.5), 0, d.shape[0] - 1).astype(int)
    z = d[row, col] if len(uv) else np.zeros(0)
    ok = np.isfinite(z) & (z > 0)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    xyz = np.stack([x, y, z], axis=1) if len(uv) else np.zeros((0, 3))
    return np.where(ok[:, None], xyz, 0.0).astype(np.float32), ok


@dataclass
class KeypointSet:
    """The database's keypoints, packed: frame i owns rows ``offsets[i]:offsets[i+1]``.

    Attributes:
        offsets: (N + 1,) int64.
        xyz: (K, 3) float32 points in their frame's camera (optical axes, metres).
        desc: (K, 128) uint8 SIFT descriptors.
        config: the :class:`PnPConfig` they were extracted with (image size, count).
    """

    offsets: torch.Tensor
    xyz: torch.Tensor
    desc: torch.Tensor
    config: PnPConfig = field(default_factory=PnPConfig)

    def __post_init__(self):
        k = int(self.offsets[-1]) if len(self.offsets) else -1
        if len(self.offsets) < 1 or int(self.offsets[0]) != 0 or k != len(self.xyz) or k != len(self.desc) \
                or bool((self.offsets[1:] < self.offsets[:-1]).any()):
            raise ValueError("keypoint offsets do not index the keypoint rows")
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3 or self.desc.ndim != 2 \
                or self.desc.shape[1] != DESCRIPTOR_BYTES or self.desc.dtype != torch.uint8:
            raise ValueError(f"keypoints must be (K, 3) points and (K, {DESCRIPTOR_BYTES}) uint8 descriptors")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def pack(cls, per_frame: list[tuple[np.ndarray, np.ndarray]], config: PnPConfig) -> "KeypointSet":
        """From per-frame ``(xyz_K3, desc_KD)`` lists."""
        counts = [len(x) for x, _ in per_frame]
        offsets = torch.tensor(np.r_[0, np.cumsum(counts)], dtype=torch.int64)
        xyz = np.concatenate([x for x, _ in per_frame]) if per_frame else np.zeros((0, 3))
        desc = np.concatenate([d for _, d in per_frame]) if per_frame else np.zeros((0, DESCRIPTOR_BYTES))
        return cls(offsets, torch.from_numpy(np.asarray(xyz, np.float32).reshape(-1, 3)),
                   torch.from_numpy(np.asarray(desc, np.uint8).reshape(-1, DESCRIPTOR_BYTES)), config)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(xyz_K3, desc_KD) of database frame ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.xyz[a:b].numpy(), self.desc[a:b].numpy()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"kp_offsets": self.offsets, "kp_xyz": self.xyz, "kp_desc": self.desc}

    @staticmethod
    def concat(sets: list["KeypointSet"]) -> "KeypointSet":
        if any(s.config != sets[0].config for s in sets):
            raise ValueError("keypoint sets were extracted with different settings")
        offs, base = [torch.zeros(1, dtype=torch.int64)], 0
        for s in sets:
            offs.append(s.offsets[1:] + base)
            base += int(s.offsets[-1])
        return KeypointSet(torch.cat(offs), torch.cat([s.xyz for s in sets]), torch.cat([s.desc for s in sets]),
                           sets[0].config)


def reprojection_covariance(T_wc: np.ndarray, X_N3: np.ndarray, u_N2: np.ndarray, K: np.ndarray,
                            eps: float = 1e-6) -> tuple[np.ndarray, float]:
    r"""The Gauss–Newton covariance of a PnP pose, in the covariance convention of docs/architecture.md.

    The pose is perturbed as :math:`c' = c + \delta_c` (camera centre, map axes) and
    :math:`R' = \exp(\delta_r) R` (rotation about the map axes); ``J`` is the Jacobian of
    the reprojection residuals with respect to :math:`(\delta_c, \delta_r)` (central
    differences), and :math:`\Sigma = s^2 (J^T J)^{-1}` with the residual variance
    :math:`s^2 = \sum r^2 / (2n - 6)`.

    Returns ``(cov_66, s)``; ``s`` in pixels. The covariance says how well the inliers pin
    the pose, not whether they are right; the calibration scales it.
    """
    X = np.asarray(X_N3, dtype=np.float64)
    u = np.asarray(u_N2, dtype=np.float64)
    r0 = (project(T_wc, X, K)[1] - u).reshape(-1)
    J = np.empty((len(r0), 6))
    for j in range(6):
        cols = []
        for sgn in (1.0, -1.0):
            T = T_wc.copy()
            if j < 3:
                T[j, 3] += sgn * eps
            else:
                w = np.zeros(3)
                w[j - 3] = sgn * eps
                T[:3, :3] = cv2.Rodrigues(w)[0] @ T_wc[:3, :3]
            cols.append(project(T, X, K)[1].reshape(-1))
        J[:, j] = (cols[0] - cols[1]) / (2 * eps)
    dof = max(1, len(r0) - 6)
    s2 = float(r0 @ r0) / dof
    JTJ = J.T @ J
    try:
        cov = s2 * np.linalg.inv(JTJ)
    except np.linalg.LinAlgError:
        cov = np.full((6, 6), np.inf)
    return 0.5 * (cov + cov.T), float(np.sqrt(s2))


@dataclass
class PnPResult:
    """``ok``: a pose was found (``pose`` camera-to-world); ``reason`` says why not.
    ``inliers`` / ``matches``: RANSAC inliers and ratio-test matches; ``ms``: the time;
    ``covariance``: the Gauss–Newton covariance (:func:`reprojection_covariance`, map axes,
    uncalibrated); ``reproj_rms_px``: the RMS reprojection error of the inliers."""

    ok: bool
    pose: np.ndarray | None
    inliers: int
    matches: int
    reason: str
    ms: float
    reproj_rms_px: float = float("nan")
    covariance: np.ndarray | None = None


class PnPRefiner:
    """SIFT matching of a query to database frames, then PnP-RANSAC (see the module docstring).

    Args:
        keypoints: the database's :class:`KeypointSet`.
        poses_N44: camera-to-world poses of the database frames.
        cfg: settings; by default those the keypoints were extracted with.
    """

    def __init__(self, keypoints: KeypointSet, poses_N44: np.ndarray, cfg: PnPConfig | None = None):
        self.kp = keypoints
        self.cfg = cfg or keypoints.config
        if tuple(self.cfg.image_size) != tuple(keypoints.config.image_size):
            raise ValueError(f"the refiner's image size {self.cfg.image_size} differs from the database "
                             f"keypoints' {keypoints.config.image_size}")
        self.poses = np.asarray(poses_N44, dtype=np.float64)
        if len(self.poses) != len(keypoints):
            raise ValueError(f"{len(self.poses)} poses for {len(keypoints)} keypoint frames")
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

    def refine(self, rgb_HW3: np.ndarray, K_33: np.ndarray, rows) -> PnPResult:
        """The query's pose from its RGB image, its intrinsics at ``cfg.image_size`` and the
        database rows to match (best first; the first ``top_m`` are used)."""
        t0 = time.perf_counter()
        cfg = self.cfg

        def fail(reason: str, matches: int = 0, inliers: int = 0) -> PnPResult:
            return PnPResult(False, None, inliers, matches, reason, (time.perf_counter() - t0) * 1e3)

        uv_q, desc_q = extract_sift(rgb_HW3, cfg)
        if len(uv_q) < cfg.min_inliers:
            return fail(f"{len(uv_q)} query keypoints (fewer than {cfg.min_inliers})")
        obj, img = [], []
        dq = desc_q.astype(np.float32)
        for r in list(rows)[: cfg.top_m]:
            xyz, desc = self.kp.frame(int(r))
            if len(desc) < 2:
                continue
            for pair in self.matcher.knnMatch(dq, desc.astype(np.float32), k=2):
                if len(pair) == 2 and pair[0].distance < cfg.ratio * pair[1].distance:
                    obj.append(self.poses[int(r)][:3, :3] @ xyz[pair[0].trainIdx] + self.poses[int(r)][:3, 3])
                    img.append(uv_q[pair[0].queryIdx])
        n = len(obj)
        if n < cfg.min_inliers:
            return fail(f"{n} matches (fewer than {cfg.min_inliers})", n)
        obj_N3, img_N2 = np.asarray(obj, np.float64), np.asarray(img, np.float64)
        K = np.asarray(K_33, dtype=np.float64)
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj_N3, img_N2, K, None, iterationsCount=cfg.iterations,
                                                 reprojectionError=cfg.reproj_px, confidence=0.999,
                                                 flags=cv2.SOLVEPNP_AP3P)
        if not ok or inl is None or len(inl) < cfg.min_inliers:
            return fail(f"{0 if inl is None else len(inl)} RANSAC inliers (fewer than {cfg.min_inliers})", n,
                        0 if inl is None else len(inl))
        inl = inl.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(obj_N3[inl], img_N2[inl], K, None, rvec, tvec)
        proj, _ = cv2.projectPoints(obj_N3[inl], rvec, tvec, K, None)
        rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img_N2[inl]) ** 2, axis=1))))
        R_cw, _ = cv2.Rodrigues(rvec)
        pose = np.eye(4)
        pose[:3, :3] = R_cw.T
        pose[:3, 3] = -R_cw.T @ tvec.reshape(3)
        if not np.all(np.isfinite(pose)):
            return fail("PnP gave a non-finite pose", n, len(inl))
        cov, _ = reprojection_covariance(pose, obj_N3[inl], img_N2[inl], K)
        if not np.all(np.isfinite(cov)):
            return fail("the inliers do not constrain the pose (singular Gauss-Newton system)", n, len(inl))
        return PnPResult(True, pose, len(inl), n, "", (time.perf_counter() - t0) * 1e3, rms, cov)
