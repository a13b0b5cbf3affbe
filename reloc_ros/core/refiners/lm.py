"""Feature-metric Levenberg-Marquardt from the fused pose, as a refiner unit (``lm``).

The algorithm is :class:`reloc_ros.core.featuremetric.FeatureMetricLM`; this unit aligns the
query's dense encoder features (from its one encoder pass) with the retrieved frames' dense
points (``python -m reloc_ros.mapping.database build --dense``), coarse to fine, starting at
the fused pose. Its intrinsics are wanted at the model's input size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.featuremetric import FeatureMetricLM, LMConfig, normalize_channels
from reloc_ros.core.refiners import REFINERS, Refinement, Refiner, RefinerSetup, gn_sigma

__all__ = ["FeatureMetricRefiner", "SIGNALS", "signals"]

#: Calibration signals of an LM pose: the final cost, its ratio to the first, the visible
#: points, how far the pose moved (m), the Gauss-Newton position σ (m), the top-1 score.
SIGNALS = ("log_final_cost", "cost_ratio", "log_points", "log_moved_m", "log_gn_sigma_t", "top1_score")


def signals(costs: list[float], points: int, moved_m: float, gn_cov_66: np.ndarray,
            top1_score: float) -> np.ndarray:
    """The signal vector (:data:`SIGNALS`) of a pose refined by feature-metric LM.

    Args:
        costs: the cost after each iteration (first and last are read).
        points: points visible at the solution.
        moved_m: distance between the fused and the refined position (m).
        gn_cov_66: the Gauss-Newton covariance at the solution.
        top1_score: the best retrieval similarity.
    """
    st = gn_sigma(gn_cov_66, slice(0, 3))
    first, last = (float(costs[0]), float(costs[-1])) if costs else (float("nan"), float("nan"))
    return np.array([math.log(1e-9 + last), last / max(first, 1e-12), math.log(max(1, points)),
                     math.log(1e-3 + moved_m), math.log(1e-6 + st), float(top1_score)])


def query_intrinsics(K_33: np.ndarray, size_wh: tuple[int, int]) -> Intrinsics:
    """The query camera at the model's input size, from its 3x3 matrix."""
    return Intrinsics(fx=K_33[0, 0], fy=K_33[1, 1], cx=K_33[0, 2], cy=K_33[1, 2], width=size_wh[0], height=size_wh[1])


@REFINERS.register("lm")
class FeatureMetricRefiner(Refiner):
    """Feature-metric LM against the dense points of the top retrieved frames."""

    signal_names = SIGNALS
    needs = frozenset({"dense"})
    row = "fused+lm"

    def __init__(self, lm: FeatureMetricLM, setup: RefinerSetup):
        self.lm, self.dense, self.poses = lm, setup.db.dense, setup.poses_N44
        h, w = setup.model.cfg.input_size
        self.size = (int(w), int(h))

    @classmethod
    def build(cls, setup: RefinerSetup) -> "FeatureMetricRefiner":
        d = setup.db.dense.config
        it = d.iterations if setup.iterations is None else setup.iterations
        return cls(FeatureMetricLM(LMConfig(iterations=it, huber=d.huber)), setup)

    def image_size(self) -> tuple[int, int]:
        return self.size

    def query_levels(self) -> tuple[str, ...]:
        return tuple(self.dense.config.levels)

    def set_iterations(self, k: int) -> None:
        self.lm = FeatureMetricLM(replace(self.lm.cfg, iterations=int(k)))

    def signal_settings(self) -> dict:
        return {**super().signal_settings(), "lm": asdict(self.lm.cfg), "dense": self.dense.config.as_dict()}

    def iteration_blocks(self) -> int:
        return len(self.dense.config.levels)

    def run(self, fused, image: np.ndarray, K_33: np.ndarray) -> Refinement:
        if fused.pose is None:
            return Refinement.failure("no fused pose to start from")
        cfg, maps = self.dense.config, fused.hypotheses.levels
        intr = query_intrinsics(K_33, self.size)
        levels, Ks, refs = [], [], []
        rows = fused.hypotheses.db_index[: cfg.top_m]
        for li, lvl in enumerate(cfg.levels):
            F = normalize_channels(maps[lvl])
            levels.append(F)
            Ks.append(intr.scaled(F.shape[2], F.shape[1]).K)
            refs.append([(self.poses[int(i)], *self.dense.frame(li, int(i))) for i in rows])
        T, out = self.lm.refine(fused.pose, levels, Ks, refs)
        cov_gn = out["covariance"]
        moved = float(np.linalg.norm(T[:3, 3] - fused.pose[:3, 3]))
        info = {"ok": bool(np.all(np.isfinite(cov_gn)) and out["points"] >= self.lm.cfg.min_points),
                "iterations": out["iterations"], "points": out["points"],
                "final_cost": out["cost"][-1] if out["cost"] else float("nan"), "moved_m": moved}
        if not info["ok"]:
            return Refinement(False, info=info, reason="too few visible points")
        x = signals(out["cost"], out["points"], moved, cov_gn, float(fused.hypotheses.scores[0]))
        return Refinement(True, T, cov_gn, x, fused.confidence, info)
