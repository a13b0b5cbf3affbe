"""Fit the covariance and confidence calibration on held-out map frames.

    python -m reloc_ros.eval.calibrate --model model.pt --db db.pt --data DATA --out calibration.json

Two holdouts (``--holdout``):

* ``crossfit`` (for a database built from the map's own frames, the default): each training
  sequence is localized against the map without it, or, in a single run, each block of 10 %
  against the map without the block and 5 % either side (:func:`crossfit`). Every map of
  50 solved frames can be calibrated; nothing is trained or built again;
* ``sequence`` (for a database built with ``--split fit``): the ``calib`` split, the last
  training sequence of each scene, not in the map.

Either way the queries are never test frames, and the localizer runs as the node runs it
(same retrieval, heads, fusion, refiner and publish checks); see
:mod:`reloc_ros.core.calibration` for the models, and ``python -m reloc_ros.eval.evaluate
--calibration`` for the test report.

Outputs: the calibration JSON (``--out``) and, beside it, ``<stem>.md`` with the fit's
numbers (precision, its bound, recall, and whether each target was met) and
``<stem>_pr.png`` with its precision/recall curve.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dataclasses import replace

from reloc_ros.core.calibration import (DEFAULT_PRECISION, DEFAULT_RECALL_FLOOR, MIN_CALIBRATION_POSES, Calibration,
                                        fit_calibration,
                                        precision_recall, signal_names)
from reloc_ros.core.database import DatabaseError
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError
from reloc_ros.core.refiners import NO_REFINER
from reloc_ros.core.registry import PluginError, load_plugins
from reloc_ros.data.sevenscenes import Scene, SevenScenesError, open_scenes
from reloc_ros.eval.evaluate import add_refiner_options, evaluate, plot_precision_recall
from reloc_ros.eval.report import pct, record_command, write_text

__all__ = ["calibrate", "main"]


#: Cross-fit defaults: each sequence is cut into blocks of this share of its frames ...
BLOCK_SHARE = 0.1
#: ... and the map frames within this share of the sequence on either side of a block are
#: left out of the map while the block is localized (its neighbourhood: near-duplicate views).
GUARD_SHARE = 0.05


def crossfit_folds(scene: Scene, split, block_share: float = BLOCK_SHARE, guard_share: float = GUARD_SHARE,
                   max_frames: int | None = None, folds: str = "auto") -> list[tuple[list, set]]:
    """The cross-fit folds of a scene's ``split``: ``(query frames, ids left out of the map)``.

    ``folds="sequence"``: each sequence is localized against the map without it (a new
    trajectory through the mapped space, as a test sequence is). ``folds="block"``: each
    sequence is cut into consecutive blocks of ``block_share`` of its frames; a block's
    queries are localized against the map without the block and ``guard_share`` of the
    sequence on either side of it. ``"auto"``: sequences where the split has at least two,
    else blocks (a single run). ``max_frames``: queries of the scene at most (evenly spaced
    within each fold). Frames of other splits (the test sequences) are never touched.
    """
    frames = scene.frames(split)
    by_seq: dict[int, list] = {}
    for fr in frames:
        by_seq.setdefault(fr.seq, []).append(fr)
    if folds == "auto":
        folds = "sequence" if len(by_seq) >= 2 else "block"
    if folds not in ("sequence", "block"):
        raise ValueError(f"unknown folds {folds!r}: 'sequence', 'block' or 'auto'")
    stride = max(1, math.ceil(len(frames) / max_frames)) if max_frames else 1
    out_folds = []
    for seq, fs in sorted(by_seq.items()):
        fs = sorted(fs, key=lambda f: f.index)
        if folds == "sequence":
            out_folds.append((fs[::stride], {f.id for f in fs}))
            continue
        n = len(fs)
        b, g = max(1, round(block_share * n)), max(1, round(guard_share * n))
        for a in range(0, n, b):
            block = fs[a:a + b]
            out = {f.id for f in fs[max(0, a - g):a + b + g]}
            out_folds.append((block[::stride], out))
    return out_folds


def crossfit(loc, scenes, split="train", block_share: float = BLOCK_SHARE, guard_share: float = GUARD_SHARE,
             max_frames: int | None = None, progress: bool = True, folds: str = "auto") -> tuple[list[dict], dict]:
    """Localize every map frame of ``split`` against the map without its fold
    (:func:`crossfit_folds`), uncalibrated, as the node runs; the evaluation rows and what
    was held out."""
    rows, held, kinds = [], {}, {}
    cfg = replace(loc.cfg, calibration=None, min_confidence=None)
    for sc in scenes:
        if sc.name not in loc.db.scene_names:
            raise ValueError(f"scene {sc.name!r} is not in the database ({', '.join(loc.db.scene_names)})")
        k = loc.db.scene_names.index(sc.name)
        kind = folds if folds != "auto" else ("sequence" if len({f.seq for f in sc.frames(split)}) >= 2 else "block")
        kinds[sc.name] = kind
        fl = crossfit_folds(sc, split, block_share, guard_share, max_frames, kind)
        held[sc.name] = [[q[0].id, q[-1].id, len(q), len(out)] for q, out in fl if q]
        sidx = loc.db.scene_index.numpy()
        for q, out in tqdm(fl, desc=f"cross-fit {sc.name}", disable=not progress, dynamic_ncols=True,
                           leave=False):
            if not q:
                continue
            keep = [i for i, fid in enumerate(loc.db.frame_ids) if sidx[i] != k or fid not in out]
            sub = Localizer(loc.model, loc.db.subset(keep), cfg, loc.device, refiner_files=loc.refiner_files,
                            model_info=loc.model_info)
            rows += evaluate(sub, [sc], frames={sc.name: q}, progress=False)["rows"]
    return rows, {"method": "crossfit", "split": split if isinstance(split, str) else list(split), "folds": kinds,
                  "block_share": block_share, "guard_share": guard_share, "blocks": held}


def _model_saw(loc, scenes) -> list[str]:
    """Names of ``scenes`` that the model's training data lists (its meta), where it says."""
    meta = getattr(loc.model_info, "meta", None) or {}
    data = str(meta.get("training_data", ""))
    return [sc.name for sc in scenes if sc.name in data]


def calibrate(loc, scenes, split: str = "calib", precision: float = DEFAULT_PRECISION, target_t_m: float = 0.25,
              target_r_deg: float = 10.0, max_frames: int | None = None, progress: bool = True,
              holdout: str = "sequence", recall_floor: float = DEFAULT_RECALL_FLOOR,
              min_poses: int = MIN_CALIBRATION_POSES, folds: str = "auto") -> tuple[Calibration, dict]:
    """Run the uncalibrated localizer on held-out frames of ``scenes`` and fit a calibration.

    Args:
        loc: a :class:`reloc_ros.core.localizer.Localizer` (its calibration is ignored).
        scenes: the scenes whose held-out frames are the queries.
        split: with ``holdout="sequence"``, the held-out split ('calib': the last training
            sequence, not in the map); with ``"crossfit"``, the map's own split, whose frames
            are held out block by block (:func:`crossfit`).
        precision, target_t_m, target_r_deg, recall_floor: see
            :func:`reloc_ros.core.calibration.fit_calibration`.
        max_frames: queries per scene (evenly spaced), None: all.
        holdout: 'sequence' or 'crossfit'.
        min_poses: fewer fused held-out poses raise a ValueError.
        folds: the cross-fit's folds (:func:`crossfit_folds`).

    Returns:
        The calibration, and the precision/recall curve on the held-out queries under it
        (the curve the threshold was chosen from; a :func:`confidence_report`-like dict).
    """
    if holdout == "crossfit":
        rows, held = crossfit(loc, scenes, split, max_frames=max_frames, progress=progress, folds=folds)
        recall_k = float(np.mean([r["recall_at_k"] for r in rows])) if rows else float("nan")
    elif holdout == "sequence":
        empty = [sc.name for sc in scenes if not sc.sequences(split)]
        if len(empty) == len(scenes):
            raise ValueError(f"no scene has a {split!r} split (a scene with one training sequence has none: "
                             "use the cross-fit holdout)")
        scenes = [sc for sc in scenes if sc.sequences(split)]
        cfg0 = loc.cfg
        loc.cfg = replace(cfg0, calibration=None, min_confidence=None)
        try:
            res = evaluate(loc, scenes, split, max_frames, progress=progress)
        finally:
            loc.cfg = cfg0
        rows, recall_k = res["rows"], res["recall_at_k"]
        held = {"method": "sequence", "split": split,
                "sequences": {sc.name: sc.sequences(split) for sc in scenes}}
    else:
        raise ValueError(f"unknown holdout {holdout!r}: 'sequence' or 'crossfit'")
    return fit_rows(loc, rows, scenes, split, held, recall_k, precision, target_t_m, target_r_deg, recall_floor,
                    min_poses)


def fit_rows(loc, rows: list[dict], scenes, split, held: dict, recall_k: float = float("nan"),
             precision: float = DEFAULT_PRECISION, target_t_m: float = 0.25, target_r_deg: float = 10.0,
             recall_floor: float = DEFAULT_RECALL_FLOOR,
             min_poses: int = MIN_CALIBRATION_POSES) -> tuple[Calibration, dict]:
    """Fit the calibration of ``loc`` on held-out evaluation ``rows`` (what :func:`calibrate`
    does after localizing them; ``held`` says what was held out)."""
    # a pose a publish check stops is never published: it is not a calibration pose
    ok = np.array([r["fused"] and all(r.get(f"check_{c}_passed", True) for c in loc.cfg.checks) for r in rows],
                  dtype=bool)
    names = signal_names(loc.cfg.refiner)
    X = np.array([r["signals_vec"] if o else [np.nan] * len(names) for r, o in zip(rows, ok)], dtype=float)
    E = np.array([r["e6_vec"] if o else [np.nan] * 6 for r, o in zip(rows, ok)], dtype=float)
    saw = _model_saw(loc, scenes)
    info = {"split": split, "scenes": [sc.name for sc in scenes], "fusion_method": loc.cfg.fusion.method,
            "refiner": loc.cfg.refiner, "refine_iterations": loc.cfg.refine_iterations,
            "top_k": loc.cfg.top_k, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "retrieval_recall_at_k": recall_k, "holdout": held,
            "model_trained_on": saw,
            "bias": ("the model was trained on frames of " + ", ".join(saw) + ": the held-out errors are "
                     "smaller than on unseen frames, the calibration optimistic") if saw else
                    "none known: the model's training data does not list these scenes",
            "binding": loc.calibration_binding()}
    cal = fit_calibration(X, E, ok, target_t_m, target_r_deg, precision, recall_floor=recall_floor,
                          min_poses=min_poses, info=info, signal_names=names)
    conf = np.full(len(rows), -np.inf)
    conf[ok] = cal.confidence(X[ok])
    good = ok & (np.linalg.norm(np.nan_to_num(E[:, :3], nan=np.inf), axis=1) <= target_t_m) & \
        (np.degrees(np.linalg.norm(np.nan_to_num(E[:, 3:], nan=np.inf), axis=1)) <= target_r_deg)
    curve = {k: v.tolist() for k, v in precision_recall(conf, good).items()}
    return cal, {"curve": curve, "threshold": cal.threshold, "target_t_m": target_t_m, "target_r_deg": target_r_deg}


def report(cal: Calibration) -> str:
    i = cal.info
    c = i["fit_chi2"]
    h = i.get("holdout", {})
    if h.get("method") == "crossfit":
        n_blocks = sum(len(v) for v in h.get("blocks", {}).values())
        where = (f"cross-fitted on the {h['split']!r} frames of {', '.join(i['scenes'])} ("
                 + (f"{n_blocks} sequences, each localized against the map without it)"
                    if set(h.get("folds", {}).values()) == {"sequence"}
                    else f"{n_blocks} blocks of {pct(h['block_share'])} of a sequence, each localized against the map "
                         f"without it and {pct(h['guard_share'])} of the sequence either side)"))
    else:
        where = f"fitted on the {i['split']!r} split of {', '.join(i['scenes'])}"
    misses = cal.misses()
    return "\n".join([
        "# Calibration", "",
        f"{where[0].upper()}{where[1:]}: {i['queries']} queries, {i['fused']} fused by {i['fusion_method']}"
        + (f" and refined by {cal.refiner}" if cal.refiner != NO_REFINER else "")
        + f", top-{i['top_k']}; {i['good']} within {cal.target_t_m:.2f} m and {cal.target_r_deg:.0f}°. "
        f"Bias: {i.get('bias', 'unknown')}.", "",
        "| threshold | published | precision | 95 % lower bound (target) | recall of good poses (floor) |",
        "|---|---|---|---|---|",
        f"| {cal.threshold:.3f} | {i['published']} ({pct(i['recall_at_threshold'])} of the queries) | "
        f"{pct(i['precision_at_threshold'])} | {pct(i['precision_lower_bound'])} ({pct(i['precision_target'])}) | "
        f"{pct(i['recall_good'])} ({pct(i['recall_floor'])}) |", "",
        ("**Missed its target**: " + "; ".join(misses) + ". The node says so at startup and sends no "
         "/initialpose from it." if misses else "Every target met."), "",
        f"- covariance inflation γ {cal.inflation:.3f}; on these poses {pct(c['within_chi2_6'])} inside the "
        f"95% χ²₆ region (at least 95% by construction), translation {pct(c['within_chi2_t3'])}, rotation "
        f"{pct(c['within_chi2_r3'])} (χ²₃); over all {i['fused']} fused poses "
        f"{pct(i['fit_chi2_all_fused']['within_chi2_6'])}", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit the covariance and confidence calibration on held-out frames")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--db", required=True, type=Path, help="the node's database")
    ap.add_argument("--data", required=True, type=Path, help="scene folder or dataset root")
    ap.add_argument("--scenes", nargs="*")
    ap.add_argument("--holdout", default="auto", choices=["auto", "crossfit", "sequence"],
                    help="crossfit: the map's own frames, block by block, against the map without each block "
                         "and its neighbourhood; sequence: a held-out split not in the map (--split); auto: "
                         "sequence for a database built with --split fit, else crossfit")
    ap.add_argument("--split", help="the held-out queries (sequence: default calib; crossfit: default the "
                                    "database's split)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--fusion", default="consensus", choices=["top1", "consensus", "triangulate"],
                    help="the node's fusion method (the calibration is only used with it)")
    add_refiner_options(ap)
    ap.add_argument("--refine-iterations", type=int, help="the refiner's iterations (default: its own)")
    ap.add_argument("--precision", type=float, default=DEFAULT_PRECISION,
                    help="the 95%% lower bound the published poses' precision must reach")
    ap.add_argument("--recall-floor", type=float, default=DEFAULT_RECALL_FLOOR,
                    help="share of the good calibration poses that must be published")
    ap.add_argument("--min-poses", type=int, default=MIN_CALIBRATION_POSES,
                    help="fewer fused held-out poses make no calibration (below 50 no bound means much)")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True, type=Path, help="calibration JSON to write")
    args = ap.parse_args(argv)
    try:
        load_plugins(args.plugin)
        lcfg = LocalizerConfig(top_k=args.top_k, fusion=FusionConfig(method=args.fusion), refiner=args.refiner,
                               refine_iterations=args.refine_iterations, checks=tuple(args.checks))
        loc = Localizer.from_files(args.model, args.db, lcfg, args.device, dro_path=args.dro)
        scenes = open_scenes(args.data, args.scenes)
        db_split = loc.db.meta.get("split")
        holdout = args.holdout if args.holdout != "auto" else ("sequence" if db_split == "fit" else "crossfit")
        split = args.split or ("calib" if holdout == "sequence" else (db_split or "train"))
        if holdout == "sequence" and db_split not in (None, "fit") and split == "calib":
            print(f"warning: the database was built from split {db_split!r}, not 'fit': the held-out frames "
                  "may be in the map, and the calibration would be optimistic", file=sys.stderr)
        cal, pr = calibrate(loc, scenes, split, args.precision, max_frames=args.max_frames, holdout=holdout,
                            recall_floor=args.recall_floor, min_poses=args.min_poses)
    except (ModelFileError, DatabaseError, SevenScenesError, PluginError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cal.save(args.out, loc.db)
    md = report(cal)
    write_text(args.out.with_suffix(".md"), md)
    record_command(args.out)
    plot_precision_recall(pr, args.out.with_name(args.out.stem + "_pr.png"),
                          f"held-out {split!r} frames ({holdout}): the threshold is chosen here")
    print(md)
    if not cal.target_met:
        print(f"warning: {args.out} missed its target: " + "; ".join(cal.misses()), file=sys.stderr)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
