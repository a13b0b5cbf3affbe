"""Refiners: what improves the fused pose against the database, each a registered unit.

A refiner is one module that defines a :class:`Refiner` subclass and registers it::

    @REFINERS.register("pnp")
    class SiftPnP(Refiner):
        signal_names = (...)          # its calibration signals
        needs = frozenset({"keypoints"})   # what the database must hold
        row = "sift+pnp"              # its row in evaluation reports

        @classmethod
        def build(cls, setup: RefinerSetup) -> "SiftPnP": ...
        def image_size(self) -> tuple[int, int]: ...   # (w, h) its intrinsics are wanted at
        def run(self, fused, image, K_33) -> Refinement: ...

The localizer builds the configured one (``LocalizerConfig.refiner``) with
``REFINERS.get(name).build(setup)``, runs it after fusion and calibrates its poses with the
unit's own signals; the calibration, the evaluator and the node read the same unit. None of
them branches on a refiner's name. ``"none"`` (:data:`NO_REFINER`) means no refinement.

Built-in units (imported when first asked for, so a process pays only for the one it uses):

    pnp      local features + PnP-RANSAC against the database depth (refiners/pnp.py)
    lm       feature-metric Levenberg-Marquardt from the fused pose (refiners/lm.py)
    dro      DRO, the learned recurrent optimizer                (refiners/dro.py)
    pnp+lm   PnP, then LM where PnP fails                        (refiners/chain.py)
    pnp+dro  PnP, then DRO where PnP fails                       (refiners/chain.py)

More come from plugins (:func:`reloc_ros.core.registry.load_plugins`; ``docs/extending.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from reloc_ros.core.registry import Registry

if TYPE_CHECKING:  # type names only: the localizer imports this package
    import torch

    from reloc_ros.core.database import FrameDatabase
    from reloc_ros.core.localizer import LocalizationResult
    from reloc_ros.core.model import ModelInfo, RelPoseNet
    from reloc_ros.core.pnp import PnPConfig

__all__ = ["REFINERS", "NO_REFINER", "Refiner", "RefinerSetup", "Refinement", "refiner_names", "gn_sigma"]

#: The refiner setting that means: no refinement, publish the fused pose.
NO_REFINER = "none"


#: The refiners by name.
REFINERS = Registry("refiner", builtin={
    "pnp": "reloc_ros.core.refiners.pnp", "lm": "reloc_ros.core.refiners.lm", "dro": "reloc_ros.core.refiners.dro",
    "pnp+lm": "reloc_ros.core.refiners.chain", "pnp+dro": "reloc_ros.core.refiners.chain"})


def refiner_names() -> tuple[str, ...]:
    """Every valid ``refiner`` setting: ``"none"`` and the registered names."""
    return (NO_REFINER, *REFINERS.names())


@dataclass
class RefinerSetup:
    """What a refiner is built from (the localizer's parts).

    Attributes:
        model: the relative-pose network (its encoder gives dense query features).
        model_info: the model file's info (fingerprint), or None for an in-memory model.
        db: the frame database.
        poses_N44: the database poses as numpy (camera-to-world).
        device: where tensors live.
        iterations: the configured iteration count (None: the unit's default).
        pnp: PnP settings (None: those the database keypoints were made with).
        db_path: the database's file (for messages), None for an in-memory database.
        files: extra files by parameter name (e.g. ``{"dro_path": Path}``); a unit that
            needs one says so when it is missing.
    """

    model: "RelPoseNet"
    db: "FrameDatabase"
    poses_N44: np.ndarray
    device: "torch.device"
    model_info: "ModelInfo | None" = None
    iterations: int | None = None
    pnp: "PnPConfig | None" = None
    db_path: Path | None = None
    files: dict = field(default_factory=dict)

    def file(self, key: str) -> Path | None:
        """The file given for ``key`` (None when not given or empty)."""
        v = self.files.get(key)
        return Path(v) if v else None


@dataclass
class Refinement:
    """One refiner run.

    Attributes:
        ok: a pose was found (else ``reason`` says why and the fused pose is not used).
        pose: (4, 4) the refined camera-to-world pose.
        covariance: (6, 6) its uncalibrated covariance (how well the data pin the pose, not
            whether it is right; the calibration replaces it).
        signals: its calibration signals (:attr:`Refiner.signal_names`).
        confidence: its uncalibrated confidence in [0, 1].
        info: the unit's numbers for reports and the node's log (``ok`` included).
        reason: why it failed ('' when ok).
    """

    ok: bool
    pose: np.ndarray | None = None
    covariance: np.ndarray | None = None
    signals: np.ndarray | None = None
    confidence: float = 0.0
    info: dict = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def failure(cls, reason: str, info: dict | None = None) -> "Refinement":
        return cls(False, info={"ok": False, **(info or {})}, reason=reason)


class Refiner:
    """Base class of a refinement unit (see the module docstring)."""

    #: names of its calibration signals, in the order :meth:`run` gives them
    signal_names: ClassVar[tuple[str, ...]] = ()
    #: the database parts it reads: "keypoints" (``--keypoints``), "dense" (``--dense``)
    needs: ClassVar[frozenset] = frozenset()
    #: its row label in evaluation reports
    row: ClassVar[str] = ""

    @classmethod
    def build(cls, setup: RefinerSetup) -> "Refiner":
        """The unit, ready to run; a ValueError (one line) when the setup cannot serve it."""
        raise NotImplementedError

    def image_size(self) -> tuple[int, int]:
        """(width, height) at which :meth:`run` wants the query's intrinsics."""
        raise NotImplementedError

    def query_levels(self) -> tuple[str, ...]:
        """Encoder stages whose dense query features it reads (computed in the query's one
        encoder pass and handed over in ``fused.hypotheses.levels``); () for none."""
        return ()

    def signal_settings(self) -> dict:
        """The unit's settings that change its signals (a calibration is bound to them and
        refused when they differ): by default its image size; units add their own
        (iterations, matcher and keypoint settings, weights)."""
        return {"image_size": [int(v) for v in self.image_size()]}

    def set_iterations(self, k: int) -> None:
        """Iterate ``k`` times per block from now on (iterative units; the sweep of the
        refinement benchmark)."""
        raise NotImplementedError(f"{type(self).__name__} is not iterative")

    def iteration_blocks(self) -> int:
        """How many blocks the iterations are counted per (pyramid levels, stages)."""
        return 1

    def run(self, fused: "LocalizationResult", image: np.ndarray, K_33: np.ndarray) -> Refinement:
        """Refine one query.

        Args:
            fused: the fusion's result (its hypotheses' retrieved rows, its pose when ok).
            image: the query's RGB uint8 (H, W, 3) image.
            K_33: the query camera's intrinsics at :meth:`image_size`.
        """
        raise NotImplementedError


def gn_sigma(cov_66: np.ndarray, block: slice) -> float:
    """RMS standard deviation over the axes of one 3x3 block of a covariance (NaN if not finite)."""
    c = np.asarray(cov_66, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        return float("nan")
    return float(np.sqrt(max(float(np.trace(c[block, block])) / 3, 0.0)))
