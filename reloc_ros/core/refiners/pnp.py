"""Local features + PnP-RANSAC against the retrieved frames' depth, as a refiner unit (``pnp``).

The algorithm is :class:`reloc_ros.core.pnp.PnPRefiner`; this unit gives it to the localizer:
the database must hold keypoints (``python -m reloc_ros.mapping.database build --keypoints``);
the intrinsics are wanted at the keypoints' image size; the signals of its poses are
:data:`SIGNALS`.
"""

from __future__ import annotations

import math

import numpy as np

from reloc_ros.core.pnp import PnPRefiner
from reloc_ros.core.refiners import REFINERS, Refinement, Refiner, RefinerSetup, gn_sigma

__all__ = ["SiftPnP", "SIGNALS", "signals"]

#: Calibration signals of a PnP pose: inlier count and share, RMS reprojection error,
#: Gauss-Newton σ of position and rotation, and the top-1 retrieval score.
SIGNALS = ("log_inliers", "inlier_share", "log_reproj_rms", "log_gn_sigma_t", "log_gn_sigma_r", "top1_score")


def signals(inliers: int, matches: int, reproj_rms_px: float, gn_cov_66: np.ndarray,
            top1_score: float) -> np.ndarray:
    """The signal vector (:data:`SIGNALS`) of a pose refined by PnP.

    Args:
        inliers, matches: RANSAC inliers and the matches they came from.
        reproj_rms_px: the inliers' RMS reprojection error (px).
        gn_cov_66: the Gauss-Newton covariance of the pose.
        top1_score: the best retrieval similarity.
    """
    st, sr = gn_sigma(gn_cov_66, slice(0, 3)), gn_sigma(gn_cov_66, slice(3, 6))
    return np.array([math.log(max(1, inliers)), inliers / max(1, matches), math.log(1e-3 + reproj_rms_px),
                     math.log(1e-6 + st), math.log(1e-7 + sr), float(top1_score)])


@REFINERS.register("pnp")
class SiftPnP(Refiner):
    """SIFT matches to the top retrieved frames, lifted with their depth, then PnP-RANSAC."""

    signal_names = SIGNALS
    needs = frozenset({"keypoints"})
    row = "sift+pnp"

    def __init__(self, pnp: PnPRefiner):
        self.pnp = pnp
        if pnp.cfg.matcher != "sift":  # its report row names the matcher
            self.row = f"{pnp.cfg.matcher}+pnp"

    @classmethod
    def build(cls, setup: RefinerSetup) -> "SiftPnP":
        return cls(PnPRefiner(setup.db.keypoints, setup.poses_N44, setup.pnp))

    def image_size(self) -> tuple[int, int]:
        return tuple(self.pnp.cfg.image_size)

    def signal_settings(self) -> dict:
        return {**super().signal_settings(), "pnp": self.pnp.cfg.as_dict()}

    def run(self, fused, image: np.ndarray, K_33: np.ndarray) -> Refinement:
        p = self.pnp.refine(image, K_33, fused.hypotheses.db_index)
        info = {"ok": p.ok, "inliers": p.inliers, "matches": p.matches, "reproj_rms_px": p.reproj_rms_px,
                "ms": p.ms, "frames": p.frames}
        if not p.ok:
            return Refinement(False, info={**info, "partial": p.partial}, reason=p.reason)
        x = signals(p.inliers, p.matches, p.reproj_rms_px, p.covariance, float(fused.hypotheses.scores[0]))
        return Refinement(True, p.pose, p.covariance, x, p.inliers / max(1, p.matches), info)
