"""Import torchvision, also beside a CPU-only torch that its wheel was not built for.

PyPI's torchvision 0.28.0 wheel is built against a CUDA torch. Beside the CPU wheel of
torch 2.13.0 its C++ extension does not load, and the import then fails in
``torchvision/_meta_registrations.py`` with ``operator torchvision::nms does not exist``
(then ``qnms``), because it registers fake kernels for operators the extension would have
defined. Defining the two operator *schemas* (no kernels) first lets the import finish.
The models and transforms are pure Python and work; only the C++ ops (``nms``,
``io.read_image``) stay unavailable, and reloc_ros uses neither (images load with Pillow).

With a matching torch/torchvision pair (a user's CUDA build, a system ROS install) the
extension loads and this module changes nothing.
"""

from __future__ import annotations

import sys

import torch

_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def import_torchvision():
    """Return the ``torchvision`` module, defining missing op schemas when needed."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "models"):
        return sys.modules["torchvision"]
    try:
        import torchvision  # lazy: this function is the import: it may fail and is retried below

        return torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e) or "does not exist" not in str(e):
            raise
    # Drop the half-imported package, define the schemas, import again.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    for op, schema in _SCHEMAS.items():
        ns, name = op.split("::")
        if not _schema_exists(ns, name):
            torch.library.define(op, schema)
    import torchvision  # lazy: the retry, now that the op schemas exist

    return torchvision


def _schema_exists(ns: str, name: str) -> bool:
    try:
        getattr(getattr(torch.ops, ns), name)
        return True
    except (AttributeError, RuntimeError):
        return False
