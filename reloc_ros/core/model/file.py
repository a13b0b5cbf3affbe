"""The self-describing model file (``model.pt``) that training writes and the node loads.

A model file carries everything needed to rebuild the network (architecture, input size,
normalisation), plus what produced it (MTL method, data, training config, code version)
and a fingerprint of the weights. :func:`load_model` needs nothing else, not even the
training code. A missing, empty, truncated, corrupt or foreign file raises
:class:`ModelFileError`, whose one-line message names the file and the problem.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from reloc_ros import __version__
from reloc_ros.core.files import FileProblem, atomic_save, load_container, tensor_fingerprint
from reloc_ros.core.model.network import ModelConfig, RelPoseNet

__all__ = ["MODEL_FORMAT", "MODEL_FORMAT_VERSION", "ModelFileError", "ModelInfo", "code_version",
           "save_model", "read_model_file", "load_model", "generic_model_path"]

MODEL_FORMAT = "reloc_ros.model"  # the format id of every model file (unchanged by the re-layout)
MODEL_FORMAT_VERSION = 1


class ModelFileError(FileProblem):
    """A model file is missing, corrupt, foreign or inconsistent. The message names it."""


@dataclass
class ModelInfo:
    """What a model file says about itself."""

    path: Path
    config: ModelConfig
    meta: dict = field(default_factory=dict)
    fingerprint: str = ""


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def save_model(path: Path | str, model: RelPoseNet, meta: dict | None = None,
               dtype: torch.dtype | None = None) -> str:
    """Write a self-describing model file; returns its fingerprint.

    Args:
        path: destination (written atomically).
        model: the trained network.
        meta: provenance: MTL method, training data, training config, metrics, ...
        dtype: store floating-point weights in this type (e.g. ``torch.float16`` for the
            shipped model, half the size); :func:`load_model` casts them back to the
            network's. None: as they are.
    """
    state = {k: v.detach().cpu().to(dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    fp = tensor_fingerprint(state)
    cfg = asdict(model.cfg)
    for k in ("input_size", "mean", "std", "tasks"):
        cfg[k] = list(cfg[k])
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": cfg,
        "meta": {"code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 **(meta or {})},
        "fingerprint": fp,
        "state_dict": state,
    }
    atomic_save(payload, path)
    return fp


def read_model_file(path: Path | str) -> dict:
    """Load and check a model file's container; raises :class:`ModelFileError`."""
    path = Path(path)
    payload = load_container(path, ModelFileError, "model file", MODEL_FORMAT, MODEL_FORMAT_VERSION,
                             rebuild="python -m reloc_train.train")
    for key in ("config", "state_dict", "fingerprint"):
        if key not in payload:
            raise ModelFileError(path, f"model file lacks its {key!r} entry")
    return payload


def load_model(path: Path | str, device: str | torch.device = "cpu") -> tuple[RelPoseNet, ModelInfo]:
    """Rebuild the network from a model file alone; returns (model in eval mode, info).

    Checks the format, rebuilds the architecture from the stored config, verifies the
    weights' fingerprint and that they fit the architecture exactly.
    """
    path = Path(path)
    payload = read_model_file(path)
    try:
        cfg = ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(path, f"invalid model config: {e}") from None
    state = payload["state_dict"]
    fp = tensor_fingerprint(state)
    if fp != payload["fingerprint"]:
        raise ModelFileError(path, "weights do not match the file's fingerprint (file corrupted or edited)")
    model = RelPoseNet(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFileError(path, f"weights do not fit the {cfg.arch} architecture: {str(e)[:300]}") from None
    model.to(device).eval()
    return model, ModelInfo(path=path, config=cfg, meta=payload.get("meta", {}), fingerprint=fp)


def generic_model_path() -> Path:
    """The shipped generic model (``python -m reloc_train.ship``): ``models/generic/model.pt``
    of a source checkout, else the installed ``share/reloc_ros/models/generic/model.pt``."""
    src = Path(__file__).resolve().parents[3] / "models" / "generic" / "model.pt"
    if src.is_file():
        return src
    return Path(sys.prefix) / "share" / "reloc_ros" / "models" / "generic" / "model.pt"
