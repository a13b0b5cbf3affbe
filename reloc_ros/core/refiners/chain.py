"""PnP first, then a dense refiner where PnP fails, as refiner units (``pnp+lm``, ``pnp+dro``).

Local features and PnP give millimetres where they find enough inliers, and nothing where they
do not (texture-poor views, motion blur, a wrong retrieved frame). Feature-metric LM and DRO
need no keypoints: they align the query's dense features with the map's from a start pose.
The chain runs PnP (:mod:`reloc_ros.core.refiners.pnp`); when PnP fails, it runs the second
unit from PnP's best partial solution (RANSAC's pose with too few inliers) when there is one,
else from the fused pose. The result says which ran (``info['stage']``: ``pnp``, ``lm`` or
``dro``; ``info['start']``: ``partial`` or ``fused``).

Its calibration signals are PnP's, the second unit's, and whether PnP solved it (the other
unit's signals are zeros), so one calibration weighs both kinds of pose.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.refiners import REFINERS, Refinement, Refiner, RefinerSetup
from reloc_ros.core.refiners.dro import SIGNALS as DRO_SIGNALS
from reloc_ros.core.refiners.lm import SIGNALS as LM_SIGNALS
from reloc_ros.core.refiners.pnp import SIGNALS as PNP_SIGNALS


def _signals(second: str, names) -> tuple[str, ...]:
    return ("pnp_solved", *(f"pnp_{s}" for s in PNP_SIGNALS), *(f"{second}_{s}" for s in names))

__all__ = ["PnPThenDense", "PnPThenLM", "PnPThenDRO"]


class PnPThenDense(Refiner):
    """PnP, then ``second`` where PnP fails (see the module docstring)."""

    second = ""

    def __init__(self, pnp: Refiner, dense: Refiner):
        self.pnp, self.dense = pnp, dense

    @classmethod
    def build(cls, setup: RefinerSetup) -> "PnPThenDense":
        return cls(REFINERS.get("pnp").build(setup), REFINERS.get(cls.second).build(setup))

    def image_size(self) -> tuple[int, int]:
        return self.pnp.image_size()

    def query_levels(self) -> tuple[str, ...]:
        return self.dense.query_levels()

    def set_iterations(self, k: int) -> None:
        self.dense.set_iterations(k)

    def signal_settings(self) -> dict:
        return {"pnp": self.pnp.signal_settings(), self.second: self.dense.signal_settings()}

    def iteration_blocks(self) -> int:
        return self.dense.iteration_blocks()

    def _dense_K(self, K_33: np.ndarray) -> np.ndarray:
        w, h = self.pnp.image_size()
        intr = Intrinsics(K_33[0, 0], K_33[1, 1], K_33[0, 2], K_33[1, 2], int(w), int(h))
        return intr.scaled(*self.dense.image_size()).K

    def run(self, fused, image: np.ndarray, K_33: np.ndarray) -> Refinement:
        n1, n2 = len(self.pnp.signal_names), len(self.dense.signal_names)
        p = self.pnp.run(fused, image, K_33)
        if p.ok:
            x = np.concatenate([[1.0], p.signals, np.zeros(n2)])
            return Refinement(True, p.pose, p.covariance, x, p.confidence, {**p.info, "stage": "pnp"})
        partial = p.info.get("partial")
        start = "partial" if partial is not None else "fused"
        if partial is None and fused.pose is None:
            return Refinement.failure(f"PnP: {p.reason}; no pose to start {self.second} from", p.info)
        base = fused if partial is None else replace(fused, pose=np.asarray(partial))
        d = self.dense.run(base, image, self._dense_K(K_33))
        info = {**{f"pnp_{k}": v for k, v in p.info.items() if k != "partial"}, **d.info, "stage": self.second,
                "start": start, "ok": d.ok}
        if not d.ok:
            return Refinement(False, info=info, reason=f"PnP: {p.reason}; {self.second}: {d.reason}")
        x = np.concatenate([[0.0], np.zeros(n1), d.signals])
        return Refinement(True, d.pose, d.covariance, x, d.confidence, info)


@REFINERS.register("pnp+lm")
class PnPThenLM(PnPThenDense):
    """PnP, then feature-metric LM where PnP fails."""

    second = "lm"
    signal_names = _signals("lm", LM_SIGNALS)
    needs = frozenset({"keypoints", "dense"})
    row = "pnp+lm"


@REFINERS.register("pnp+dro")
class PnPThenDRO(PnPThenDense):
    """PnP, then DRO where PnP fails (needs the DRO file, as ``dro``)."""

    second = "dro"
    signal_names = _signals("dro", DRO_SIGNALS)
    needs = frozenset({"keypoints", "dense"})
    row = "pnp+dro"
