"""How much two training frames see of the same surfaces: the labels of the retrieval task.

As in RelocNet (Balntas et al., ECCV 2018), two frames overlap by the share of one's
surface points that the other sees. Per frame, a grid of pixels is lifted to 3D with its
depth (or, without depth, at a nominal distance) and kept in the world frame. The overlap
of (i, j) is the share of i's points that project inside j's image, in front of j, and,
where j has depth, within 10% of j's own depth there (not occluded); the pair's overlap is
the smaller of the two directions.

Only pairs whose camera centres are within ``max_distance_m`` are computed (a k-d tree);
the others overlap 0. ``labels`` turns the overlaps of a batch into positives, negatives
and the pairs in between, which are ignored. A positive overlaps at least ``positive`` and
is also what retrieval must find: within ``positive_m`` and ``positive_deg`` (the 0.5 m
and 30° of the recall). A negative overlaps at most ``negative``, or lies beyond twice
those limits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from scipy.spatial import cKDTree

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import rotation_error_deg, translation_error

__all__ = ["FramePoints", "frame_points", "ViewOverlap"]

#: Points per frame: a grid of GRID[0] x GRID[1] pixels.
GRID = (16, 12)
#: Depth maps are kept at this size for the occlusion test.
DEPTH_SIZE = (40, 30)
#: Distance (m) at which the grid is lifted when a frame has no depth.
NOMINAL_DEPTH_M = 2.0


@dataclass
class FramePoints:
    """Per frame: world points (N, P, 3) (NaN where no depth), camera poses, and a coarse
    depth map (N, h, w) in metres (NaN: unknown) for the occlusion test."""

    points: np.ndarray
    poses: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics  # of the coarse depth maps (the colour camera scaled)


def _grid(intr: Intrinsics, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    us = (np.arange(nx) + 0.5) / nx * intr.width - 0.5
    vs = (np.arange(ny) + 0.5) / ny * intr.height - 0.5
    U, V = np.meshgrid(us, vs)
    return U.ravel(), V.ravel()


def frame_points(poses: np.ndarray, depths: list[np.ndarray | None], intr: Intrinsics) -> FramePoints:
    """World points and coarse depth of frames.

    Args:
        poses: (N, 4, 4) camera-to-world poses.
        depths: per frame a depth map in metres registered to the colour image (NaN:
            invalid), or None (lifted at :data:`NOMINAL_DEPTH_M`, no occlusion test).
        intr: the colour intrinsics the depth maps are registered to.
    """
    small = intr.scaled(*DEPTH_SIZE)
    u, v = _grid(small, *GRID)
    rays = np.stack([(u - small.cx) / small.fx, (v - small.cy) / small.fy, np.ones_like(u)], axis=1)
    n = len(poses)
    pts = np.full((n, len(u), 3), np.nan)
    coarse = np.full((n, DEPTH_SIZE[1], DEPTH_SIZE[0]), np.nan, dtype=np.float32)
    for k, (T, d) in enumerate(zip(poses, depths)):
        if d is None:
            z = np.full(len(u), NOMINAL_DEPTH_M)
        else:
            coarse[k] = _shrink(d, DEPTH_SIZE)
            z = coarse[k][np.clip(np.round(v).astype(int), 0, DEPTH_SIZE[1] - 1),
                          np.clip(np.round(u).astype(int), 0, DEPTH_SIZE[0] - 1)]
        cam = rays * z[:, None]
        pts[k] = cam @ T[:3, :3].T + T[:3, 3]
    return FramePoints(pts, np.asarray(poses, float), coarse, small)


def _shrink(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Median of the valid depths in each cell of a (w, h) grid (the image cropped to a
    multiple of the grid)."""
    w, h = size
    H, W = depth.shape
    bh, bw = max(1, H // h), max(1, W // w)
    blocks = depth[: bh * h, : bw * w].reshape(h, bh, w, bw).transpose(0, 2, 1, 3).reshape(h, w, -1)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
            return np.nanmedian(blocks, axis=2).astype(np.float32)


def _seen_by(fp: FramePoints, rows: np.ndarray, j: int) -> np.ndarray:
    """Share of each frame ``rows``' points that frame j sees: (len(rows),)."""
    P = fp.points[rows]  # (n, P, 3)
    T = fp.poses[j]
    cam = (P - T[:3, 3]) @ T[:3, :3]
    z = cam[..., 2]
    intr = fp.intrinsics
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intr.fx * cam[..., 0] / z + intr.cx
        v = intr.fy * cam[..., 1] / z + intr.cy
        inside = (z > 0.05) & (u >= -0.5) & (u < intr.width - 0.5) & (v >= -0.5) & (v < intr.height - 0.5)
    inside &= np.isfinite(z)
    ui = np.clip(np.nan_to_num(np.round(u)), 0, intr.width - 1).astype(int)
    vi = np.clip(np.nan_to_num(np.round(v)), 0, intr.height - 1).astype(int)
    dj = fp.depth[j][vi, ui]
    with np.errstate(invalid="ignore"):
        visible = ~np.isfinite(dj) | (np.abs(z - dj) <= 0.1 * np.maximum(dj, 1e-6))
    return (inside & visible).sum(axis=1) / P.shape[1]


class ViewOverlap:
    """Pairwise overlap of the frames of one frame set (computed for nearby pairs only).

    Args:
        fp: the frames' points (:func:`frame_points`).
        groups: (N,) scene index per frame: frames of different scenes never overlap.
        max_distance_m: pairs farther apart are not computed (overlap 0).
        positive, negative: label thresholds (see :meth:`labels`).
    """

    def __init__(self, fp: FramePoints, groups: np.ndarray, max_distance_m: float = 3.0,
                 positive: float = 0.5, negative: float = 0.1, positive_m: float = 0.5,
                 positive_deg: float = 30.0):
        self.positive, self.negative = positive, negative
        self.positive_m, self.positive_deg = positive_m, positive_deg
        self.poses = fp.poses
        self.n = n = len(fp.poses)
        groups = np.asarray(groups)
        tree = cKDTree(fp.poses[:, :3, 3])
        axes = fp.poses[:, :3, 2]
        seen = sparse.lil_matrix((n, n), dtype=np.float32)  # seen[i, j]: share of i's points j sees
        computed = 0
        for j, near in enumerate(tree.query_ball_point(fp.poses[:, :3, 3], max_distance_m)):
            rows = np.asarray([i for i in near if i != j and groups[i] == groups[j]], dtype=np.int64)
            rows = rows[axes[rows] @ axes[j] > 0.0] if len(rows) else rows  # facing within 90°
            if len(rows):
                vals = _seen_by(fp, rows, j)
                computed += len(rows)
                keep = vals > 0
                seen[rows[keep], j] = vals[keep]
        seen = seen.tocsr()
        self._overlap = seen.minimum(seen.T).tocsr()  # both directions
        self._overlap.setdiag(1.0)
        self.pairs_computed = computed

    @classmethod
    def of_frames(cls, fs, max_distance_m: float = 3.0, positive: float = 0.5, negative: float = 0.1,
                  positive_m: float = 0.5, positive_deg: float = 30.0) -> "ViewOverlap":
        """The overlap of a :class:`reloc_train.dataset.FrameSet` (each scene with its own
        colour intrinsics; its depth where it has depth files)."""
        depths = fs.depths()
        pts = np.full((len(fs), GRID[0] * GRID[1], 3), np.nan)
        coarse = np.full((len(fs), DEPTH_SIZE[1], DEPTH_SIZE[0]), np.nan, dtype=np.float32)
        small = None
        for k, sc in enumerate(fs.scenes):
            rows = np.flatnonzero(fs.scene_index == k)
            if len(rows):
                part = frame_points(fs.poses[rows], [depths[i] for i in rows], sc.color_intrinsics)
                pts[rows], coarse[rows], small = part.points, part.depth, part.intrinsics
        fp = FramePoints(pts, fs.poses, coarse, small or Intrinsics(1, 1, 0, 0, *DEPTH_SIZE))
        return cls(fp, fs.scene_index, max_distance_m, positive, negative, positive_m, positive_deg)

    def __call__(self, i: int, j: int) -> float:
        """Overlap of frames i and j in [0, 1] (1 for i == j)."""
        return float(self._overlap[int(i), int(j)])

    def matrix(self, idx: np.ndarray) -> np.ndarray:
        """(M, M) overlaps of the frames ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        return self._overlap[idx][:, idx].toarray().astype(np.float32)

    def labels(self, idx: np.ndarray) -> torch.Tensor:
        """(M, M) int8 labels of the frames ``idx``: 1 positive, -1 negative, 0 ignored (and
        between a frame and itself)."""
        idx = np.asarray(idx)
        o = self.matrix(idx)
        T = self.poses[idx]
        d = translation_error(T[:, None], T[None, :])
        r = rotation_error_deg(T[:, None], T[None, :])
        near = (d <= self.positive_m) & (r <= self.positive_deg)
        far = (d > 2 * self.positive_m) | (r > 2 * self.positive_deg)
        lab = np.where((o >= self.positive) & near, 1, np.where((o <= self.negative) | far, -1, 0)).astype(np.int8)
        lab[idx[:, None] == idx[None, :]] = 0
        return torch.from_numpy(lab)

    def hard_negatives(self, descriptors: torch.Tensor, groups: np.ndarray, k: int = 10,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """For each frame, one of its ``k`` most similar frames by descriptor (same scene)
        that it does not overlap (<= ``negative``): (N,) rows, -1 where there is none."""
        rng = rng or np.random.default_rng(0)
        sim = (descriptors @ descriptors.T).float()
        same = torch.from_numpy(groups[:, None] == groups[None, :])
        sim = torch.where(same, sim, torch.full_like(sim, -2.0))
        sim.fill_diagonal_(-2.0)
        top = sim.topk(min(4 * k, self.n - 1), dim=1).indices.numpy() if self.n > 1 else np.zeros((self.n, 0), int)
        out = np.full(self.n, -1, dtype=np.int64)
        for a in range(self.n):
            lab = self.labels(np.concatenate([[a], top[a]]))[0, 1:].numpy()
            cand = [b for b, lb in zip(top[a], lab) if groups[b] == groups[a] and lb < 0][:k]
            if cand:
                out[a] = cand[int(rng.integers(len(cand)))]
        return out
