"""Publish checks: independent evidence a refined pose must agree with before it is used.

A refiner that matches a repeated texture (the same poster on two walls, identical chairs)
finds many consistent inliers at the wrong place, and its own signals say it is sure. A
publish check compares the refined pose with evidence the refiner did not use, and stops a
pose that disagrees (``ok`` False, the reason names the check). Each check is a registered
unit, chosen by name (``LocalizerConfig.checks``, the node's ``publish_checks``)::

    @CHECKS.register("my_check")
    class MyCheck(PublishCheck):
        def __call__(self, fused, refined) -> tuple[bool, str, float]: ...

Built-in:

``regression``
    the fused regression (the k relative poses regressed from the retrieved frames, fused)
    must lie within ``max_t_m`` and ``max_r_deg`` of the refined pose. The regression reads
    whole images through the network, not local features, so a repeated patch does not pull
    it; its error in unseen rooms is about 0.5 m / 12° at the median, so the gate is wide and
    catches jumps of a metre and more. A query without a fused pose fails it.
``retrieved``
    the refined pose must lie within ``max_t_m`` and ``max_r_deg`` of one of the retrieved
    frames (the place retrieval says the query is).

Their gates are chosen on two scenes of the repeated-structure family
(``python -m reloc_train.experiments.trust repeated``, ``docs/trust.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from reloc_ros.core.geometry import pose_errors
from reloc_ros.core.registry import Registry

if TYPE_CHECKING:  # type names only
    from reloc_ros.core.localizer import LocalizationResult
    from reloc_ros.core.refiners import Refinement

__all__ = ["CHECKS", "PublishCheck", "RegressionAgreement", "RetrievedAgreement"]

#: The publish checks by name.
CHECKS = Registry("publish check")


class PublishCheck:
    """Base class of a publish check: ``check(fused, refined) -> (passed, why, value)``,
    ``value`` a number for reports (NaN when it does not apply)."""

    max_t_m: ClassVar[float] = 1.0
    max_r_deg: ClassVar[float] = 30.0

    def __call__(self, fused: "LocalizationResult", refined: "Refinement") -> tuple[bool, str, float]:
        raise NotImplementedError


@CHECKS.register("regression")
class RegressionAgreement(PublishCheck):
    """The refined pose agrees with the fused regression (see the module docstring)."""

    max_t_m = 0.75
    max_r_deg = 30.0

    def __call__(self, fused, refined):
        if fused.pose is None or not np.all(np.isfinite(fused.pose)):
            return False, "no fused regression to compare with", float("nan")
        t, r = (float(v) for v in pose_errors(refined.pose, fused.pose))
        if t > self.max_t_m or r > self.max_r_deg:
            return False, (f"the refined pose is {t:.2f} m / {r:.0f}° from the fused regression (gate "
                           f"{self.max_t_m:.2f} m / {self.max_r_deg:.0f}°)"), t
        return True, "", t


@CHECKS.register("retrieved")
class RetrievedAgreement(PublishCheck):
    """The refined pose lies near one of the retrieved frames (see the module docstring)."""

    max_t_m = 1.0
    max_r_deg = 45.0

    def __call__(self, fused, refined):
        T = np.asarray(fused.hypotheses.T_db)
        te, re = pose_errors(T, np.broadcast_to(refined.pose, T.shape))
        ok = (te <= self.max_t_m) & (re <= self.max_r_deg)
        d = float(np.min(te))
        if not ok.any():
            return False, (f"the refined pose is {d:.2f} m from the nearest retrieved frame (gate "
                           f"{self.max_t_m:.2f} m / {self.max_r_deg:.0f}°)"), d
        return True, "", d
