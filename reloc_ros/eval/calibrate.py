"""Fit the covariance and confidence calibration on the held-out training sequences.

    python -m reloc_ros.eval.calibrate --model model.pt --db db.pt --data DATA --out calibration.json

The model and the database must be built without the held-out sequences (train with
``data.train_split=fit``, build the database with ``--split fit``); the queries here are
the ``calib`` split (the last training sequence of each scene), so the calibration sees
errors like those on unseen test frames and never a test frame. The localizer runs as the
node runs it (same retrieval, heads and fusion); see :mod:`reloc_ros.core.calibration` for
the models, and ``python -m reloc_ros.eval.evaluate --calibration`` for the test report.

Outputs: the calibration JSON (``--out``) and, beside it, ``<stem>.md`` with the fit's
numbers and ``<stem>_pr.png`` with its precision/recall curve.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dataclasses import replace

from reloc_ros.core.calibration import Calibration, fit_calibration, precision_recall, signal_names
from reloc_ros.core.database import DatabaseError
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError
from reloc_ros.core.refiners import NO_REFINER
from reloc_ros.core.registry import PluginError, load_plugins
from reloc_ros.data.sevenscenes import SevenScenesError, open_scenes
from reloc_ros.eval.evaluate import add_refiner_options, evaluate, plot_precision_recall
from reloc_ros.eval.report import pct, record_command, write_text

__all__ = ["calibrate", "main"]


def calibrate(loc, scenes, split: str = "calib", precision: float = 0.95, target_t_m: float = 0.25,
              target_r_deg: float = 10.0, max_frames: int | None = None,
              progress: bool = True) -> tuple[Calibration, dict]:
    """Run the uncalibrated localizer on ``split`` of ``scenes`` and fit a calibration.

    Args:
        loc: a :class:`reloc_ros.core.localizer.Localizer` (its calibration is ignored).
        scenes: the scenes whose held-out frames are the queries.
        split: their split ('calib': the held-out training sequence).
        precision, target_t_m, target_r_deg: see :func:`reloc_ros.core.calibration.fit_calibration`.
        max_frames: queries per scene (evenly spaced), None: all.

    Returns:
        The calibration, and the precision/recall curve on the held-out queries under it
        (the curve the threshold was chosen from; a :func:`confidence_report`-like dict).
    """
    if any(not sc.sequences(split) for sc in scenes):
        empty = [sc.name for sc in scenes if not sc.sequences(split)]
        if len(empty) == len(scenes):
            raise ValueError(f"no scene has a {split!r} split (a scene with one training sequence has none)")
    scenes = [sc for sc in scenes if sc.sequences(split)]
    cfg0 = loc.cfg
    loc.cfg = replace(cfg0, calibration=None, min_confidence=None)
    try:
        res = evaluate(loc, scenes, split, max_frames, progress=progress)
    finally:
        loc.cfg = cfg0
    rows = res["rows"]
    ok = np.array([r["fused"] for r in rows])
    names = signal_names(loc.cfg.refiner)
    X = np.array([r["signals_vec"] if r["fused"] else [np.nan] * len(names) for r in rows], dtype=float)
    E = np.array([r["e6_vec"] if r["fused"] else [np.nan] * 6 for r in rows], dtype=float)
    info = {"split": split, "scenes": [sc.name for sc in scenes], "fusion_method": loc.cfg.fusion.method,
            "refiner": loc.cfg.refiner, "refine_iterations": loc.cfg.refine_iterations,
            "top_k": loc.cfg.top_k, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "retrieval_recall_at_k": res["recall_at_k"]}
    cal = fit_calibration(X, E, ok, target_t_m, target_r_deg, precision, info=info, signal_names=names)
    conf = np.full(len(rows), -np.inf)
    conf[ok] = cal.confidence(X[ok])
    good = ok & (np.linalg.norm(np.nan_to_num(E[:, :3], nan=np.inf), axis=1) <= target_t_m) & \
        (np.degrees(np.linalg.norm(np.nan_to_num(E[:, 3:], nan=np.inf), axis=1)) <= target_r_deg)
    curve = {k: v.tolist() for k, v in precision_recall(conf, good).items()}
    return cal, {"curve": curve, "threshold": cal.threshold, "target_t_m": target_t_m, "target_r_deg": target_r_deg}


def report(cal: Calibration) -> str:
    i = cal.info
    c = i["fit_chi2"]
    return "\n".join([
        "# Calibration", "",
        f"Fitted on the {i['split']!r} split of {', '.join(i['scenes'])} ({i['queries']} queries, "
        f"{i['fused']} fused by {i['fusion_method']}"
        + (f" and refined by {cal.refiner}" if cal.refiner != NO_REFINER else "")
        + f", top-{i['top_k']}; {i['good']} within "
        f"{cal.target_t_m:.2f} m and {cal.target_r_deg:.0f}°).", "",
        f"- threshold {cal.threshold:.3f}: publishes {pct(i['recall_at_threshold'])} of the queries, "
        f"{pct(i['precision_at_threshold'] or float('nan'))} of them good (target {pct(i['precision_target'])}"
        f"{'' if i['precision_reached'] else ', not reached: the most precise threshold was taken'}; "
        f"a threshold leaves at least {i['min_published']} poses published)",
        f"- covariance inflation γ {cal.inflation:.3f}; on these poses {pct(c['within_chi2_6'])} inside the "
        f"95% χ²₆ region (at least 95% by construction), translation {pct(c['within_chi2_t3'])}, rotation "
        f"{pct(c['within_chi2_r3'])} (χ²₃); over all {i['fused']} fused poses "
        f"{pct(i['fit_chi2_all_fused']['within_chi2_6'])}", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit the covariance and confidence calibration on held-out frames")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--db", required=True, type=Path, help="database built with --split fit")
    ap.add_argument("--data", required=True, type=Path, help="scene folder or dataset root")
    ap.add_argument("--scenes", nargs="*")
    ap.add_argument("--split", default="calib", help="the held-out queries (default: calib)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--fusion", default="consensus", choices=["top1", "consensus", "triangulate"],
                    help="the node's fusion method (the calibration is only used with it)")
    add_refiner_options(ap)
    ap.add_argument("--refine-iterations", type=int, help="the refiner's iterations (default: its own)")
    ap.add_argument("--precision", type=float, default=0.95, help="precision the threshold must reach")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True, type=Path, help="calibration JSON to write")
    args = ap.parse_args(argv)
    try:
        load_plugins(args.plugin)
        lcfg = LocalizerConfig(top_k=args.top_k, fusion=FusionConfig(method=args.fusion), refiner=args.refiner,
                               refine_iterations=args.refine_iterations)
        loc = Localizer.from_files(args.model, args.db, lcfg, args.device, dro_path=args.dro)
        scenes = open_scenes(args.data, args.scenes)
        split = loc.db.meta.get("split")
        if split not in (None, "fit") and args.split == "calib":
            print(f"warning: the database was built from split {split!r}, not 'fit': the held-out frames "
                  "may be in the map, and the calibration would be optimistic", file=sys.stderr)
        cal, pr = calibrate(loc, scenes, args.split, args.precision, max_frames=args.max_frames)
    except (ModelFileError, DatabaseError, SevenScenesError, PluginError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cal.save(args.out, loc.db)
    md = report(cal)
    write_text(args.out.with_suffix(".md"), md)
    record_command(args.out)
    plot_precision_recall(pr, args.out.with_name(args.out.stem + "_pr.png"),
                          f"held-out {args.split!r} split: the threshold is chosen here")
    print(md)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
