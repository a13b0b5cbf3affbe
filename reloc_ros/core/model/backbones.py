"""Image encoders (backbones) of the Siamese network, chosen by name from a registry.

Every encoder maps normalised images ``image_B3HW`` to a last feature map ``fmap_BCHW`` and
from it two global vectors per image: the average-pooled feature ``f_BC`` (the relative-pose
heads' input) and an L2-normalised GeM-pooled descriptor ``desc_BC`` (retrieval). The
architecture is rebuilt from its name alone (``weights=None``): trained weights come from
the model file, ImageNet initialisation from training (``reloc_train.pretrained``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reloc_ros.core.model._torchvision import import_torchvision

__all__ = ["BackboneSpec", "BACKBONES", "Encoder", "ResNetEncoder", "build_encoder", "gem"]


def gem(fmap_BCHW: torch.Tensor, p: float) -> torch.Tensor:
    """Generalised-mean pooling (Radenović et al., TPAMI 2019) of a feature map, in float32."""
    return fmap_BCHW.float().clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class Encoder(nn.Module):
    """Base class: subclasses implement :meth:`feature_map` and :meth:`last_shared_layer`.

    Args:
        gem_p: exponent of the GeM pooling of the retrieval descriptor.
    """

    feature_dim: int = 0

    def __init__(self, gem_p: float = 3.0):
        super().__init__()
        self.gem_p = float(gem_p)

    def feature_map(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, image_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features f_BC, L2-normalised GeM descriptors desc_BC)."""
        fmap = self.feature_map(image_B3HW)
        return fmap.mean(dim=(2, 3)), F.normalize(gem(fmap, self.gem_p), dim=1)

    def last_shared_layer(self) -> list[nn.Parameter]:
        """Parameters of the encoder's last layer (GradNorm's W)."""
        raise NotImplementedError


class ResNetEncoder(Encoder):
    """A torchvision ResNet without its classifier (the reference paper's encoder).

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        gem_p: GeM exponent of the descriptor.
    """

    def __init__(self, arch: str, gem_p: float = 3.0):
        super().__init__(gem_p)
        net = getattr(import_torchvision().models, arch)(weights=None)
        # Attribute names fixed: they are the state-dict keys of every saved model file.
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_dim = net.fc.in_features

    def feature_map(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(image_B3HW)))))

    def last_shared_layer(self) -> list[nn.Parameter]:
        last_block = self.layer4[-1]
        conv = last_block.conv3 if hasattr(last_block, "conv3") else last_block.conv2
        return [conv.weight]


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: how to build an encoder and what it gives.

    Attributes:
        build: ``build(gem_p) -> Encoder`` (random weights).
        feature_dim: channels of the last feature map (= length of f and of the descriptor).
        stride: output stride of the last feature map.
    """

    build: Callable[[float], Encoder]
    feature_dim: int
    stride: int


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(lambda p: ResNetEncoder("resnet18", p), 512, 32),
    "resnet34": BackboneSpec(lambda p: ResNetEncoder("resnet34", p), 512, 32),
    "resnet50": BackboneSpec(lambda p: ResNetEncoder("resnet50", p), 2048, 32),
}


def build_encoder(arch: str, gem_p: float = 3.0) -> Encoder:
    """The encoder ``arch`` of :data:`BACKBONES`, with random weights."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[arch].build(gem_p)
