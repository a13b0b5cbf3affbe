"""What an evaluation measures: error thresholds, per-method statistics, recall@k, and the
publish decision's report (χ² shares, precision and recall). No torch and no localizer: the
offline evaluator (:mod:`reloc_ros.eval.evaluate`) and the online one
(:mod:`reloc_ros.tools.bag.evaluate`) share these definitions.
"""

from __future__ import annotations

import numpy as np

from reloc_ros.core.calibration import (chi2_shares, mahalanobis2, planar_mahalanobis2, position_sigma,
                                        precision_recall)
from reloc_ros.core.geometry import pose_error_vector, pose_errors

__all__ = ["THRESHOLDS", "METHODS", "RECALL_KS", "recall_at_k", "acc_key", "summarize", "decision_fields",
           "confidence_report"]

#: (metres, degrees) accuracy thresholds of the reports.
THRESHOLDS = [(0.05, 5.0), (0.25, 2.0), (0.50, 5.0), (5.0, 10.0)]
#: The rows every evaluation has: the top-1 retrieved pose and each fusion method.
METHODS = ["retrieval-only", "top1", "consensus", "triangulate"]
#: The k of the retrieval recall@k columns.
RECALL_KS = (1, 5, 10)


def recall_at_k(T_db: np.ndarray, T_gt: np.ndarray, max_t: float = 0.5, max_r: float = 30.0) -> bool:
    """Whether any of the poses ``T_db`` is within ``max_t`` m and ``max_r``° of ``T_gt``."""
    te, re = pose_errors(T_db, T_gt[None])
    return bool(np.any((te <= max_t) & (re <= max_r)))


def acc_key(t_m: float, r_deg: float) -> str:
    """Name of the accuracy column for a (metres, degrees) threshold: ``acc_25cm_2deg``."""
    return f"acc_{int(t_m * 100)}cm_{int(r_deg)}deg"


def summarize(per_method: dict[str, dict], n: int) -> dict:
    """Statistics per method from arrays t, r (NaN = rejected)."""
    out = {}
    for m, d in per_method.items():
        t, r = np.asarray(d["t"]), np.asarray(d["r"])
        ok = np.isfinite(t)
        row = {"accepted": int(ok.sum()), "rejection_rate": float(1 - ok.mean()) if n else float("nan"),
               "median_t_m": float(np.median(t[ok])) if ok.any() else float("nan"),
               "median_r_deg": float(np.median(r[ok])) if ok.any() else float("nan"),
               "mean_t_m": float(np.mean(t[ok])) if ok.any() else float("nan"),
               "mean_r_deg": float(np.mean(r[ok])) if ok.any() else float("nan")}
        for tt, rr in THRESHOLDS:
            row[acc_key(tt, rr)] = float(np.mean(ok & (t <= tt) & (r <= rr))) if n else float("nan")
        out[m] = row
    return out


def decision_fields(r, T_gt: np.ndarray, right_scene: bool = True) -> dict:
    """What a per-frame row records of the configured method's decision.

    ``fused``: fusion (and the refiner, when one is configured) gave a pose in the query's scene; ``confidence``: its confidence
    (-inf without one); ``published``: the localizer would publish it; ``fused_t_m``,
    ``fused_r_deg``: its error whether published or not; ``d2_6``, ``d2_t``, ``d2_r``: squared
    Mahalanobis distances of its 6-vector error under its covariance. Keys ending in
    ``_vec`` (signals, error, rotation) feed calibration and are not written to CSV.
    """
    fused = r.pose is not None and right_scene and (r.refinement is None or bool(r.refinement.get("ok")))
    out = {"fused": fused, "published": bool(r.ok and right_scene), "calibrated": r.calibrated,
           "covariance_source": getattr(r, "covariance_source", ""),
           "confidence": float(r.confidence) if fused else float("-inf"),
           "fused_t_m": float("nan"), "fused_r_deg": float("nan"), "d2_6": float("nan"), "d2_t": float("nan"),
           "d2_r": float("nan"), "d2_planar": float("nan"), "sigma_t_m": float("nan"),
           "signals_vec": None, "e6_vec": None, "R_vec": None, "rawcov_vec": None}
    checks = (r.refinement or {}).get("checks") or {}
    for name, c in checks.items():
        out[f"check_{name}"] = c["value"]
        out[f"check_{name}_passed"] = c["passed"]
    if fused:
        e6 = pose_error_vector(r.pose, T_gt)
        te, re = pose_errors(r.pose, T_gt)
        out.update(fused_t_m=float(te), fused_r_deg=float(re), e6_vec=e6.tolist(), R_vec=r.pose[:3, :3].tolist(),
                   signals_vec=None if r.signals is None else np.asarray(r.signals).tolist())
        if r.covariance is not None and np.all(np.isfinite(r.covariance)):
            out["d2_6"], out["d2_t"], out["d2_r"] = (float(v) for v in mahalanobis2(e6, r.covariance)[0])
            out["d2_planar"] = float(planar_mahalanobis2(e6, r.covariance)[0])
            out["sigma_t_m"] = position_sigma(r.covariance)
        raw = getattr(r, "raw_covariance", None)
        if raw is not None:
            out["rawcov_vec"] = np.asarray(raw, dtype=float).tolist()
    return out


def confidence_report(rows: list[dict], threshold: float, target_t_m: float = 0.25, target_r_deg: float = 10.0,
                      level: float = 0.95) -> dict:
    """χ² shares over the published rows, and the precision/recall curve over all rows."""
    pub = [r for r in rows if r.get("published")]
    d2 = np.array([[r["d2_6"], r["d2_t"], r["d2_r"]] for r in pub], dtype=float).reshape(-1, 3)
    conf = np.array([r.get("confidence", float("-inf")) for r in rows], dtype=float)
    good = np.array([r.get("fused_t_m", np.nan) <= target_t_m and r.get("fused_r_deg", np.nan) <= target_r_deg
                     for r in rows])
    curve = precision_recall(conf, good)
    published = np.array([bool(r.get("published")) for r in rows])
    return {"chi2": chi2_shares(d2[np.all(np.isfinite(d2), 1)], level), "threshold": threshold,
            "precision": float(good[published].mean()) if published.any() else float("nan"),
            "recall": float(published.mean()) if len(rows) else float("nan"),
            "curve": {k: v.tolist() for k, v in curve.items()}, "target_t_m": target_t_m, "target_r_deg": target_r_deg}
