"""The Siamese relative-pose network.

Architecture::

    image_a ─┐                    ┌─ f_a ─┐
             ├─ encoder (shared) ─┤       ├─ Z = [f_a, f_b] ─┬─ head "t" ─> t ∈ R^3
    image_b ─┘   (backbones.py)   └─ f_b ─┘                  └─ head "q" ─> q ∈ R^4, |q| = 1

* The encoder (:mod:`reloc_ros.core.model.backbones`) gives two global vectors per image:
  the average-pooled feature ``f`` (the heads' input) and an L2-normalised GeM descriptor
  (for retrieval).
* The heads take two *feature vectors*, not two images, so a query is encoded once and
  compared with cached database features.
* The prediction is the pose of frame b in frame a: ``relative_pose(T_a, T_b)`` in
  :mod:`reloc_ros.core.geometry` terms, with ``q`` w-first. So ``T_b = T_a @ make_pose(t, q)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from reloc_ros.core.model.backbones import BACKBONES, build_encoder

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TASK_DIMS", "ModelConfig", "Head", "RelPoseNet", "resize_rgb"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: output size of each task head
TASK_DIMS = {"t": 3, "q": 4}


@dataclass
class ModelConfig:
    """Everything that defines the network's shape and its input.

    Attributes:
        arch: backbone name, one of :data:`~reloc_ros.core.model.backbones.BACKBONES` (resnet34 as in the paper; resnet18 for CPU).
        input_size: (height, width) that images are resized to.
        mean, std: per-channel normalisation of RGB values in [0, 1].
        head_hidden: width of the hidden layer of each head (0: a single linear layer).
        dropout: dropout before each head's output layer during training.
        gem_p: exponent of the GeM pooling of the retrieval descriptor.
        tasks: the task heads, in loss order ("t" translation, "q" rotation).
    """

    arch: str = "resnet34"
    input_size: tuple[int, int] = (256, 341)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    head_hidden: int = 512
    dropout: float = 0.0
    gem_p: float = 3.0
    tasks: tuple[str, ...] = ("t", "q")

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.tasks = tuple(self.tasks)
        if self.arch not in BACKBONES:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(BACKBONES)}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width) >= 32, got {self.input_size}")
        unknown = [t for t in self.tasks if t not in TASK_DIMS]
        if unknown:
            raise ValueError(f"unknown task heads {unknown}; known: {sorted(TASK_DIMS)}")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise ValueError(f"unknown model config keys {sorted(extra)}")
        return cls(**d)

    @property
    def feature_dim(self) -> int:
        return BACKBONES[self.arch].feature_dim


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
    """Siamese relative-pose regressor.

    Args:
        cfg: the :class:`ModelConfig`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.arch, cfg.gem_p)
        C = cfg.feature_dim
        self.heads = nn.ModuleDict(
            {t: Head(2 * C, TASK_DIMS[t], cfg.head_hidden, cfg.dropout) for t in cfg.tasks}
        )
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

    # -- the two halves
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W) -> (features f (B, C), descriptors (B, C))."""
        return self.encoder(x)

    def predict(self, f_a: torch.Tensor, f_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relative pose of b in a from two feature batches: {'t': (B, 3), 'q': (B, 4)}."""
        return self.heads_from_z(torch.cat([f_a, f_b], dim=1))

    def heads_from_z(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, head in self.heads.items():
            y = head(z)
            if name == "q":
                y = F.normalize(y.float(), dim=1)
            out[name] = y
        return out

    def forward_pair(self, x_a: torch.Tensor, x_b: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Training forward: one encoder pass over both images (BatchNorm sees the pair
        batch once). Returns (predictions, Z) where Z = [f_a, f_b] is the shared
        representation that the Z-level MTL methods differentiate against."""
        f, _ = self.encoder(torch.cat([x_a, x_b], dim=0))
        f_a, f_b = f.chunk(2, dim=0)
        z = torch.cat([f_a, f_b], dim=1)
        return self.heads_from_z(z), z

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_pair(x_a, x_b)[0]

    # -- parameter groups for MTL
    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


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
