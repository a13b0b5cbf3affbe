"""A refiner that lives outside the package: the plugin used by test/test_plugins.py.

``anchor`` moves the fused pose halfway towards the top-1 retrieved frame's position (keeping
the fused rotation). It is not meant to be accurate; it is meant to be visibly different
from the fused pose, so that a test can tell that this unit ran in the localizer, the
calibration, the evaluator and the node. Made known with ``--plugin anchor_refiner``, the
node's ``plugins`` parameter, or ``RELOC_ROS_PLUGINS`` (with ``test/plugins`` on PYTHONPATH).
"""

from __future__ import annotations

import numpy as np

from reloc_ros.core.refiners import REFINERS, Refinement, Refiner, RefinerSetup

SIGNALS = ("top1_score", "anchor_gap_m")


@REFINERS.register("anchor")
class AnchorRefiner(Refiner):
    """Halfway from the fused position to the top-1 database frame's position."""

    signal_names = SIGNALS
    needs = frozenset()
    row = "fused+anchor"

    def __init__(self, poses_N44: np.ndarray, size_wh: tuple[int, int]):
        self.poses, self.size = poses_N44, size_wh

    @classmethod
    def build(cls, setup: RefinerSetup) -> "AnchorRefiner":
        h, w = setup.model.cfg.input_size
        return cls(setup.poses_N44, (int(w), int(h)))

    def image_size(self) -> tuple[int, int]:
        return self.size

    def run(self, fused, image: np.ndarray, K_33: np.ndarray) -> Refinement:
        if fused.pose is None:
            return Refinement.failure("no fused pose to start from")
        anchor = self.poses[int(fused.hypotheses.db_index[0])]
        T = fused.pose.copy()
        T[:3, 3] = 0.5 * (fused.pose[:3, 3] + anchor[:3, 3])
        gap = float(np.linalg.norm(fused.pose[:3, 3] - anchor[:3, 3]))
        cov = np.diag([0.01 + gap ** 2] * 3 + [0.01] * 3)
        x = np.array([float(fused.hypotheses.scores[0]), gap])
        return Refinement(True, T, cov, x, 0.5, {"ok": True, "gap_m": gap})
