"""DRO, the learned recurrent optimizer, as a refiner unit (``dro``).

The network is :class:`reloc_ros.core.dro.DRO` (trained by ``python -m reloc_train.dro`` on
the model's features; its file is bound to the model's fingerprint). It refines from the
fused pose on the same dense grids as feature-metric LM (``database build --dense``); the
covariance is the Gauss-Newton covariance of its own adapted-feature cost at the solution.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from reloc_ros.core.database import DatabaseError
from reloc_ros.core.dro import DRO, load_dro
from reloc_ros.core.featuremetric import FeatureMetricLM, LMConfig
from reloc_ros.core.refiners import REFINERS, Refinement, Refiner, RefinerSetup, gn_sigma
from reloc_ros.core.refiners.lm import query_intrinsics

__all__ = ["DRORefiner", "SIGNALS", "signals", "misfit"]

#: Calibration signals of a DRO pose: its final cost (mean squared residual norm of the
#: adapted features), the share of valid pixels with a low residual, the valid pixels, how far
#: the pose moved (m), the Gauss-Newton position σ (m) and the top-1 retrieval score.
SIGNALS = ("log_final_cost", "low_share", "log_points", "log_moved_m", "log_gn_sigma_t", "top1_score")


def signals(final_cost: float, low_share: float, points: int, moved_m: float, gn_cov_66: np.ndarray,
            top1_score: float) -> np.ndarray:
    """The signal vector (:data:`SIGNALS`) of a pose refined by DRO (arguments as named there)."""
    st = gn_sigma(gn_cov_66, slice(0, 3))
    return np.array([math.log(1e-9 + final_cost), float(low_share), math.log(max(1, points)),
                     math.log(1e-3 + moved_m), math.log(1e-6 + st), float(top1_score)])


def misfit(dro: DRO, dense) -> str:
    """Why a DRO cannot read a database's dense grids ('' when it can)."""
    chans = tuple(int(f.shape[-1]) for f in dense.feat)
    if tuple(dro.cfg.levels) == tuple(dense.config.levels) and tuple(dro.cfg.in_channels) == chans:
        return ""
    return (f"dense grids of levels {list(dense.config.levels)} with {list(chans)} channels do not fit a DRO "
            f"that reads levels {list(dro.cfg.levels)} with {list(dro.cfg.in_channels)} channels")


@REFINERS.register("dro")
class DRORefiner(Refiner):
    """The learned recurrent optimizer from the fused pose (needs ``files['dro_path']``, or a
    DRO given in memory as ``files['dro']``)."""

    signal_names = SIGNALS
    needs = frozenset({"dense"})
    row = "fused+dro"

    def __init__(self, dro: DRO, setup: RefinerSetup):
        self.dro = dro.to(setup.device).eval()
        self.device, self.dense, self.poses = setup.device, setup.db.dense, setup.poses_N44
        self.iterations = setup.iterations
        self.gn = FeatureMetricLM(LMConfig(huber=self.dense.config.huber))  # its covariance at the solution
        h, w = setup.model.cfg.input_size
        self.size = (int(w), int(h))

    @classmethod
    def build(cls, setup: RefinerSetup) -> "DRORefiner":
        dro = setup.files.get("dro")
        if dro is None:
            path = setup.file("dro_path")
            if path is None:
                raise ValueError("refiner 'dro' needs a DRO file (dro_path; python -m reloc_train.dro)")
            dro, _ = load_dro(path, setup.model_info, setup.device)
        problem = misfit(dro, setup.db.dense)
        if problem and setup.db_path is not None:
            raise DatabaseError(setup.db_path, f"{problem} (DRO file {setup.file('dro_path')})")
        if problem:
            raise ValueError(problem)
        return cls(dro, setup)

    def image_size(self) -> tuple[int, int]:
        return self.size

    def query_levels(self) -> tuple[str, ...]:
        return tuple(self.dense.config.levels)

    def set_iterations(self, k: int) -> None:
        self.iterations = int(k)

    def signal_settings(self) -> dict:
        if not hasattr(self, "_weights"):  # the DRO's own weights, hashed once
            h = hashlib.sha256()
            for k, v in sorted(self.dro.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._weights = h.hexdigest()[:16]
        return {**super().signal_settings(), "iterations": self.iterations, "weights": self._weights,
                "dense": self.dense.config.as_dict()}

    def iteration_blocks(self) -> int:
        return len(self.dro.cfg.stages)

    @torch.no_grad()
    def run(self, fused, image: np.ndarray, K_33: np.ndarray) -> Refinement:
        if fused.pose is None:
            return Refinement.failure("no fused pose to start from")
        dro, dense, dev = self.dro, self.dense, self.device
        maps = fused.hypotheses.levels
        intr = query_intrinsics(K_33, self.size)
        rows = np.asarray(fused.hypotheses.db_index[: dro.cfg.top_m], dtype=np.int64)
        q, Ks, xyz, feat = [], [], [], []
        for li, lvl in enumerate(dense.config.levels):
            Fq = torch.nn.functional.normalize(torch.as_tensor(maps[lvl], device=dev).float()[None], dim=1)
            q.append(dro.adapt(Fq, li))
            Ks.append(torch.as_tensor(intr.scaled(Fq.shape[3], Fq.shape[2]).K, device=dev).float()[None])
            x, f = dense.grid(li, rows)
            xyz.append(x.to(dev)[None])
            feat.append(dro.adapt_grid(f.to(dev)[None], li))
        T_db = torch.as_tensor(self.poses[rows], device=dev).float()[None]
        T0 = torch.as_tensor(fused.pose, device=dev).float()[None]
        poses, out = dro(T0, q, Ks, xyz, feat, T_db, iterations=self.iterations)
        T = poses[-1][0].double().cpu().numpy()
        valid = int(out["valid"][0])
        cov = self._covariance(T, q, Ks, xyz, feat, rows)
        moved = float(np.linalg.norm(T[:3, 3] - fused.pose[:3, 3]))
        info = {"ok": bool(np.all(np.isfinite(T)) and np.all(np.isfinite(cov)) and valid >= self.gn.cfg.min_points),
                "iterations": len(poses) - 1, "points": valid, "final_cost": float(out["cost"][0]),
                "low_share": float(out["low_share"][0]), "moved_m": moved}
        if not info["ok"]:
            return Refinement(False, info=info, reason=(f"too few points with valid depth in view ({valid})"
                                                        if valid < self.gn.cfg.min_points else "a non-finite solution"))
        x = signals(info["final_cost"], info["low_share"], valid, moved, cov, float(fused.hypotheses.scores[0]))
        return Refinement(True, T, cov, x, fused.confidence, info)

    def _covariance(self, T: np.ndarray, q, Ks, xyz, feat, rows: np.ndarray) -> np.ndarray:
        """The Gauss-Newton covariance of the adapted-feature cost at ``T``, at the finest
        stage's level (infinite when no point has depth)."""
        li = self.dro.cfg.stages[-1]
        Fq = q[li][0].double().cpu().numpy()
        x_m = xyz[li][0].reshape(len(rows), -1, 3).double().cpu().numpy()
        f_m = feat[li][0].reshape(len(rows), self.dro.cfg.dim, -1).transpose(1, 2).double().cpu().numpy()
        ok_m = x_m[..., 2] > 0
        pts = np.concatenate([x_m[j][ok_m[j]] @ self.poses[i][:3, :3].T + self.poses[i][:3, 3]
                              for j, i in enumerate(rows)])
        ref = np.concatenate([f_m[j][ok_m[j]] for j in range(len(rows))])
        if not len(pts):
            return np.full((6, 6), np.inf)
        return self.gn.covariance(T, Fq, Ks[li][0].double().cpu().numpy(), pts, ref)
