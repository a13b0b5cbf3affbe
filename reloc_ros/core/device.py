"""The one place that turns a device name into a ``torch.device`` (node, tools and training)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device, local_rank: int | None = None) -> torch.device:
    """A ``torch.device`` from ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.

    Args:
        name: ``'auto'`` picks CUDA when available, else the CPU. A ``torch.device`` is
            returned as it is.
        local_rank: under torchrun, the GPU of this process for ``'auto'`` and a bare
            ``'cuda'`` (an explicit ``'cuda:N'`` is kept).

    Raises:
        RuntimeError: a CUDA device was asked for and CUDA is not available, or its index
            does not exist; the message names the device that was asked for.
        ValueError: any other name.
    """
    if isinstance(name, torch.device):
        return name
    text = str(name).strip()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise ValueError(f"unknown device {name!r} (auto | cpu | cuda | cuda:N)") from None
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {text!r} requested but CUDA is not available")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {text!r} requested but only {torch.cuda.device_count()} "
                               "CUDA device(s) exist")
        return dev
    raise ValueError(f"unknown device {name!r} (auto | cpu | cuda | cuda:N)")
