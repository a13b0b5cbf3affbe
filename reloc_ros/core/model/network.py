"""The Siamese relative-pose network.

Architecture::

    image_a ─┐                      ┌─ fmap_a ─┬─ avg-pool ─ f_a ─┐
             ├─ encoder (shared) ───┤          │                  ├─ [f_a, f_b] ─┬─ head "t" ─> t ∈ R^3
    image_b ─┘   (backbones.py)     └─ fmap_b ─┼─ avg-pool ─ f_b ─┘              └─ head "q" ─> q, |q| = 1
                                               └─ GeM (+ projection) ─ descriptor (task "r": retrieval)

  (with ``pose_grid``, f is the feature map pooled to a small grid, reduced and flattened
  instead of the global average)

* The encoder (:mod:`reloc_ros.core.model.backbones`) gives the last feature map. The
  average-pooled feature ``f`` is the heads' input; the L2-normalised GeM descriptor (with
  a learned linear projection when ``descriptor_dim`` > 0) is the retrieval descriptor.
* The heads take two *feature vectors*, not two images, so a query is encoded once and
  compared with cached database features.
* The prediction is the pose of frame b in frame a: ``relative_pose(T_a, T_b)`` in
  :mod:`reloc_ros.core.geometry` terms, with ``q`` w-first. So ``T_b = T_a @ make_pose(t, q)``.
* Training: ``Z = (fmap_a, fmap_b)``, the feature maps of both images, is the shared
  representation that every task reads (t and q through the average pool, retrieval through
  GeM); the Z-level MTL methods differentiate against it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from reloc_ros.core.model.backbones import BACKBONES, build_encoder, gem

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TASK_DIMS", "TASKS", "ModelConfig", "Head", "RelPoseNet", "resize_rgb"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: output size of each pose head
TASK_DIMS = {"t": 3, "q": 4}
#: every task the network can be trained on: the pose heads and "r", the retrieval descriptor
TASKS = ("t", "q", "r")
#: How the heads compare two frames (ModelConfig.pose_head).
POSE_HEADS = ("concat", "correlation")


@dataclass
class ModelConfig:
    """Everything that defines the network's shape and its input.

    Attributes:
        arch: backbone name, one of :data:`~reloc_ros.core.model.backbones.BACKBONES`
            (resnet34 as in the paper; efficientnet_lite0 for CPUs).
        input_size: (height, width) that images are resized to.
        mean, std: per-channel normalisation of RGB values in [0, 1]; None: the backbone's.
        head_hidden: width of the hidden layer of each head (0: a single linear layer).
        dropout: dropout before each head's output layer during training.
        gem_p: exponent of the GeM pooling of the retrieval descriptor.
        descriptor_dim: length of the learned projection of the GeM descriptor (0: the plain
            GeM descriptor, as long as the feature map has channels).
        pose_grid: (rows, cols) of the pose feature: the feature map average-pooled to this
            grid, reduced to ``pose_channels`` by a 1x1 convolution and flattened, so the
            heads see where things are; None: the global average (a C-vector).
        pose_channels: channels of the grid pose feature.
        pose_head: how the heads compare the two frames: ``concat`` reads ``[f_a, f_b]``;
            ``correlation`` (needs ``pose_grid``; after ExReNet, Winkelbauer et al., ICRA
            2021) reads the cosine similarity of every cell of a's grid with every cell of
            b's, an (R*C)^2 volume that says where each part of a went in b, not what it
            looks like.
        tasks: the tasks trained, in loss order: "t" translation, "q" rotation and
            optionally "r", the retrieval descriptor.
    """

    arch: str = "resnet34"
    input_size: tuple[int, int] = (256, 341)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    head_hidden: int = 512
    dropout: float = 0.0
    gem_p: float = 3.0
    descriptor_dim: int = 0
    pose_grid: tuple[int, int] | None = None
    pose_channels: int = 64
    tasks: tuple[str, ...] = ("t", "q")
    pose_head: str = "concat"

    def __post_init__(self):
        if self.arch not in BACKBONES:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(BACKBONES)}")
        spec = BACKBONES[self.arch]
        self.input_size = tuple(int(v) for v in self.input_size)
        self.mean = tuple(float(v) for v in (spec.mean if self.mean is None else self.mean))
        self.std = tuple(float(v) for v in (spec.std if self.std is None else self.std))
        self.tasks = tuple(self.tasks)
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width) >= 32, got {self.input_size}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; known: {list(TASKS)}")
        if not {"t", "q"} <= set(self.tasks):
            raise ValueError(f"tasks must include the pose heads 't' and 'q', got {list(self.tasks)}")
        if self.descriptor_dim < 0:
            raise ValueError(f"descriptor_dim must be >= 0, got {self.descriptor_dim}")
        if self.pose_grid is not None:
            self.pose_grid = tuple(int(v) for v in self.pose_grid)
            if len(self.pose_grid) != 2 or min(self.pose_grid) < 1 or self.pose_channels < 1:
                raise ValueError(f"pose_grid must be (rows, cols) >= 1, got {self.pose_grid}")
        if self.pose_head not in POSE_HEADS:
            raise ValueError(f"unknown pose_head {self.pose_head!r}; choose one of {list(POSE_HEADS)}")
        if self.pose_head == "correlation" and self.pose_grid is None:
            raise ValueError("pose_head 'correlation' needs a pose_grid (the cells it correlates)")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise ValueError(f"unknown model config keys {sorted(extra)}")
        return cls(**d)

    @property
    def channels(self) -> int:
        """Channels of the encoder's last feature map."""
        return BACKBONES[self.arch].feature_dim

    @property
    def feature_dim(self) -> int:
        """Length of the heads' feature f (per image)."""
        if self.pose_grid is None:
            return self.channels
        return self.pose_channels * self.pose_grid[0] * self.pose_grid[1]

    @property
    def pair_dim(self) -> int:
        """Length of the heads' input Z for a pair of features."""
        if self.pose_head == "correlation":
            return (self.pose_grid[0] * self.pose_grid[1]) ** 2
        return 2 * self.feature_dim

    @property
    def descriptor_length(self) -> int:
        """Length of the retrieval descriptor."""
        return self.descriptor_dim or self.channels

    @property
    def pose_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in self.tasks if t in TASK_DIMS)


class Head(nn.Module):
    """MLP from Z = [f_a, f_b] (2C) to one task's output."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float):
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                                     nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class RelPoseNet(nn.Module):
    """Siamese relative-pose regressor with a retrieval descriptor.

    Args:
        cfg: the :class:`ModelConfig`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.arch)
        self.heads = nn.ModuleDict(
            {t: Head(cfg.pair_dim, TASK_DIMS[t], cfg.head_hidden, cfg.dropout) for t in cfg.pose_tasks}
        )
        self.pose_neck = None if cfg.pose_grid is None else nn.Sequential(
            nn.AdaptiveAvgPool2d(cfg.pose_grid), nn.Conv2d(cfg.channels, cfg.pose_channels, 1),
            nn.BatchNorm2d(cfg.pose_channels), nn.ReLU(inplace=True), nn.Flatten())
        self.descriptor_head = nn.Linear(cfg.channels, cfg.descriptor_dim, bias=False) if cfg.descriptor_dim else None
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    # -- input
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB or float (B, 3, H, W) in [0, 1] -> normalised network input
        at ``cfg.input_size`` (antialiased bilinear resize when the size differs)."""
        if images.dtype == torch.uint8:
            images = _resize_uint8_nchw(images.permute(0, 3, 1, 2).float(), self.cfg.input_size).div_(255.0)
        elif tuple(images.shape[-2:]) != self.cfg.input_size:
            images = F.interpolate(images, size=self.cfg.input_size, mode="bilinear",
                                   align_corners=False, antialias=True)
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    # -- pooling of the feature map
    def pose_feature(self, fmap_BChw: torch.Tensor) -> torch.Tensor:
        """The heads' feature f (B, feature_dim) of feature maps."""
        if self.pose_neck is None:
            return fmap_BChw.mean(dim=(2, 3))
        return self.pose_neck(fmap_BChw)

    def descriptor(self, fmap_BChw: torch.Tensor) -> torch.Tensor:
        """L2-normalised retrieval descriptors (B, D) of feature maps."""
        d = gem(fmap_BChw, self.cfg.gem_p)
        if self.descriptor_head is not None:
            d = self.descriptor_head(d)
        return F.normalize(d, dim=1)

    def encode(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W), or the output of encoder stage ``start - 1`` ->
        (features f (B, C), descriptors (B, D))."""
        fmap = self.encoder.feature_map(x, start)
        return self.pose_feature(fmap), self.descriptor(fmap)

    def encode_levels(self, x: torch.Tensor, levels: tuple[int, ...]
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """One encoder pass over normalised images (B, 3, H, W) that also returns the output
        of the encoder stages ``levels`` (the dense features of feature-metric refinement):
        ``(f (B, C), descriptors (B, D), {stage: fmap (B, C_s, h_s, w_s)})``."""
        x, out = self.encoder.feature_maps(x, 0, levels)
        return self.pose_feature(x), self.descriptor(x), out

    def predict(self, f_a: torch.Tensor, f_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relative pose of b in a from two feature batches: {'t': (B, 3), 'q': (B, 4)}."""
        return self.heads_from_z(self.pair(f_a, f_b))

    def pair(self, f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
        """The heads' input Z (B, pair_dim) of two feature batches (see ``pose_head``)."""
        if self.cfg.pose_head == "correlation":
            B, (R, C) = f_a.shape[0], self.cfg.pose_grid
            a = F.normalize(f_a.float().view(B, self.cfg.pose_channels, R * C), dim=1)
            b = F.normalize(f_b.float().view(B, self.cfg.pose_channels, R * C), dim=1)
            return torch.bmm(a.transpose(1, 2), b).flatten(1).to(f_a.dtype)
        return torch.cat([f_a, f_b], dim=1)

    def heads_from_z(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, head in self.heads.items():
            y = head(z)
            if name == "q":
                y = F.normalize(y.float(), dim=1)
            out[name] = y
        return out

    def forward_pair(self, x_a: torch.Tensor, x_b: torch.Tensor, start: int = 0,
                     extra: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """:meth:`forward_pair_levels` without intermediate stages: (predictions, Z)."""
        out, z, _ = self.forward_pair_levels(x_a, x_b, start, extra)
        return out, z

    def forward_pair_levels(self, x_a: torch.Tensor, x_b: torch.Tensor, start: int = 0,
                            extra: torch.Tensor | None = None, levels: tuple[int, ...] = ()
                            ) -> tuple[dict, torch.Tensor, dict[int, torch.Tensor]]:
        """Training forward: one encoder pass over all inputs (BatchNorm sees the batch once),
        from encoder stage ``start`` (0: normalised images).

        Args:
            x_a, x_b: the B pairs.
            start: encoder stage the inputs enter at.
            extra: more images (E) for the retrieval task only (e.g. hard negatives).
            levels: encoder stages whose output is also returned.

        Returns (predictions, Z, stage outputs): ``{'t', 'q'}`` of the pairs and, with task "r", ``'r'``:
        the (2B + E, D) descriptors of a, b, then extra; Z is the (2B + E, C, h, w) feature
        map of the same inputs, the shared representation that every task reads (the
        Z-level MTL methods differentiate against it); then ``{stage: fmap}`` of the same
        inputs at the encoder stages ``levels`` (>= ``start``; an auxiliary decoder's skips)."""
        B = x_a.shape[0]
        parts = [x_a, x_b] + ([extra] if extra is not None and len(extra) else [])
        z, feats = self.encoder.feature_maps(torch.cat(parts, dim=0), start, levels)
        f = self.pose_feature(z[: 2 * B])
        out = self.heads_from_z(self.pair(f[:B], f[B:]))
        if "r" in self.cfg.tasks:
            out["r"] = self.descriptor(z)
        return out, z, feats

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_pair(x_a, x_b)[0]

    # -- parameter groups for MTL
    def shared_parameters(self) -> list[nn.Parameter]:
        """The encoder's trainable parameters (every task's gradient reaches them)."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self) -> list[nn.Parameter]:
        """The pose heads' (with the grid pose neck they share) and the descriptor
        projection's parameters."""
        extra = [p for m in (self.pose_neck, self.descriptor_head) if m is not None for p in m.parameters()]
        return list(self.heads.parameters()) + extra

    # -- partly frozen encoders
    def freeze_stages(self, n: int) -> None:
        """Freeze the first ``n`` encoder stages: no gradient, and BatchNorm statistics kept
        (they stay in eval mode through :meth:`train`)."""
        if not 0 <= n <= self.encoder.num_stages:
            raise ValueError(f"freeze_stages must be in 0..{self.encoder.num_stages}, got {n}")
        self.frozen_stages = n
        for mods in self.encoder.stages()[:n]:
            for m in mods:
                m.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "RelPoseNet":
        super().train(mode)
        for mods in self.encoder.stages()[:getattr(self, "frozen_stages", 0)]:
            for m in mods:
                m.eval()
        return self


def _resize_uint8_nchw(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of float-valued 0..255 images, rounded back to integer
    levels: the one resize of the project (training cache, database, queries)."""
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    y = F.interpolate(x, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255)


def resize_rgb(image, size_hw: tuple[int, int]):
    """Resize a uint8 (H, W, 3) RGB numpy image to (height, width) exactly as
    :meth:`RelPoseNet.preprocess` does, so that images cached at the input size (training,
    database) and images resized on the fly (queries) give the same network input."""
    if tuple(image.shape[:2]) == tuple(size_hw):
        return image
    x = torch.tensor(image).permute(2, 0, 1).unsqueeze(0).float()
    return _resize_uint8_nchw(x, size_hw)[0].permute(1, 2, 0).to(torch.uint8).numpy()
