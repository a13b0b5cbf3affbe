"""ImageNet initialisation of the encoder (training only: the node rebuilds from model files).

Nothing is downloaded. The weights come from a local ``.pth`` state dict, or from the torch
hub cache (``$TORCH_HOME/hub/checkpoints/<arch>-*.pth``) when ``source`` is ``"imagenet"``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from reloc_ros.core.model import ModelFileError, RelPoseNet

log = logging.getLogger(__name__)

__all__ = ["load_imagenet_weights"]


def load_imagenet_weights(model: RelPoseNet, source: str | Path | None) -> str:
    """Initialise the encoder from ImageNet weights when available; returns what was used.

    Args:
        model: the network.
        source: a local ``.pth`` state dict of the torchvision ResNet, or ``"imagenet"`` to
            look in the torch hub cache, or None / ``"none"`` for random initialisation.

    Returns:
        ``"random"`` or the path of the weights file.

    Raises:
        FileNotFoundError: ``source`` names a file that does not exist.
        ModelFileError: the file is not a state dict of this architecture.
    """
    if source is None or source == "" or source == "none":
        log.warning("encoder %s initialised at random (no ImageNet weights given)", model.cfg.arch)
        return "random"
    path = Path(source) if source != "imagenet" else None
    if path is None:
        ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
        found = sorted(ckpt_dir.glob(f"{model.cfg.arch}-*.pth"))
        if not found:
            log.warning("no %s ImageNet weights in %s; encoder initialised at random",
                        model.cfg.arch, ckpt_dir)
            return "random"
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet weights file does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        k2 = k
        for a, b in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
            if k.startswith(a):
                k2 = b + k[len(a):]
        mapped[k2] = v
    missing, unexpected = model.encoder.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ModelFileError(path, f"not a torchvision {model.cfg.arch} state dict "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    log.info("encoder initialised from ImageNet weights %s", path)
    return str(path)
