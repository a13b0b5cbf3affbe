r"""Local features + PnP-RANSAC against the database depth: the classical refinement (OpenCV).

The database stores, per frame, up to ``max_keypoints`` keypoints whose depth is valid, as
3-D points in that frame's camera (optical axes, metres) with their pixels and descriptors
(:class:`KeypointSet`, built by ``python -m reloc_ros.mapping.database build --keypoints``),
extracted by the local-feature unit the settings name (:mod:`reloc_ros.core.matchers`: SIFT
by default, XFeat, XFeat + LighterGlue, ...). A query is resized to the same ``image_size``,
its keypoints are matched by the same unit to those of the top-m retrieved frames (SIFT:
Lowe's ratio test; with ``covisible``, then also to the map frames nearest to the first
pose, and solved again with all), the matched points are
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
from reloc_ros.core.matchers import MATCHERS, Features, get_matcher
from reloc_ros.core.matchers.sift import grey_at

__all__ = ["PnPConfig", "KeypointSet", "PnPResult", "PnPRefiner", "extract", "extract_sift", "lift", "resize_for",
           "reprojection_covariance", "sharpness", "nearest_frames"]

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
    matcher: str = "sift"
    """the local-feature unit (:mod:`reloc_ros.core.matchers`: sift, xfeat, xfeat+lighterglue, ...)."""
    mutual: bool = False
    """keep only mutual nearest-neighbour matches (SIFT; the learned units always are)."""
    covisible: int = 0
    """after a first pose, also match this many more database frames, those nearest to it
    (camera centre distance + angle / 30°) that retrieval did not give, and solve again with all."""
    query_keypoints: int = 0
    """keypoints of the query (0: ``max_keypoints``)."""
    min_sharpness: float = 0.0
    """a query whose :func:`sharpness` is below this is not refined (motion blur; 0: refine all)."""

    def __post_init__(self):
        w, h = self.image_size
        if int(w) < 16 or int(h) < 16:
            raise ValueError(f"image_size must be at least 16x16, got {self.image_size}")
        if self.max_keypoints < 4 or self.top_m < 1 or self.min_inliers < 4:
            raise ValueError("max_keypoints and min_inliers must be >= 4, top_m >= 1")
        if not 0 < self.ratio <= 1 or self.reproj_px <= 0 or self.iterations < 1:
            raise ValueError("ratio must be in (0, 1], reproj_px > 0, iterations >= 1")
        if self.covisible < 0 or self.query_keypoints < 0 or self.min_sharpness < 0:
            raise ValueError("covisible, query_keypoints and min_sharpness must be >= 0")
        if self.matcher not in MATCHERS:
            raise ValueError(f"unknown matcher {self.matcher!r}: use one of {', '.join(MATCHERS.names())}")

    @property
    def n_query(self) -> int:
        return int(self.query_keypoints or self.max_keypoints)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PnPConfig":
        d = dict(d)
        d["image_size"] = tuple(int(v) for v in d["image_size"])
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def unit(self):
        """The configured local-feature unit (built once per process)."""
        return get_matcher(self.matcher, self.ratio, self.mutual)


def resize_for(rgb_HW3: np.ndarray, cfg: PnPConfig) -> np.ndarray:
    """The grey image SIFT sees: ``rgb`` resized (area filter) to ``cfg.image_size``."""
    return grey_at(rgb_HW3, cfg.image_size)


def extract_sift(rgb_HW3: np.ndarray, cfg: PnPConfig, max_keypoints: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints of an RGB uint8 image at ``cfg.image_size``: pixel coordinates
    ``uv_K2`` (float32, pixel centres at integers) and descriptors ``desc_KD`` (uint8),
    strongest first."""
    f = get_matcher("sift").extract(rgb_HW3, cfg.image_size, int(max_keypoints or cfg.max_keypoints))
    return f.uv, f.desc


def sharpness(rgb_HW3: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image at 320x240: low under motion blur."""
    return float(cv2.Laplacian(grey_at(rgb_HW3, (320, 240)), cv2.CV_64F).var())


def extract(rgb_HW3: np.ndarray, cfg: PnPConfig, max_keypoints: int | None = None) -> Features:
    """The configured unit's keypoints of an RGB uint8 image at ``cfg.image_size``."""
    return cfg.unit().extract(rgb_HW3, cfg.image_size, int(max_keypoints or cfg.max_keypoints))


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
        desc: (K, D) descriptors of the config's matcher (SIFT: 128 uint8; learned: float16).
        config: the :class:`PnPConfig` they were extracted with (matcher, image size, count).
        uv: (K, 2) float32 pixel coordinates at ``config.image_size`` (None in databases made
            before they were stored; the learned matchers need them).
    """

    offsets: torch.Tensor
    xyz: torch.Tensor
    desc: torch.Tensor
    config: PnPConfig = field(default_factory=PnPConfig)
    uv: torch.Tensor | None = None

    def __post_init__(self):
        k = int(self.offsets[-1]) if len(self.offsets) else -1
        if len(self.offsets) < 1 or int(self.offsets[0]) != 0 or k != len(self.xyz) or k != len(self.desc) \
                or bool((self.offsets[1:] < self.offsets[:-1]).any()) or (self.uv is not None and len(self.uv) != k):
            raise ValueError("keypoint offsets do not index the keypoint rows")
        unit = MATCHERS.get(self.config.matcher)
        dtype = torch.uint8 if unit.descriptor_dtype == np.uint8 else torch.float16
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3 or self.desc.ndim != 2 \
                or self.desc.shape[1] != unit.descriptor_dim or self.desc.dtype != dtype:
            raise ValueError(f"keypoints must be (K, 3) points and (K, {unit.descriptor_dim}) {dtype} descriptors "
                             f"of matcher {self.config.matcher}")
        if self.uv is not None and (self.uv.ndim != 2 or self.uv.shape[1] != 2):
            raise ValueError("keypoint pixels must be (K, 2)")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def pack(cls, per_frame: list[tuple], config: PnPConfig) -> "KeypointSet":
        """From per-frame ``(xyz_K3, desc_KD)`` or ``(xyz_K3, desc_KD, uv_K2)`` lists."""
        unit = MATCHERS.get(config.matcher)
        D, dt = unit.descriptor_dim, unit.descriptor_dtype
        counts = [len(f[0]) for f in per_frame]
        offsets = torch.tensor(np.r_[0, np.cumsum(counts)], dtype=torch.int64)
        xyz = np.concatenate([f[0] for f in per_frame]) if per_frame else np.zeros((0, 3))
        desc = np.concatenate([f[1] for f in per_frame]) if per_frame else np.zeros((0, D))
        uv = None
        if per_frame and all(len(f) > 2 for f in per_frame):
            uv = torch.from_numpy(np.concatenate([f[2] for f in per_frame]).astype(np.float32).reshape(-1, 2))
        return cls(offsets, torch.from_numpy(np.asarray(xyz, np.float32).reshape(-1, 3)),
                   torch.from_numpy(np.asarray(desc, dt).reshape(-1, D)), config, uv)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(xyz_K3, desc_KD) of database frame ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.xyz[a:b].numpy(), self.desc[a:b].numpy()

    def features(self, i: int) -> tuple[np.ndarray, Features]:
        """(xyz_K3, :class:`~reloc_ros.core.matchers.Features`) of database frame ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        uv = self.uv[a:b].numpy() if self.uv is not None else np.zeros((b - a, 2), np.float32)
        return self.xyz[a:b].numpy(), Features(uv, self.desc[a:b].numpy(), np.zeros(b - a, np.float32))

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {"kp_offsets": self.offsets, "kp_xyz": self.xyz, "kp_desc": self.desc}
        return t | ({"kp_uv": self.uv} if self.uv is not None else {})

    @staticmethod
    def concat(sets: list["KeypointSet"]) -> "KeypointSet":
        if any(s.config != sets[0].config for s in sets):
            raise ValueError("keypoint sets were extracted with different settings")
        offs, base = [torch.zeros(1, dtype=torch.int64)], 0
        for s in sets:
            offs.append(s.offsets[1:] + base)
            base += int(s.offsets[-1])
        uv = None if any(s.uv is None for s in sets) else torch.cat([s.uv for s in sets])
        return KeypointSet(torch.cat(offs), torch.cat([s.xyz for s in sets]), torch.cat([s.desc for s in sets]),
                           sets[0].config, uv)


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
    ``inliers`` / ``matches``: RANSAC inliers and the matches they came from; ``ms``: the time;
    ``covariance``: the Gauss–Newton covariance (:func:`reprojection_covariance`, map axes,
    uncalibrated); ``reproj_rms_px``: the RMS reprojection error of the inliers.
    ``partial``: when RANSAC found a pose with too few inliers, that pose (a start for another
    refiner, never published); ``frames``: the database frames matched."""

    ok: bool
    pose: np.ndarray | None
    inliers: int
    matches: int
    reason: str
    ms: float
    reproj_rms_px: float = float("nan")
    covariance: np.ndarray | None = None
    partial: np.ndarray | None = None
    frames: int = 0


def _pose_of(rvec, tvec) -> np.ndarray:
    R_cw, _ = cv2.Rodrigues(rvec)
    pose = np.eye(4)
    pose[:3, :3] = R_cw.T
    pose[:3, 3] = -R_cw.T @ np.asarray(tvec).reshape(3)
    return pose


def nearest_frames(poses_N44: np.ndarray, T_44: np.ndarray, k: int, exclude=(), max_m: float = 1.5,
                   max_deg: float = 60.0) -> list[int]:
    """The ``k`` database frames nearest to a pose by camera-centre distance + angle / 30°,
    within ``max_m`` and ``max_deg``, leaving out ``exclude``."""
    if k <= 0 or len(poses_N44) == 0:
        return []
    d = np.linalg.norm(poses_N44[:, :3, 3] - T_44[:3, 3], axis=1)
    cos = (np.einsum("nij,ij->n", poses_N44[:, :3, :3], T_44[:3, :3]) - 1) / 2
    r = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    score = d + r / 30.0
    score[(d > max_m) | (r > max_deg)] = np.inf
    score[list(exclude)] = np.inf
    order = [int(i) for i in np.argsort(score, kind="stable") if np.isfinite(score[i])]
    return order[:k]


class PnPRefiner:
    """Local-feature matching of a query to database frames, then PnP-RANSAC (see the module
    docstring); with ``covisible``, a second round with the frames nearest to the first pose.

    Args:
        keypoints: the database's :class:`KeypointSet`.
        poses_N44: camera-to-world poses of the database frames.
        cfg: settings; by default those the keypoints were extracted with. The matcher, its
            image size and descriptor must be the keypoints'.
    """

    def __init__(self, keypoints: KeypointSet, poses_N44: np.ndarray, cfg: PnPConfig | None = None):
        self.last_query = None  # (id of the last query image, its features)
        self.kp = keypoints
        self.cfg = cfg or keypoints.config
        if tuple(self.cfg.image_size) != tuple(keypoints.config.image_size):
            raise ValueError(f"the refiner's image size {self.cfg.image_size} differs from the database "
                             f"keypoints' {keypoints.config.image_size}")
        if self.cfg.matcher != keypoints.config.matcher:
            raise ValueError(f"the refiner's matcher {self.cfg.matcher!r} differs from the database keypoints' "
                             f"{keypoints.config.matcher!r}; rebuild the database with --matcher {self.cfg.matcher}")
        self.poses = np.asarray(poses_N44, dtype=np.float64)
        if len(self.poses) != len(keypoints):
            raise ValueError(f"{len(self.poses)} poses for {len(keypoints)} keypoint frames")
        self.unit = self.cfg.unit()
        if keypoints.uv is None and self.cfg.matcher != "sift":
            raise ValueError(f"matcher {self.cfg.matcher!r} needs the keypoints' pixels, which this database "
                             "lacks; rebuild it")

    def _correspondences(self, fq: Features, rows) -> tuple[list, list]:
        obj, img = [], []
        for r in rows:
            xyz, fd = self.kp.features(int(r))
            if len(fd) < 2:
                continue
            ij = self.unit.match(fq, fd, self.cfg.image_size)
            if len(ij):
                T = self.poses[int(r)]
                obj.append(xyz[ij[:, 1]].astype(np.float64) @ T[:3, :3].T + T[:3, 3])
                img.append(fq.uv[ij[:, 0]].astype(np.float64))
        return obj, img

    def _solve(self, obj_N3, img_N2, K):
        cfg = self.cfg
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj_N3, img_N2, K, None, iterationsCount=cfg.iterations,
                                                 reprojectionError=cfg.reproj_px, confidence=0.999,
                                                 flags=cv2.SOLVEPNP_AP3P)
        n_in = 0 if inl is None else len(inl)
        if not ok or n_in < 4:
            return None, n_in, None
        inl = inl.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(obj_N3[inl], img_N2[inl], K, None, rvec, tvec)
        return (rvec, tvec), n_in, inl

    def refine(self, rgb_HW3: np.ndarray, K_33: np.ndarray, rows) -> PnPResult:
        """The query's pose from its RGB image, its intrinsics at ``cfg.image_size`` and the
        database rows to match (best first; the first ``top_m`` are used)."""
        t0 = time.perf_counter()
        cfg = self.cfg
        partial = None

        def fail(reason: str, matches: int = 0, inliers: int = 0, frames: int = 0) -> PnPResult:
            return PnPResult(False, None, inliers, matches, reason, (time.perf_counter() - t0) * 1e3,
                             partial=partial, frames=frames)

        if cfg.min_sharpness > 0 and (sh := sharpness(rgb_HW3)) < cfg.min_sharpness:
            return fail(f"motion blur: sharpness {sh:.0f} below {cfg.min_sharpness:.0f}")
        fq = self.unit.extract(rgb_HW3, cfg.image_size, cfg.n_query)
        self.last_query = (id(rgb_HW3), fq)  # a publish check of the same image reuses them
        if len(fq) < cfg.min_inliers:
            return fail(f"{len(fq)} query keypoints (fewer than {cfg.min_inliers})")
        used = [int(r) for r in list(rows)[: cfg.top_m]]
        obj, img = self._correspondences(fq, used)
        n = sum(len(o) for o in obj)
        if n < cfg.min_inliers:
            return fail(f"{n} matches (fewer than {cfg.min_inliers})", n, frames=len(used))
        K = np.asarray(K_33, dtype=np.float64)
        sol, n_in, inl = self._solve(np.concatenate(obj), np.concatenate(img), K)
        if sol is not None and n_in < cfg.min_inliers:
            partial = _pose_of(*sol)
        if sol is None or n_in < cfg.min_inliers:
            return fail(f"{n_in} RANSAC inliers (fewer than {cfg.min_inliers})", n, n_in, len(used))
        if cfg.covisible > 0:
            more = nearest_frames(self.poses, _pose_of(*sol), cfg.covisible, exclude=used)
            o2, i2 = self._correspondences(fq, more)
            if o2:
                sol2, n_in2, inl2 = self._solve(np.concatenate(obj + o2), np.concatenate(img + i2), K)
                if sol2 is not None and n_in2 >= n_in:
                    obj, img, sol, n_in, inl = obj + o2, img + i2, sol2, n_in2, inl2
                    used += more
                    n = sum(len(o) for o in obj)
        obj_N3, img_N2 = np.concatenate(obj), np.concatenate(img)
        rvec, tvec = sol
        proj, _ = cv2.projectPoints(obj_N3[inl], rvec, tvec, K, None)
        rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img_N2[inl]) ** 2, axis=1))))
        pose = _pose_of(rvec, tvec)
        if not np.all(np.isfinite(pose)):
            return fail("PnP gave a non-finite pose", n, n_in, len(used))
        cov, _ = reprojection_covariance(pose, obj_N3[inl], img_N2[inl], K)
        if not np.all(np.isfinite(cov)):
            return fail("the inliers do not constrain the pose (singular Gauss-Newton system)", n, n_in, len(used))
        return PnPResult(True, pose, n_in, n, "", (time.perf_counter() - t0) * 1e3, rms, cov, frames=len(used))
