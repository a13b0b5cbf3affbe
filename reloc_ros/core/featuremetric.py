r"""Feature-metric pose refinement against database depth: the cost, and Levenberg–Marquardt on it.

The cost that both this Levenberg–Marquardt baseline and the learned DRO optimizer read:
pixels of a retrieved database frame with valid depth are back-projected with its depth and
intrinsics (:func:`backproject`), moved into the world with its pose, projected into the
query with the current pose estimate, and the query's dense features there (sampled
bilinearly, :func:`bilinear`) are compared with the database frame's own:

.. math::  E(T) = \sum_i \rho\big(\| F_q(\pi(K_q\, T^{-1} X_i)) - f_i \|\big), \qquad
           X_i = T_{db}\, \pi^{-1}(u_i, d_i)

with the Huber loss :math:`\rho`, over a coarse-to-fine pyramid of feature maps.

The pose is perturbed in the covariance convention of docs/architecture.md: :math:`c' = c + \delta_c` (camera centre,
map axes) and :math:`R' = \exp(\delta_r) R` (rotation about the map axes), and the Jacobian is
analytic: :math:`J_i = \partial F_q / \partial u \cdot \partial u / \partial X_c \cdot
[-R^T \mid R^T [X_i - c]_\times]` (the feature-map gradient is taken by central differences
and sampled bilinearly like the features).

Example::

    X_M3, uv_M2 = backproject(depth_hw, K_db, step=2)            # a database frame, one level
    f_MC, _ = bilinear(F_db_Chw, uv_M2)
    lm = FeatureMetricLM(LMConfig(iterations=10))
    T, info = lm.refine(T0, [F_q_Chw], [K_q], [[(T_db, X_M3, f_MC)]])   # levels, then frames
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reloc_ros.core.geometry import project, skew

__all__ = ["LMConfig", "FeatureMetricLM", "DenseConfig", "DenseSet", "backproject", "bilinear", "gradients",
           "normalize_channels", "frame_points"]


def backproject(depth_hw: np.ndarray, K_33: np.ndarray, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points ``X_M3`` (metres) and their pixels ``uv_M2`` of the valid depth
    pixels (finite, > 0) on a grid of ``step`` pixels; ``K`` belongs to the depth map's size."""
    d = np.asarray(depth_hw, dtype=np.float64)
    v, u = np.mgrid[0:d.shape[0]:step, 0:d.shape[1]:step]
    z = d[v, u]
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok].astype(np.float64), v[ok].astype(np.float64), z[ok]
    K = np.asarray(K_33, dtype=np.float64)
    X = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=1)
    return X, np.stack([u, v], axis=1)


def bilinear(F_Chw: np.ndarray, uv_M2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(M, C)`` at sub-pixel positions (pixel centres at integers) and whether
    each position lies inside the map (outside: zeros)."""
    F = np.asarray(F_Chw)
    C, h, w = F.shape
    u, v = uv_M2[:, 0], uv_M2[:, 1]
    inside = (u >= 0) & (v >= 0) & (u <= w - 1) & (v <= h - 1) & np.isfinite(u) & np.isfinite(v)
    uc, vc = np.clip(np.nan_to_num(u), 0, w - 1), np.clip(np.nan_to_num(v), 0, h - 1)
    u0, v0 = np.minimum(np.floor(uc).astype(int), w - 2), np.minimum(np.floor(vc).astype(int), h - 2)
    a, b = uc - u0, vc - v0
    f = (F[:, v0, u0] * (1 - a) * (1 - b) + F[:, v0, u0 + 1] * a * (1 - b)
         + F[:, v0 + 1, u0] * (1 - a) * b + F[:, v0 + 1, u0 + 1] * a * b).T
    return np.where(inside[:, None], f, 0.0), inside


def gradients(F_Chw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradients (dF/du, dF/dv) of a feature map, per channel."""
    F = np.asarray(F_Chw, dtype=np.float64)
    gu, gv = np.zeros_like(F), np.zeros_like(F)
    gu[:, :, 1:-1] = 0.5 * (F[:, :, 2:] - F[:, :, :-2])
    gv[:, 1:-1, :] = 0.5 * (F[:, 2:, :] - F[:, :-2, :])
    return gu, gv


def _normal_equations(w_M: np.ndarray, J_MC6: np.ndarray, r_MC: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`H = \sum_m w_m J_m^\top J_m` and :math:`g = \sum_m w_m J_m^\top r_m` (as matrix products)."""
    J = J_MC6.reshape(-1, 6)
    Jw = J * np.repeat(w_M, J_MC6.shape[1])[:, None]
    return Jw.T @ J, Jw.T @ r_MC.reshape(-1)


@dataclass(frozen=True)
class LMConfig:
    """Settings of :class:`FeatureMetricLM` (each documented below it)."""

    iterations: int = 10
    """Levenberg–Marquardt iterations per pyramid level."""
    huber: float = 0.1
    """Huber threshold on the residual norm, as a share of the median reference feature norm."""
    damping: float = 1e-3
    """initial λ of (H + λ diag H) δ = -g; ×10 after a rejected step, ÷10 after an accepted one."""
    min_points: int = 20
    """fewer visible points than this at a level: the level is skipped."""

    def __post_init__(self):
        if self.iterations < 0 or self.huber <= 0 or self.damping <= 0 or self.min_points < 6:
            raise ValueError("iterations >= 0, huber > 0, damping > 0 and min_points >= 6 are required")


class FeatureMetricLM:
    """Gauss–Newton / Levenberg–Marquardt on the feature-metric cost (module docstring)."""

    def __init__(self, cfg: LMConfig = LMConfig()):
        self.cfg = cfg

    def linearize(self, T_wc: np.ndarray, F_q: np.ndarray, gu: np.ndarray, gv: np.ndarray, K: np.ndarray,
                  pts_M3: np.ndarray, ref_MC: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""Residuals ``r (V, C)`` and Jacobians ``J (V, C, 6)`` (with respect to
        :math:`(\delta_c, \delta_r)`) of the V visible world points, and the visibility mask."""
        Xc, uv, front = project(T_wc, pts_M3, K)
        f, inside = bilinear(F_q, uv)
        ok = inside & front
        Xc, uv, f, X = Xc[ok], uv[ok], f[ok], pts_M3[ok]
        du, _ = bilinear(gu, uv)
        dv, _ = bilinear(gv, uv)
        z = Xc[:, 2]
        duv_dX = np.zeros((len(z), 2, 3))
        duv_dX[:, 0, 0] = K[0, 0] / z
        duv_dX[:, 0, 2] = -K[0, 0] * Xc[:, 0] / z ** 2
        duv_dX[:, 1, 1] = K[1, 1] / z
        duv_dX[:, 1, 2] = -K[1, 1] * Xc[:, 1] / z ** 2
        Rt = T_wc[:3, :3].T
        dX_dxi = np.concatenate([np.broadcast_to(-Rt, (len(z), 3, 3)), Rt[None] @ skew(X - T_wc[:3, 3])], 2)
        return f - ref_MC[ok], np.stack([du, dv], 2) @ (duv_dX @ dX_dxi), ok

    def _cost(self, T_wc, F_q, K, pts, ref, k):
        _, uv, front = project(T_wc, pts, K)
        f, inside = bilinear(F_q, uv)
        ok = inside & front
        r = np.linalg.norm(f - ref, axis=1)
        rho = np.where(r <= k, 0.5 * r ** 2, k * (r - 0.5 * k))
        return float(rho[ok].sum() / max(1, ok.sum())), int(ok.sum())

    def refine(self, T0_wc: np.ndarray, query_levels: list[np.ndarray], K_levels: list[np.ndarray],
               refs_levels: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]) -> tuple[np.ndarray, dict]:
        """Refine a camera-to-world pose.

        Args:
            T0_wc: the initial pose (4x4, camera-to-world).
            query_levels: the query's feature maps (C, h, w), coarse to fine.
            K_levels: the query's intrinsics at each level's size.
            refs_levels: per level, the reference frames: ``(T_db_wc, X_M3 camera-frame
                points, f_MC their features at that level)``.

        Returns:
            ``(T_wc, info)``: the refined pose and ``{'cost': [per iteration], 'points':
            visible points at the last evaluation, 'iterations': accepted steps, 'covariance':
            the Gauss-Newton covariance s² H⁻¹ at the solution (6x6, docs/architecture.md convention;
            infinite when the finest level had too few points)}``.
        """
        T = np.asarray(T0_wc, dtype=np.float64).copy()
        costs, steps, n_vis = [], 0, 0
        last = None
        for F_q, K, refs in zip(query_levels, K_levels, refs_levels):
            if not refs:
                continue
            F_q = np.asarray(F_q, dtype=np.float64)
            gu, gv = gradients(F_q)
            pts = np.concatenate([X @ Tdb[:3, :3].T + Tdb[:3, 3] for Tdb, X, _ in refs])
            ref = np.concatenate([f for _, _, f in refs]).astype(np.float64)
            k = self.cfg.huber * max(1e-9, float(np.median(np.linalg.norm(ref, axis=1))))
            lam = self.cfg.damping
            cost, n_vis = self._cost(T, F_q, K, pts, ref, k)
            if n_vis < self.cfg.min_points:
                continue
            costs.append(cost)
            last = (F_q, gu, gv, K, pts, ref, k)
            for _ in range(self.cfg.iterations):
                r, J, ok = self.linearize(T, F_q, gu, gv, K, pts, ref)
                if ok.sum() < self.cfg.min_points:
                    break
                rn = np.linalg.norm(r, axis=1)
                w = np.where(rn <= k, 1.0, k / np.maximum(rn, 1e-12))
                H, g = _normal_equations(w, J, r)
                while True:
                    try:
                        delta = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
                    except np.linalg.LinAlgError:
                        delta = np.zeros(6)
                    T_new = T.copy()
                    T_new[:3, 3] += delta[:3]
                    T_new[:3, :3] = cv2.Rodrigues(delta[3:])[0] @ T[:3, :3]
                    c_new, n_new = self._cost(T_new, F_q, K, pts, ref, k)
                    if c_new < cost and n_new >= self.cfg.min_points:
                        T, cost, n_vis, lam = T_new, c_new, n_new, max(lam / 10, 1e-9)
                        steps += 1
                        break
                    lam *= 10
                    if lam > 1e6:
                        break
                costs.append(cost)
                if lam > 1e6 or np.linalg.norm(delta) < 1e-7:
                    break
        cov = np.full((6, 6), np.inf)
        if last is not None:  # Gauss-Newton covariance at the solution, finest level used
            F_q, gu, gv, K, pts, ref, k = last
            cov = self.covariance(T, F_q, K, pts, ref, k, (gu, gv))
        return T, {"cost": costs, "points": n_vis, "iterations": steps, "covariance": cov}

    def covariance(self, T_wc: np.ndarray, F_q: np.ndarray, K: np.ndarray, pts_M3: np.ndarray, ref_MC: np.ndarray,
                   k: float | None = None, grads: tuple | None = None) -> np.ndarray:
        """The Gauss–Newton covariance :math:`s^2 H^{-1}` (6x6, docs/architecture.md convention) of the
        Huber cost at ``T_wc`` (``k``: the Huber threshold; None: from ``ref_MC`` as in
        :meth:`refine`); infinite with fewer than ``min_points`` visible points."""
        F_q = np.asarray(F_q, dtype=np.float64)
        gu, gv = grads if grads is not None else gradients(F_q)
        if k is None:
            k = self.cfg.huber * max(1e-9, float(np.median(np.linalg.norm(ref_MC, axis=1))))
        r, J, ok = self.linearize(T_wc, F_q, gu, gv, K, pts_M3, ref_MC)
        if ok.sum() < self.cfg.min_points:
            return np.full((6, 6), np.inf)
        rn = np.linalg.norm(r, axis=1)
        w = np.where(rn <= k, 1.0, k / np.maximum(rn, 1e-12))
        H, _ = _normal_equations(w, J, r)
        s2 = float(np.sum(w * rn ** 2)) / max(1, r.size - 6)
        try:
            cov = s2 * np.linalg.inv(H)
        except np.linalg.LinAlgError:
            return np.full((6, 6), np.inf)
        return 0.5 * (cov + cov.T)


# --------------------------------------------------------------------------- the database side
@dataclass(frozen=True)
class DenseConfig:
    """What a database stores for feature-metric refinement, and how the refiner uses it."""

    levels: tuple[int, ...] = (3, 2)
    """encoder stages whose output is the dense feature map, coarse to fine (EfficientNet-Lite0
    at 120x160: stage 3 is 40 channels at 15x20, stage 2 is 24 channels at 30x40)."""
    steps: tuple[int, ...] = (1, 2)
    """grid step (pixels of that level) of the stored points, per level."""
    top_m: int = 3
    """retrieved database frames aligned against."""
    iterations: int = 15
    """Levenberg–Marquardt iterations per level."""
    huber: float = 0.1
    """Huber threshold (share of the median feature norm)."""

    def __post_init__(self):
        if not self.levels or len(self.levels) != len(self.steps) or min(self.steps) < 1 or self.top_m < 1:
            raise ValueError("levels and steps must be non-empty and of equal length, steps >= 1, top_m >= 1")

    def as_dict(self) -> dict:
        return {"levels": list(self.levels), "steps": list(self.steps), "top_m": self.top_m,
                "iterations": self.iterations, "huber": self.huber}

    @classmethod
    def from_dict(cls, d: dict) -> "DenseConfig":
        return cls(levels=tuple(int(v) for v in d["levels"]), steps=tuple(int(v) for v in d["steps"]),
                   top_m=int(d["top_m"]), iterations=int(d["iterations"]), huber=float(d["huber"]))


@dataclass
class DenseSet:
    """Per level, each database frame's depth and dense features on a regular pixel grid
    (the level's feature map subsampled by its step): ``xyz[l]`` is ``(N, gh, gw, 3)``
    float32, the camera-frame point of each grid pixel (metres; its z is the depth map, and
    z = 0 marks invalid depth: 7-Scenes' 0 and 65535, NaN, or none), and ``feat[l]`` is
    ``(N, gh, gw, C)`` float16, the L2-normalised features there. The grid keeps the
    invalid pixels, so that a convolutional optimizer (DRO) reads it as an image."""

    xyz: list
    feat: list
    config: DenseConfig

    def __post_init__(self):
        if not (len(self.xyz) == len(self.feat) == len(self.config.levels)):
            raise ValueError("dense set: one xyz and one feat tensor per level")
        for x, f in zip(self.xyz, self.feat):
            if x.dim() != 4 or x.shape[-1] != 3 or f.dim() != 4 or tuple(f.shape[:3]) != tuple(x.shape[:3]):
                raise ValueError("dense set: xyz must be (N, gh, gw, 3) and feat (N, gh, gw, C) on the same grid "
                                 "(a database from before the grid format: rebuild it with --dense)")
        if len({len(x) for x in self.xyz}) != 1:
            raise ValueError("dense set levels cover different frame counts")

    def __len__(self) -> int:
        return len(self.xyz[0])

    def frame(self, level_index: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The valid points ``(M, 3)`` of frame ``i`` at a level, and their features ``(M, C)``."""
        x = self.xyz[level_index][i].reshape(-1, 3).numpy()
        ok = x[:, 2] > 0
        return x[ok], self.feat[level_index][i].reshape(len(x), -1).float().numpy()[ok]

    def grid(self, level_index: int, rows) -> tuple:
        """Frames ``rows`` at a level: xyz ``(m, gh, gw, 3)`` and features ``(m, gh, gw, C)`` (float32)."""
        import torch  # lazy: about 2.5 s; the bag-to-map conversion imports DenseConfig without torch

        r = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return self.xyz[level_index][r].float(), self.feat[level_index][r].float()

    def valid_share(self) -> float:
        """Share of grid pixels with valid depth, over all frames and levels."""
        return float(np.mean([float((x[..., 2] > 0).float().mean()) for x in self.xyz]))

    def tensors(self) -> dict:
        out = {}
        for lvl, x, f in zip(self.config.levels, self.xyz, self.feat):
            out[f"dense{lvl}_xyz"], out[f"dense{lvl}_feat"] = x, f
        return out

    @classmethod
    def from_tensors(cls, tensors: dict, config: DenseConfig) -> "DenseSet":
        lv = config.levels
        if any(f"dense{v}_offsets" in tensors for v in lv):
            raise ValueError("dense points are in the packed format of an earlier version; rebuild the database "
                             "with --dense (the grid format keeps the depth map for DRO)")
        return cls([tensors[f"dense{v}_xyz"] for v in lv], [tensors[f"dense{v}_feat"] for v in lv], config)

    @classmethod
    def pack(cls, per_frame: list[list[tuple[np.ndarray, np.ndarray]]], config: DenseConfig) -> "DenseSet":
        """From per frame, per level ``(xyz_gh_gw_3, feat_gh_gw_C)`` (:func:`frame_points`)."""
        import torch  # lazy: about 2.5 s; the bag-to-map conversion imports DenseConfig without torch

        xyzs, feats = [], []
        for li in range(len(config.levels)):
            items = [fr[li] for fr in per_frame]
            if len({(x.shape, f.shape) for x, f in items}) > 1:
                raise ValueError("dense set: frames of one database must share the grid size (same image size)")
            xyzs.append(torch.from_numpy(np.stack([x for x, _ in items]).astype(np.float32)))
            feats.append(torch.from_numpy(np.stack([f for _, f in items]).astype(np.float16)))
        return cls(xyzs, feats, config)

    @staticmethod
    def concat(sets: list["DenseSet"]) -> "DenseSet":
        import torch  # lazy: about 2.5 s; the bag-to-map conversion imports DenseConfig without torch

        if any(s.config != sets[0].config for s in sets):
            raise ValueError("dense sets were made with different settings")
        try:
            return DenseSet([torch.cat([s.xyz[li] for s in sets]) for li in range(len(sets[0].config.levels))],
                            [torch.cat([s.feat[li] for s in sets]) for li in range(len(sets[0].config.levels))],
                            sets[0].config)
        except RuntimeError as e:
            raise ValueError(f"dense sets have different grid sizes ({e})") from None


def normalize_channels(F_Chw: np.ndarray) -> np.ndarray:
    """Features divided by their per-pixel L2 norm over channels."""
    F = np.asarray(F_Chw, dtype=np.float64)
    return F / np.maximum(np.linalg.norm(F, axis=0, keepdims=True), 1e-6)


def frame_points(fmaps: dict, depth_m_HW: np.ndarray, intrinsics, config: DenseConfig
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A database frame's stored grid per level: its depth resized (nearest) to the level's
    map and subsampled by the level's step, back-projected (invalid depth: the zero point),
    and its normalised features at the same pixels.

    Args:
        fmaps: {stage: (C, h, w) feature map} of the frame.
        depth_m_HW: its depth (metres, NaN or <= 0 invalid), registered to the colour image.
        intrinsics: the colour camera's :class:`reloc_ros.core.camera.Intrinsics`.

    Returns:
        per level ``(xyz (gh, gw, 3), feat (gh, gw, C))``.
    """
    out = []
    for lvl, step in zip(config.levels, config.steps):
        F = normalize_channels(fmaps[lvl])
        h, w = F.shape[1:]
        d = cv2.resize(np.nan_to_num(np.asarray(depth_m_HW, np.float32), nan=0.0, posinf=0.0, neginf=0.0),
                       (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float64)
        K = intrinsics.scaled(w, h).K
        v, u = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
        z = d[::step, ::step]
        z = np.where(np.isfinite(z) & (z > 0), z, 0.0)
        xyz = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
        out.append((xyz, F[:, ::step, ::step].transpose(1, 2, 0)))
    return out
