"""Training data: frames of one or more 7-Scenes-format scenes, as pairs with their relative pose.

Images are resized once to the model's input size and, when they fit in memory
(``cache_limit_mb``), kept as one uint8 tensor. Normalisation happens on the device, in
:meth:`reloc_ros.core.model.RelPoseNet.preprocess`, so workers ship compact uint8 batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from reloc_train.pairs import PairConfig, PairSampler
from reloc_ros.data.sevenscenes import Frame, Scene, read_color
from reloc_ros.core.geometry import canonical_quat, pose_to_tq, relative_pose
from reloc_ros.core.model import resize_rgb

log = logging.getLogger(__name__)


def load_resized(path, size_hw: tuple[int, int]) -> np.ndarray:
    """Read an RGB image and resize it to (height, width) as the model's preprocessing does."""
    return resize_rgb(read_color(path), size_hw)


@dataclass
class FrameSet:
    """Frames of several scenes, flattened: per frame its scene index, sequence and pose."""

    frames: list[Frame]
    scene_index: np.ndarray  # (N,) index into scenes
    poses: np.ndarray  # (N, 4, 4) camera-to-world
    scenes: list[Scene]

    @classmethod
    def from_scenes(cls, scenes: list[Scene], split: str) -> "FrameSet":
        frames, sidx, poses = [], [], []
        for k, sc in enumerate(scenes):
            fr = sc.frames(split)
            frames += fr
            sidx += [k] * len(fr)
            poses.append(sc.poses(fr))
        return cls(frames, np.array(sidx, dtype=np.int64),
                   np.concatenate(poses) if poses else np.zeros((0, 4, 4)), scenes)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def seq_ids(self) -> np.ndarray:
        """A sequence id unique across scenes (pairs never mix scenes: see PairDataset)."""
        return np.array([k * 10_000 + f.seq for k, f in zip(self.scene_index, self.frames)])


class ImageStore:
    """Resized uint8 images of a FrameSet, cached in memory when they fit."""

    def __init__(self, fs: FrameSet, size_hw: tuple[int, int], cache_limit_mb: float = 2048):
        self.fs, self.size = fs, tuple(size_hw)
        need_mb = len(fs) * size_hw[0] * size_hw[1] * 3 / 2**20
        self.cache: torch.Tensor | None = None
        if need_mb <= cache_limit_mb:
            self.cache = torch.from_numpy(np.stack([load_resized(f.color_path, self.size) for f in fs.frames])) \
                if len(fs) else torch.zeros((0, *self.size, 3), dtype=torch.uint8)
            log.info("cached %d images (%.0f MB)", len(fs), need_mb)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[i]
        return torch.from_numpy(load_resized(self.fs.frames[i].color_path, self.size))


class PairDataset(Dataset):
    """(image_a, image_b, t, q) where (t, q) = relative_pose(T_a, T_b), q w-first, canonical.

    Args:
        fs: the training frames.
        size_hw: network input size.
        pair_cfg: overlap thresholds (:class:`reloc_train.pairs.PairConfig`).
        seed: seeds the pair draws (with the epoch).
        cache_limit_mb: keep images in memory when they need less than this.
        rank, world_size: shard of the pairs that this process trains on (distributed).
    """

    def __init__(self, fs: FrameSet, size_hw, pair_cfg: PairConfig, seed: int = 0,
                 cache_limit_mb: float = 2048, rank: int = 0, world_size: int = 1):
        self.fs = fs
        self.images = ImageStore(fs, size_hw, cache_limit_mb)
        # Pairs never cross scenes: distinct scenes have unrelated world frames.
        self.samplers = []
        for k in range(len(fs.scenes)):
            idx = np.flatnonzero(fs.scene_index == k)
            self.samplers.append((idx, PairSampler(fs.poses[idx], pair_cfg, fs.seq_ids[idx], seed + 7919 * k)))
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.pairs = np.zeros((0, 2), dtype=np.int64)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairs of an epoch (deterministic), shuffled, then this rank's shard."""
        parts = [idx[s.pairs(epoch)] for idx, s in self.samplers]
        pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch, 1])
        pairs = pairs[rng.permutation(len(pairs))]
        n = (len(pairs) // self.world_size) * self.world_size  # equal shards
        self.pairs = pairs[self.rank:n:self.world_size]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int):
        i, j = (int(v) for v in self.pairs[k])
        t, q = pose_to_tq(relative_pose(self.fs.poses[i], self.fs.poses[j]))
        return (self.images[i], self.images[j],
                torch.tensor(t, dtype=torch.float32), torch.tensor(canonical_quat(q), dtype=torch.float32))
