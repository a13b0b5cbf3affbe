"""Pairs of overlapping training frames for relative-pose regression.

Two frames make a training pair when their cameras are close and look the same way:

* ``min_distance_m <= |c_i - c_j| <= max_distance_m`` (camera centres, metres), and
* the angle between the optical axes (camera z axes) is at most ``max_angle_deg``.

The minimum distance skips near-duplicate frames, which teach the network nothing about
motion. Candidates come from a k-d tree over camera centres, so the sampler scales to the
full 7-Scenes training set (26k frames) without enumerating all pairs.

Sampling is deterministic for a seed: each anchor frame draws up to ``pairs_per_frame``
partners from its candidates with a generator seeded from ``(seed, epoch)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["PairConfig", "candidate_partners", "sample_pairs", "PairSampler"]


@dataclass(frozen=True)
class PairConfig:
    """Thresholds that decide which frames overlap.

    Attributes:
        max_distance_m: largest distance between the two camera centres.
        min_distance_m: smallest distance (near-duplicates are skipped).
        max_angle_deg: largest angle between the two optical axes.
        pairs_per_frame: partners drawn per anchor frame and epoch.
        cross_sequence: allow pairs whose frames come from different sequences.
        same_sequence: allow pairs from one sequence.
    """

    max_distance_m: float = 1.0
    min_distance_m: float = 0.05
    max_angle_deg: float = 30.0
    pairs_per_frame: int = 4
    cross_sequence: bool = True
    same_sequence: bool = True

    def __post_init__(self):
        if not 0 <= self.min_distance_m <= self.max_distance_m:
            raise ValueError("need 0 <= min_distance_m <= max_distance_m")
        if not 0 < self.max_angle_deg <= 180:
            raise ValueError("max_angle_deg must be in (0, 180]")
        if self.pairs_per_frame < 1:
            raise ValueError("pairs_per_frame must be >= 1")
        if not (self.cross_sequence or self.same_sequence):
            raise ValueError("at least one of cross_sequence and same_sequence must be allowed")


def candidate_partners(
    poses: np.ndarray, cfg: PairConfig, seq_ids: np.ndarray | None = None
) -> list[np.ndarray]:
    """For each frame, the indices of the frames that overlap it (sorted, never itself).

    Args:
        poses: (N, 4, 4) camera-to-world poses.
        cfg: thresholds.
        seq_ids: (N,) sequence id per frame, used by the same/cross-sequence rules.
    """
    poses = np.asarray(poses, dtype=np.float64)
    n = len(poses)
    if n == 0:
        return []
    centres = poses[:, :3, 3]
    axes = poses[:, :3, 2]  # optical axis (camera z) in world
    seq = np.zeros(n, dtype=np.int64) if seq_ids is None else np.asarray(seq_ids)
    if seq.shape != (n,):
        raise ValueError(f"seq_ids must have shape ({n},), got {seq.shape}")
    cos_max = np.cos(np.radians(cfg.max_angle_deg))
    tree = cKDTree(centres)
    out = []
    for i, nb in enumerate(tree.query_ball_point(centres, r=cfg.max_distance_m)):
        nb = np.asarray(nb, dtype=np.int64)
        nb = nb[nb != i]
        if len(nb):
            d = np.linalg.norm(centres[nb] - centres[i], axis=1)
            keep = (d >= cfg.min_distance_m) & (axes[nb] @ axes[i] >= cos_max - 1e-12)
            same = seq[nb] == seq[i]
            if not cfg.same_sequence:
                keep &= ~same
            if not cfg.cross_sequence:
                keep &= same
            nb = np.sort(nb[keep])
        out.append(nb)
    return out


def sample_pairs(
    poses: np.ndarray,
    cfg: PairConfig = PairConfig(),
    seq_ids: np.ndarray | None = None,
    seed: int = 0,
    epoch: int = 0,
    candidates: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Draw training pairs: an (M, 2) array of (anchor, partner) frame indices, shuffled.

    Args:
        poses, cfg, seq_ids: as in :func:`candidate_partners`.
        seed, epoch: together they seed the draw; the same values give the same pairs.
        candidates: precomputed :func:`candidate_partners` (saves the k-d tree query).
    """
    if candidates is None:
        candidates = candidate_partners(poses, cfg, seq_ids)
    rng = np.random.default_rng([int(seed), int(epoch)])
    rows = []
    for i, nb in enumerate(candidates):
        if len(nb) == 0:
            continue
        k = min(cfg.pairs_per_frame, len(nb))
        partners = rng.choice(nb, size=k, replace=False)
        rows.append(np.stack([np.full(k, i, dtype=np.int64), partners], axis=1))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(rows)
    return pairs[rng.permutation(len(pairs))]


class PairSampler:
    """Training pairs re-drawn every epoch, deterministic for (seed, epoch).

    Args:
        poses: (N, 4, 4) camera-to-world poses of the training frames.
        cfg: overlap thresholds and pairs per frame.
        seq_ids: (N,) sequence id per frame (optional).
        seed: base seed.
    """

    def __init__(self, poses: np.ndarray, cfg: PairConfig = PairConfig(),
                 seq_ids: np.ndarray | None = None, seed: int = 0):
        self.cfg = cfg
        self.seed = int(seed)
        self.candidates = candidate_partners(poses, cfg, seq_ids)
        self.n_frames = len(self.candidates)
        self.n_isolated = sum(1 for c in self.candidates if len(c) == 0)

    def pairs(self, epoch: int = 0) -> np.ndarray:
        """(M, 2) pairs for an epoch."""
        return sample_pairs(None, self.cfg, seed=self.seed, epoch=epoch, candidates=self.candidates)

    def __repr__(self) -> str:
        return (f"PairSampler({self.n_frames} frames, {self.n_isolated} without partner, "
                f"{self.cfg})")
