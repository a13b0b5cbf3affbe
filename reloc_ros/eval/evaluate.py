"""Evaluate the localizer on a test split: retrieval-only, top1, consensus and triangulate side by side.

    python -m reloc_ros.eval.evaluate --model model.pt --db db.pt --scene data/chess --out eval/chess

Every query is encoded and regressed once; its k hypotheses are then fused by each method,
so the columns differ only in fusion. When the database has keypoints (``database build
--keypoints``), a ``sift+pnp`` row adds the classical refinement baseline
(:mod:`reloc_ros.core.pnp`: SIFT matches to the top-3 retrieved frames, lifted with their
depth, PnP-RANSAC), with its time per query. ``retrieval-only`` is the pose of the top-1
retrieved database frame, with no regression: if the learned pipeline does not beat it,
the regression adds nothing.

Metrics (per method): median and mean translation (m) and rotation (°) errors over the
poses it returned; the share of *all* queries within (5 cm, 5°), (25 cm, 2°), (50 cm, 5°)
and (5 m, 10°) (a rejected query counts as a miss); the rejection rate. Retrieval
recall@k: the share of queries with at least one of the k retrieved frames within 0.5 m
and 30° of the query. Per-stage latency means are reported too.

With a calibration (``--calibration``, fitted by ``python -m reloc_ros.eval.calibrate`` on the
held-out training sequences), the configured method's column holds what the node publishes:
poses whose calibrated confidence is below the threshold count as rejected. The report adds
the share of published poses whose squared Mahalanobis distance under the published
covariance lies inside the 95 % χ² region (6 dof; translation and rotation alone, 3 dof),
and precision (share of published poses within 0.25 m and 10°) and recall (share of
frames published) over the confidence threshold (``pr.png``, ``pr.csv``).

Outputs in ``--out``: ``summary.md``, ``summary.csv``, ``per_frame.csv``, ``cdf.png``,
``trajectory.png`` (and ``pr.png``, ``pr.csv`` with a calibration).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from reloc_ros.core.calibration import CalibrationError
from reloc_ros.core.database import DatabaseError
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.geometry import pose_errors
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError
from reloc_ros.core.refiners import REFINERS, refiner_names
from reloc_ros.core.registry import PluginError, load_plugins
from reloc_ros.data.coverage import coverage
from reloc_ros.data.sevenscenes import Scene, SevenScenesError, open_scenes, read_color
from reloc_ros.eval.metrics import (METHODS, RECALL_KS, THRESHOLDS, acc_key, confidence_report,  # noqa: F401
                                    decision_fields, recall_at_k, summarize)
from reloc_ros.eval.report import fmt, markdown_table, pct, write_csv, write_summary

#: Refiners whose rows are added by default when the database holds what they need: SIFT +
#: PnP, the classical baseline (its row: ``sift+pnp``).
BASELINES = ("pnp",)


def query_frames(scene: Scene, split: str = "test", max_frames: int | None = None) -> list:
    """The queries of a scene's ``split``: all its frames, or ``max_frames`` evenly spaced."""
    frames = scene.frames(split)
    if max_frames is not None and len(frames) > max_frames:
        frames = [frames[i] for i in np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))]
    return frames


def evaluate(loc, scenes: list[Scene], split="test", max_frames: int | None = None,
             fusion_base: FusionConfig | None = None, progress: bool = True, also: dict | None = None,
             frames: dict | None = None) -> dict:
    """Run every frame of ``split`` through the localizer's own stages; per-frame rows and the summary.

    Each query goes once through :meth:`~reloc_ros.core.localizer.Localizer.hypothesize`
    (encoder, retrieval, heads); its hypotheses are fused by every fusion method
    (:meth:`~reloc_ros.core.localizer.Localizer.fuse`), and the configured method's result is
    refined and decided as the node does (:meth:`~reloc_ros.core.localizer.Localizer.refine`).

    Args:
        loc: the localizer (its calibration, if any, decides what is published).
        scenes: the scenes whose ``split`` frames are the queries.
        split: their split.
        max_frames: queries per scene (evenly spaced); None: all.
        fusion_base: the fusion settings the methods share (default: the localizer's).
        progress: show a progress bar.
        also: {refiner name: a localizer that shares ``loc``'s model and database but refines
            with that refiner}; each adds a row (the unit's :attr:`Refiner.row`), refined
            from the same fused pose of the same query.
        frames: {scene name: its query frames}, instead of ``split`` and ``max_frames``.
    """
    base = fusion_base or loc.cfg.fusion
    fusions = {m: replace(base, method=m) for m in ("top1", "consensus", "triangulate")}
    own_row = loc.refiner.row if loc.refiner is not None else None
    extra = {other.refiner.row: other for other in (also or {}).values() if other.refiner.row != own_row}
    methods = METHODS + ([own_row] if own_row else []) + list(extra)
    rows, timings, recall = [], [], []
    recalls = {k: [] for k in RECALL_KS}
    ms = {m: [] for m in methods[len(METHODS):]}
    per = {m: {"t": [], "r": []} for m in methods}
    covs = []
    for sc in scenes:
        queries = frames.get(sc.name, []) if frames is not None else query_frames(sc, split, max_frames)
        if sc.name in loc.db.scene_names:
            map_rows = loc.scene_rows[loc.db.scene_names.index(sc.name)].numpy()
            covs.append(coverage(loc.poses[map_rows], sc.poses(queries), sc.name))
        for fr in tqdm(queries, desc=f"evaluating {sc.name}", disable=not progress, dynamic_ncols=True, leave=False):
            T_gt = sc.pose(fr)
            img = read_color(fr.color_path)
            h = loc.hypothesize(img)
            k_scene, _, top = loc.retrieve(h.descriptor, max(RECALL_KS))
            for k in RECALL_KS:
                hit = loc.db.scene_names[k_scene] == sc.name and recall_at_k(loc.poses[top[:k].cpu().numpy()], T_gt)
                recalls[k].append(hit)
            recall.append(recall_at_k(h.T_db, T_gt))
            row = {"scene": sc.name, "frame": fr.id, "retrieved_scene": h.scene, "recall_at_k": recall[-1]}
            right_scene = h.scene == sc.name
            est = {"retrieval-only": h.T_db[0] if right_scene else None}
            for m, fc in fusions.items():
                r = loc.fuse(h, fc)
                est[m] = r.pose if r.ok and right_scene else None
                row[f"{m}_inliers"] = r.n_inliers
                if m == loc.cfg.fusion.method:
                    fused = r
            decision = fused
            for name, other in ([(own_row, loc)] if own_row else []) + list(extra.items()):
                rr = other.refine(fused, img, sc.color_intrinsics.scaled(*other.refine_image_size).K)
                est[name] = rr.pose if rr.refinement and rr.refinement["ok"] and right_scene else None
                row[f"{name}_ms"] = rr.timings_ms.get("refine", float("nan"))
                for k in ("stage", "start"):  # a chained refiner's: which unit ran, from which pose
                    if rr.refinement and k in rr.refinement:
                        row[f"{name}_{k}"] = rr.refinement[k]
                ms[name].append(row[f"{name}_ms"])
                if other is loc:  # the node's pipeline: its decision is the refined one
                    decision = rr
            timings.append(decision.timings_ms)
            row.update(decision_fields(decision, T_gt, right_scene))
            for m in methods:
                te, re = (float("nan"),) * 2 if est[m] is None else (float(v) for v in pose_errors(est[m], T_gt))
                per[m]["t"].append(te)
                per[m]["r"].append(re)
                row[f"{m}_t_m"], row[f"{m}_r_deg"] = te, re
                row[f"{m}_xyz"] = None if est[m] is None else est[m][:3, 3].tolist()
            row["gt_xyz"] = T_gt[:3, 3].tolist()
            rows.append(row)
    n = len(rows)
    tm = {k: float(np.mean([t[k] for t in timings])) for k in timings[0]} if timings else {}
    tm.update({m: float(np.mean(v)) for m, v in ms.items() if v})
    oracle = float(np.average([c.within_50cm_30deg for c in covs], weights=[c.queries for c in covs])) \
        if covs else float("nan")
    conf_rep = confidence_report(rows, loc.cfg.threshold) if loc.cfg.calibration is not None else None
    return {"rows": rows, "summary": summarize(per, n), "confidence": conf_rep,
            "recall_at_k": float(np.mean(recall)) if recall else float("nan"),
            "recall": {k: float(np.mean(v)) if v else float("nan") for k, v in recalls.items()},
            "oracle_recall": oracle, "coverage": [c.as_dict() for c in covs],
            "top_k": loc.cfg.top_k, "queries": n, "timings_ms": tm,
            "method": loc.cfg.fusion.method + (f" + {loc.cfg.refiner}" if loc.refiner is not None else ""),
            "methods": methods}


def baseline_localizers(loc, names=BASELINES, **files) -> dict:
    """{name: a localizer sharing ``loc``'s model and database that refines with that refiner}
    for each of ``names`` whose database needs are met and that ``loc`` does not already run."""
    out = {}
    for name in names:
        if name == loc.cfg.refiner or loc.db.missing(REFINERS.get(name).needs):
            continue
        out[name] = Localizer(loc.model, loc.db, replace(loc.cfg, refiner=name, calibration=None,
                                                         min_confidence=None),
                              loc.device, refiner_files=files, model_info=loc.model_info)
    return out


def table_markdown(res: dict, title: str = "") -> str:
    s = res["summary"]
    head = ["method", "median t (m)", "median r (°)", "mean t (m)", "mean r (°)"] + \
           [f"≤{int(t * 100)}cm,{int(r)}°" for t, r in THRESHOLDS] + ["rejected"]
    rows = [[m, fmt(s[m]["median_t_m"]), fmt(s[m]["median_r_deg"], ".2f"), fmt(s[m]["mean_t_m"]),
             fmt(s[m]["mean_r_deg"], ".2f")] + [pct(s[m][acc_key(t, r)]) for t, r in THRESHOLDS]
            + [pct(s[m]["rejection_rate"])] for m in res.get("methods", METHODS)]
    rec = res.get("recall", {})
    notes = [f"{res['queries']} queries. Retrieval recall (a retrieved frame within 0.5 m and 30°): "
             + ", ".join(f"@{k} {pct(v)}" for k, v in rec.items())
             + f"; oracle recall (the map has such a frame) {pct(res.get('oracle_recall', float('nan')))}."]
    for c in res.get("coverage", []):
        notes.append(f"Coverage of {c['name']}: oracle neighbour median {c['median_d_m']:.3f} m / "
                     f"{c['median_r_deg']:.1f}°, {pct(c['within_50cm_30deg'])} within 0.5 m and 30°, "
                     f"{pct(c['within_25cm_15deg'])} within 0.25 m and 15° (real 7-Scenes: 0.265 m / 9.9°, 95%, 46%).")
    cr = res.get("confidence")
    if cr:
        c = cr["chi2"]
        notes.append(f"Calibrated {res.get('method', 'consensus')}: threshold {cr['threshold']:.3f}, publishes "
                     f"{pct(cr['recall'])} of the frames, {pct(cr['precision'])} of them within "
                     f"{cr['target_t_m']:.2f} m and {cr['target_r_deg']:.0f}°. Of the {c['n']} published poses, "
                     f"{pct(c['within_chi2_6'])} lie inside the 95% χ²₆ region of their covariance "
                     f"(translation alone {pct(c['within_chi2_t3'])}, rotation alone {pct(c['within_chi2_r3'])}, χ²₃).")
    if res["timings_ms"]:
        notes.append("Mean latency (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in res["timings_ms"].items()) + ".")
    return markdown_table(head, rows, title or None, notes)


def plot(res: dict, out: Path) -> None:
    import matplotlib  # lazy: matplotlib (about 1 s) only for the plots; the metrics are imported without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the Agg backend is chosen

    rows = res["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, unit, lim in ((axes[0], "t_m", "m", None), (axes[1], "r_deg", "deg", None)):
        for m in res.get("methods", METHODS):
            v = np.array([r[f"{m}_{key}"] for r in rows], dtype=float)
            v = np.sort(np.where(np.isfinite(v), v, np.inf))
            y = np.arange(1, len(v) + 1) / max(1, len(v))
            ax.step(v[np.isfinite(v)], y[np.isfinite(v)], where="post", label=m)
        ax.set_xscale("log")
        ax.set_xlabel(f"{'translation' if key == 't_m' else 'rotation'} error ({unit})")
        ax.set_ylabel("share of queries")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    fig.suptitle("Error CDF (rejected queries never reach 1)")
    fig.tight_layout()
    fig.savefig(out / "cdf.png", dpi=120)
    plt.close(fig)

    gt = np.array([r["gt_xyz"] for r in rows])
    if len(gt) < 2:
        return
    # Top view: the plane of the two main axes of the ground-truth trajectory.
    mu = gt.mean(0)
    _, _, Vt = np.linalg.svd(gt - mu, full_matrices=False)
    P = Vt[:2].T
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), sharex=True, sharey=True)
    for ax, m in zip(axes, ["retrieval-only", "consensus", "triangulate"]):
        g2 = (gt - mu) @ P
        ax.plot(g2[:, 0], g2[:, 1], "k-", lw=1, label="ground truth")
        est = [(i, r[f"{m}_xyz"]) for i, r in enumerate(rows) if r[f"{m}_xyz"] is not None]
        if est:
            e2 = (np.array([e for _, e in est]) - mu) @ P
            for (i, _), p in zip(est, e2):
                ax.plot([g2[i, 0], p[0]], [g2[i, 1], p[1]], "r-", lw=0.4, alpha=0.5)
            ax.plot(e2[:, 0], e2[:, 1], ".", ms=3, label=f"{m} ({len(est)})")
        ax.set_title(m)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Top view (main plane of the ground-truth trajectory, m); red: error")
    fig.tight_layout()
    fig.savefig(out / "trajectory.png", dpi=110)
    plt.close(fig)


def plot_precision_recall(cr: dict, path: Path, title: str = "") -> None:
    """Precision and recall over the confidence threshold, the chosen threshold marked."""
    import matplotlib  # lazy: matplotlib (about 1 s) only for the plots; the metrics are imported without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the Agg backend is chosen

    c = cr["curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(c["threshold"], c["precision"], label=f"precision (within {cr['target_t_m']:.2f} m, "
                                                 f"{cr['target_r_deg']:.0f}°)")
    ax.plot(c["threshold"], c["recall"], label="recall (share of frames published)")
    ax.axvline(cr["threshold"], color="k", ls="--", lw=1, label=f"threshold {cr['threshold']:.3f}")
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.set_xlabel("confidence threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "Publish decision")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def csv_row(r: dict) -> dict:
    """A per-frame row without its vectors."""
    return {k: v for k, v in r.items() if not (k.endswith("_xyz") or k.endswith("_vec"))}


def write(res: dict, out: Path, title: str) -> str:
    md = table_markdown(res, title)
    summary_rows = [{"method": m, **row} for m, row in res["summary"].items()]
    write_summary(out, md, {k: v for k, v in res.items() if k != "rows"}, rows=[csv_row(r) for r in res["rows"]])
    write_csv(out / "summary.csv", summary_rows)
    plot(res, out)
    if res.get("confidence"):
        c = res["confidence"]["curve"]
        write_csv(out / "pr.csv", [dict(zip(("threshold", "precision", "recall"), v))
                                   for v in zip(c["threshold"], c["precision"], c["recall"])])
        plot_precision_recall(res["confidence"], out / "pr.png", title)
    return md


def add_refiner_options(ap: argparse.ArgumentParser) -> None:
    """``--refiner``, ``--checks``, ``--dro`` and ``--plugin``: the refiner options the evaluation commands share."""
    ap.add_argument("--checks", nargs="*", default=[], metavar="NAME",
                    help="publish checks of the refined pose (reloc_ros.core.checks: verify, regression, retrieved)")
    ap.add_argument("--refiner", default="none", metavar="NAME",
                    help=f"refine after fusion: {', '.join(refiner_names())}, or a plugin's (pnp: a database "
                         "built with --keypoints; lm, dro: with --dense)")
    ap.add_argument("--dro", type=Path, help="the DRO file (python -m reloc_train.dro), for refiner dro")
    ap.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import this module first (it may register refiners; repeatable; docs/extending.md)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate the relocalizer on a test split")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--db", required=True, type=Path)
    ap.add_argument("--scene", required=True, type=Path, help="scene folder or dataset root")
    ap.add_argument("--scenes", nargs="*")
    ap.add_argument("--split", default="test")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--fusion", default="consensus", choices=METHODS[1:],
                    help="the node's fusion method: its column is the one the calibration applies to")
    add_refiner_options(ap)
    ap.add_argument("--also", nargs="*", default=[], metavar="REFINER",
                    help="more refiners to report beside the configured one, each refined from the same fused "
                         f"pose (one row each; {', '.join(BASELINES)} is always reported where the database "
                         "allows it)")
    ap.add_argument("--refine-iterations", type=int, help="lm: per level; dro: per stage (default: the file's)")
    ap.add_argument("--inlier-t", type=float, default=FusionConfig.inlier_t_m)
    ap.add_argument("--inlier-r", type=float, default=FusionConfig.inlier_r_deg)
    ap.add_argument("--min-inliers", type=int, default=FusionConfig.min_inliers)
    ap.add_argument("--max-frames", type=int, help="queries per scene (evenly spaced)")
    ap.add_argument("--calibration", type=Path, help="calibration file (python -m reloc_ros.eval.calibrate)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        load_plugins(args.plugin)
        fcfg = FusionConfig(method=args.fusion, inlier_t_m=args.inlier_t, inlier_r_deg=args.inlier_r,
                            min_inliers=args.min_inliers)
        lcfg = LocalizerConfig(top_k=args.top_k, fusion=fcfg, refiner=args.refiner,
                               refine_iterations=args.refine_iterations, checks=tuple(args.checks))
        loc = Localizer.from_files(args.model, args.db, lcfg, args.device, args.calibration, dro_path=args.dro)
        also = baseline_localizers(loc, tuple(dict.fromkeys(BASELINES + tuple(args.also))), dro_path=args.dro)
        scenes = open_scenes(args.scene, args.scenes)
    except (ModelFileError, DatabaseError, CalibrationError, SevenScenesError, PluginError, ValueError,
            RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    loc.warmup()
    t0 = time.time()
    res = evaluate(loc, scenes, args.split, args.max_frames, also=also)
    md = write(res, args.out, f"Localizer on {', '.join(s.name for s in scenes)} ({args.split}), "
                              f"top-{args.top_k}, device {loc.device}")
    print(md)
    print(f"{res['queries']} queries in {time.time() - t0:.1f} s; written to {args.out}/ "
          "(summary.md, summary.csv, per_frame.csv, cdf.png, trajectory.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
