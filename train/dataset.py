"""Training data: frames of one or more 7-Scenes-format scenes, as pairs with their relative pose.

Images are resized once to the model's input size and, when they fit in memory
(``cache_limit_mb``), kept as one uint8 tensor (:class:`ImageStore`). Normalisation happens
on the device, in :meth:`reloc_ros.core.model.RelPoseNet.preprocess`, so workers ship compact
uint8 batches. With a partly frozen encoder, :class:`FeatureStore` keeps the output of the
frozen stages instead (computed once), and training runs only the stages after them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from reloc_ros.core.geometry import canonical_quat, pose_to_tq, relative_pose
from reloc_ros.core.model import RelPoseNet, resize_rgb
from reloc_ros.data.sevenscenes import Frame, Scene, read_color
from reloc_train.augment import AugmentConfig, augment_image
from reloc_train.pairs import PairConfig, PairSampler

log = logging.getLogger(__name__)

__all__ = ["load_resized", "FrameSet", "ImageStore", "FeatureStore", "PairDataset"]


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

    def depths(self) -> list[np.ndarray | None]:
        """Each frame's depth in metres (NaN: invalid), registered to the colour image when
        the scene says so; None where a frame has no depth file."""
        return [self.scenes[k].depth(f) if f.depth_path is not None else None
                for k, f in zip(self.scene_index, self.frames)]


class ImageStore:
    """Resized uint8 images of a FrameSet, cached in memory when they fit.

    ``start`` is 0: its items are images, the network's input from its first stage.
    """

    start = 0

    def __init__(self, fs: FrameSet, size_hw: tuple[int, int], cache_limit_mb: float = 2048):
        self.fs, self.size = fs, tuple(size_hw)
        need_mb = len(fs) * size_hw[0] * size_hw[1] * 3 / 2**20
        self.cache: torch.Tensor | None = None
        if need_mb <= cache_limit_mb:
            self.cache = torch.from_numpy(np.stack([load_resized(f.color_path, self.size) for f in fs.frames])) \
                if len(fs) else torch.zeros((0, *self.size, 3), dtype=torch.uint8)
            log.info("cached %d images (%.0f MB)", len(fs), need_mb)

    def __len__(self) -> int:
        return len(self.fs)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[i]
        return torch.from_numpy(load_resized(self.fs.frames[i].color_path, self.size))

    def batch(self, idx, device: torch.device) -> torch.Tensor:
        """The network input of frames ``idx`` at stage 0 (normalised images) on ``device``."""
        return torch.stack([self[int(i)] for i in idx]).to(device)


class FeatureStore:
    """The output of a network's first ``start`` encoder stages for every frame of an image
    store, computed once (in eval mode, float16 on the CPU); with augmentation, also for
    ``augment.variants`` augmented copies of every frame.

    Args:
        model: the network; its first ``start`` stages must stay frozen while the store is used.
        images: the frames' images.
        start: how many encoder stages the store has run (>= 1).
        device: where to compute.
        batch: images per forward pass.
        augment: appearance augmentation (None or ``p == 0``: the clean frames only).
        seed: seeds the augmented copies (copy v of frame i: ``[seed, v, i]``).
    """

    def __init__(self, model: RelPoseNet, images: ImageStore, start: int, device: torch.device, batch: int = 64,
                 augment: AugmentConfig | None = None, seed: int = 0):
        if start < 1:
            raise ValueError("a FeatureStore runs at least one encoder stage")
        self.fs, self.start, self.n = images.fs, int(start), len(images)
        self.variants = augment.variants if augment is not None and augment.p > 0 else 0
        was = model.training
        model.eval()
        parts = []
        with torch.no_grad():
            for v in range(self.variants + 1):
                for s in range(0, self.n, batch):
                    rows = range(s, min(s + batch, self.n))
                    imgs = [images[i] if v == 0 else torch.from_numpy(augment_image(
                        images[i].numpy(), augment, np.random.default_rng([seed, v, i]))) for i in rows]
                    x = model.preprocess(torch.stack(imgs).to(device))
                    parts.append(model.encoder.feature_map(x, 0, self.start).to("cpu", torch.float16))
        model.train(was)
        self.cache = torch.cat(parts) if parts else torch.zeros(0)
        log.info("cached the output of %d frozen encoder stages for %d frames x %d (%.0f MB)", self.start, self.n,
                 self.variants + 1, self.cache.numel() * 2 / 2**20)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.cache[i]

    def variant(self, i: int, v: int) -> torch.Tensor:
        """Copy ``v`` of frame ``i`` (0: the clean frame; 1..variants: augmented)."""
        return self.cache[v * self.n + i]

    def batch(self, idx, device: torch.device) -> torch.Tensor:
        """The inputs of stage ``start`` for frames ``idx``, float32 on ``device``."""
        return self.cache[torch.as_tensor(np.asarray(idx, dtype=np.int64))].to(device, torch.float32)


class PairDataset(Dataset):
    """Items: ``{"a", "b", "t", "q", "idx"}`` and, with hard negatives, ``"h"``: the two frames'
    inputs (images or cached features), (t, q) = relative_pose(T_a, T_b) with q w-first and
    canonical, and the frame rows ``idx`` = (a, b, h) (h = -1 without hard negatives).

    Args:
        fs: the training frames.
        store: their inputs (an :class:`ImageStore` or a :class:`FeatureStore`).
        pair_cfg: overlap thresholds (:class:`reloc_train.pairs.PairConfig`).
        seed: seeds the pair draws (with the epoch).
        rank, world_size: shard of the pairs that this process trains on (distributed).
        augment: appearance augmentation of the inputs (None: none). Each input is augmented
            with probability ``augment.p``: an image afresh, a cached feature map by taking one
            of the store's augmented copies. The draws depend on (seed, epoch, item) only, so
            a resumed run sees the same inputs.
    """

    def __init__(self, fs: FrameSet, store, pair_cfg: PairConfig, seed: int = 0, rank: int = 0,
                 world_size: int = 1, augment: AugmentConfig | None = None):
        self.fs, self.store = fs, store
        self.augment = augment if augment is not None and augment.p > 0 else None
        self.epoch = 0
        # Pairs never cross scenes: distinct scenes have unrelated world frames.
        self.samplers = []
        for k in range(len(fs.scenes)):
            idx = np.flatnonzero(fs.scene_index == k)
            self.samplers.append((idx, PairSampler(fs.poses[idx], pair_cfg, fs.seq_ids[idx], seed + 7919 * k)))
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.pairs = np.zeros((0, 2), dtype=np.int64)
        self.hard_negatives: np.ndarray | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int, hard_negatives: np.ndarray | None = None) -> None:
        """Draw the pairs of an epoch (deterministic), shuffled, then this rank's shard.

        Args:
            epoch: the epoch.
            hard_negatives: (N,) a hard negative frame per frame (-1: none), used for the
                first frame of each pair; None: no hard negatives.
        """
        self.epoch = epoch
        parts = [idx[s.pairs(epoch)] for idx, s in self.samplers]
        pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch, 1])
        pairs = pairs[rng.permutation(len(pairs))]
        n = (len(pairs) // self.world_size) * self.world_size  # equal shards
        self.pairs = pairs[self.rank:n:self.world_size]
        self.hard_negatives = hard_negatives

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict:
        i, j = (int(v) for v in self.pairs[k])
        t, q = pose_to_tq(relative_pose(self.fs.poses[i], self.fs.poses[j]))
        h = -1 if self.hard_negatives is None else int(self.hard_negatives[i])
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, k, 2]) if self.augment else None
        item = {"a": self._input(i, rng), "b": self._input(j, rng), "t": torch.tensor(t, dtype=torch.float32),
                "q": torch.tensor(canonical_quat(q), dtype=torch.float32),
                "idx": torch.tensor([i, j, h], dtype=torch.int64)}
        if self.hard_negatives is not None:
            item["h"] = self._input(h if h >= 0 else i, rng)
        return item

    def _input(self, i: int, rng: np.random.Generator | None) -> torch.Tensor:
        """Frame ``i``'s input, augmented with probability ``augment.p`` (``rng``: None, never)."""
        if rng is None or rng.uniform() >= self.augment.p:
            return self.store[i]
        if isinstance(self.store, FeatureStore):
            if self.store.variants == 0:
                return self.store[i]
            return self.store.variant(i, int(rng.integers(1, self.store.variants + 1)))
        return torch.from_numpy(augment_image(self.store[i].numpy(), self.augment, rng))
