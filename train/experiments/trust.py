"""Trust on any map: the measurements behind the published covariance and publish decision.

    # the conservative default covariance per refiner, fitted on the validation rooms
    python -m reloc_train.experiments.trust inflation --data data/rooms52/val \\
        --out docs/results/trust/inflation --write-defaults
    # the cross-fit's folds and the precision target, chosen on the validation rooms
    python -m reloc_train.experiments.trust validate --data data/rooms52/val --out docs/results/trust/validation
    # the repeated-structure family: gate chosen on 2 scenes, reported on the other 3
    python -m reloc_train.experiments.trust repeated --data data/repeated --choose repeated_a repeated_b \\
        --out docs/results/trust/repeated
    # unseen scenes (test split read: a ledger line per run)
    python -m reloc_train.experiments.trust test --data data/rooms52/test --out docs/results/trust/rooms52_test
    python -m reloc_train.experiments.trust test --data data/redkitchen_rgbd --out docs/results/trust/redkitchen

Every scene's map is its training split. Each run cross-fits a calibration on the map
(:func:`reloc_ros.eval.calibrate.crossfit`), with the demo's setting (``pnp`` and the
``verify`` publish check) and with ``refiner: none``, and localizes the test split with
it. The same rows give the uncalibrated view: every solved pose published with the shipped
default covariance (:mod:`reloc_ros.core.uncalibrated`). Reported per scene and pooled:
precision (published poses within 0.25 m / 10°), its 95 % Wilson lower bound, recall (of the
frames whose pose is within 0.25 m / 10°, the share published), the χ²₆ and planar (x, y,
yaw) χ²₃ shares inside the 95 % regions, and the confidently wrong poses (more than 0.5 m
off with a position σ below 0.1 m; for the repeated family more than 0.25 m).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.calibration import chi2_quantile, mahalanobis2, planar_mahalanobis2, position_sigma, wilson_lower
from reloc_ros.core.checks import CHECKS
from reloc_ros.core.files import atomic_write_text
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.uncalibrated import DEFAULTS_FILE, DefaultCovariance, fit_default
from reloc_ros.data.sevenscenes import open_scenes
from reloc_ros.eval.calibrate import calibrate, crossfit, fit_rows
from reloc_ros.eval.evaluate import evaluate
from reloc_ros.eval.report import pct
from reloc_train.experiments.unseen import LEDGER, LEDGER_FIELDS, ROOT, _commit, scene_database
from reloc_train.recipes import GENERIC_MODEL

log = logging.getLogger("trust")
DENSE = {"levels": [3, 2], "steps": [1, 2]}
#: The gate each check's choice sweeps: (attribute, values, whether a pose passes at or below it).
GRIDS = {"regression": ("max_t_m", [0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 1e9], True),
         "retrieved": ("max_t_m", [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 1e9], True),
         "verify": ("min_share", [0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2], False)}
#: (refiner, publish checks) of the two settings every test reports: the demo's and none.
SETTINGS = {"pnp + verify": ("pnp", ("verify",)), "none": ("none", ())}


def _good(rows) -> np.ndarray:
    return np.array([r["fused_t_m"] <= 0.25 and r["fused_r_deg"] <= 10.0 for r in rows], dtype=bool)


def _solved(rows) -> np.ndarray:
    """Poses the uncalibrated node would publish: solved, and every publish check passed."""
    return np.array([bool(r["fused"]) and all(v for k, v in r.items() if k.startswith("check_") and
                                              k.endswith("_passed")) for r in rows], dtype=bool)


def metrics(rows: list[dict], pub: np.ndarray, cov_N66: np.ndarray | None = None, wrong_m: float = 0.5) -> dict:
    """Precision, its Wilson bound, recall, χ² shares and the confidently wrong of the poses
    ``pub`` publishes (covariances ``cov_N66``: default those the rows were published with)."""
    good, n = _good(rows), len(rows)
    t = np.array([r["fused_t_m"] for r in rows], dtype=float)
    if cov_N66 is None:
        d2 = np.array([r["d2_6"] for r in rows], dtype=float)
        d2p = np.array([r["d2_planar"] for r in rows], dtype=float)
        sig = np.array([r["sigma_t_m"] for r in rows], dtype=float)
    else:
        E = np.array([r["e6_vec"] if r["e6_vec"] is not None else [np.nan] * 6 for r in rows], dtype=float)
        C = np.where(np.isfinite(cov_N66), cov_N66, 0) + 1e-12 * np.eye(6)
        d2, d2p = mahalanobis2(E, C)[:, 0], planar_mahalanobis2(E, C)
        sig = np.array([position_sigma(c) for c in C])
    k, m = int((pub & good).sum()), int(pub.sum())
    conf_wrong = pub & (t > wrong_m) & (sig < 0.1)
    return {"frames": n, "published": m, "good_frames": int(good.sum()),
            "precision": k / m if m else float("nan"), "precision_lb": wilson_lower(k, m),
            "recall": k / max(1, int(good.sum())),
            "chi2_6": float(np.mean(d2[pub] <= chi2_quantile(0.95, 6))) if m else float("nan"),
            "chi2_planar": float(np.mean(d2p[pub] <= chi2_quantile(0.95, 3))) if m else float("nan"),
            "confidently_wrong": int(conf_wrong.sum()), "wrong_published": int((pub & ~good).sum())}


def default_covs(rows, refiner: str) -> np.ndarray:
    d = DefaultCovariance.for_refiner(refiner)
    return np.stack([d.apply(np.asarray(r["rawcov_vec"])) if r["rawcov_vec"] is not None else np.full((6, 6), np.nan)
                     for r in rows]) if rows else np.zeros((0, 6, 6))


def run_scene(model: Path, db: Path, scene, refiner: str, checks: tuple, device, max_frames=None,
              calibrated: bool = True, calib_frames: int | None = None) -> tuple[list[dict], dict | None]:
    """Cross-fit a calibration on the scene's map (``calibrated``) and localize its test split."""
    loc = Localizer.from_files(model, db, LocalizerConfig(refiner=refiner, checks=checks), device)
    cal_info = None
    if calibrated:
        cal, _ = calibrate(loc, [scene], "train", holdout="crossfit", progress=False, max_frames=calib_frames)
        loc.cfg = replace(loc.cfg, calibration=cal)
        cal_info = {k: cal.info[k] for k in ("fused", "published", "precision_lower_bound", "recall_good",
                                             "precision_reached", "recall_reached")} | {"threshold": cal.threshold,
                                                                                        "gamma": cal.inflation}
    else:
        loc.cfg = replace(loc.cfg, default_covariance=False)
    rows = evaluate(loc, [scene], "test", max_frames, progress=False)["rows"]
    return rows, cal_info


def _row_md(name: str, m: dict) -> str:
    return (f"| {name} | {m['published']}/{m['frames']} | {pct(m['precision'])} | {pct(m['precision_lb'])} | "
            f"{pct(m['recall'])} | {pct(m['chi2_6'])} | {pct(m['chi2_planar'])} | {m['confidently_wrong']} |")


HEAD = ("| scene | published | precision | 95 % lower bound | recall | χ²₆ inside | planar χ²₃ inside | "
        "confidently wrong |\n|---|---|---|---|---|---|---|---|")


def cmd_inflation(args) -> dict:
    """Raw covariances on the validation rooms: how far they understate, and the default fitted."""
    dev = torch.device("cpu")
    scenes = open_scenes(args.data, args.scenes)
    per = {r: [] for r in args.refiners}
    for sc in scenes:
        db = scene_database(args.model, sc, args.work, dev, DENSE if any(r in ("lm", "pnp+lm") for r in args.refiners)
                            else None)
        for ref in args.refiners:
            rows, _ = run_scene(args.model, db, sc, ref, (), dev, args.max_frames, calibrated=False)
            per[ref] += [dict(r, scene=sc.name, source=str(args.data)) for r in rows]
            log.info("%s %s: %d rows", sc.name, ref, len(rows))
    for data in args.maps:  # a real map: its own frames, cross-fitted (its test split is never read)
        for sc in open_scenes(data, None):
            db = scene_database(args.model, sc, args.work, dev, None)
            for ref in args.map_refiners:
                loc = Localizer.from_files(args.model, db, LocalizerConfig(refiner=ref, default_covariance=False), dev)
                rows, _ = crossfit(loc, [sc], "train", progress=False)
                per[ref] += [dict(r, scene=sc.name, source=str(data)) for r in rows]
                log.info("%s %s (cross-fit map): %d rows", sc.name, ref, len(rows))
    out, lines = {}, []
    for ref, rows in per.items():
        ok = _solved(rows)
        sub = [r for r, o in zip(rows, ok) if o]
        E = np.array([r["e6_vec"] for r in sub])
        C = np.stack([np.asarray(r["rawcov_vec"]) for r in sub])
        d, fit = fit_default(ref, E, C, groups_N=[r["source"] for r in sub])
        raw = metrics(rows, ok, np.stack([np.asarray(r["rawcov_vec"]) if o else np.eye(6) for r, o in zip(rows, ok)]))
        dflt = metrics(rows, ok, np.stack([d.apply(np.asarray(r["rawcov_vec"])) if o else np.eye(6)
                                           for r, o in zip(rows, ok)]))
        out[ref] = {"fit": fit, "raw": raw, "default": dflt, "by_source": {}}
        lines.append(f"| {ref} | all, {len(sub)} | {pct(raw['chi2_6'])} | {pct(dflt['chi2_6'])} | "
                     f"{pct(dflt['chi2_planar'])} | {d.g_t:.3g} | {d.f_t_m:.3f} | {d.g_r:.3g} | "
                     f"{np.degrees(d.f_r_rad):.2f} | {fit['median_sigma_t']:.3f} |")
        sources = sorted({r["source"] for r in rows})
        for src in sources if len(sources) > 1 else []:
            rs = [r for r in rows if r["source"] == src]
            o = _solved(rs)
            rw = metrics(rs, o, np.stack([np.asarray(r["rawcov_vec"]) if k else np.eye(6) for r, k in zip(rs, o)]))
            df = metrics(rs, o, np.stack([d.apply(np.asarray(r["rawcov_vec"])) if k else np.eye(6)
                                          for r, k in zip(rs, o)]))
            out[ref]["by_source"][src] = {"raw": rw, "default": df}
            lines.append(f"| {ref} | {src}, {int(o.sum())} | {pct(rw['chi2_6'])} | {pct(df['chi2_6'])} | "
                         f"{pct(df['chi2_planar'])} | | | | | |")
    md = "\n".join(["# The default covariance without a calibration", "",
                    f"Validation rooms {', '.join(sc.name for sc in scenes)}: map = training split, queries = test "
                    f"split ({args.max_frames or 'all'} per room)"
                    + (f"; and the maps of {', '.join(map(str, args.maps))}, their own training frames cross-fitted "
                       f"(refiners {', '.join(args.map_refiners)}; their test splits never read)" if args.maps else "")
                    + f". The fit reaches 95 % inside on each source. Model {args.model}. Written "
                    f"{time.strftime('%Y-%m-%d')}, commit {_commit()}, command in command.json.", "",
                    "| refiner | source, solved poses | raw: inside 95 % χ²₆ | default: χ²₆ | default: planar χ²₃ | g_t | "
                    "f_t (m) | g_r | f_r (°) | median σ_t (m) |", "|---|---|---|---|---|---|---|---|---|---|",
                    *lines, ""])
    _write(args.out, md, out, args)
    if args.write_defaults:
        payload = {"format": "reloc_ros.uncalibrated", "created": time.strftime("%Y-%m-%d"), "commit": _commit(),
                   "command": "python -m reloc_train.experiments.trust " + " ".join(sys.argv[1:]),
                   "scenes": [sc.name for sc in scenes], "maps": [str(m) for m in args.maps], "level": 0.95,
                   "refiners": {ref: {k: v["fit"][k] for k in ("g_t", "g_r", "f_t_m", "f_r_rad", "poses")}
                                for ref, v in out.items()}}
        atomic_write_text(DEFAULTS_FILE, json.dumps(payload, indent=1) + "\n")
    return out


def _scene_rows(args, scenes, settings: dict, dev, wrong_m: float) -> dict:
    res = {}
    for sc in scenes:
        db = scene_database(args.model, sc, args.work, dev, None)
        for name, (ref, checks) in settings.items():
            rows, cal = run_scene(args.model, db, sc, ref, checks, dev, args.max_frames,
                                  calib_frames=args.calib_frames)
            res.setdefault(name, {})[sc.name] = {"rows": rows, "cal": cal, "refiner": ref}
            m = metrics(rows, np.array([r["published"] for r in rows]), wrong_m=wrong_m)
            log.info("%s %s: %s", sc.name, name, {k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()})
    return res


def _tables(res: dict, wrong_m: float) -> tuple[str, dict]:
    md, summary = [], {}
    for name, per in res.items():
        md += [f"## {name}", "", "Calibrated (cross-fitted on the map):", "", HEAD]
        pooled_rows, pooled_pub, pooled_def = [], [], []
        summary[name] = {}
        for sc, v in per.items():
            rows = v["rows"]
            pub = np.array([r["published"] for r in rows], dtype=bool)
            m = metrics(rows, pub, wrong_m=wrong_m)
            u = metrics(rows, _solved(rows), default_covs(rows, v["refiner"]), wrong_m=wrong_m)
            summary[name][sc] = {"calibrated": m, "default": u, "calibration": v["cal"]}
            md.append(_row_md(sc, m))
            pooled_rows += rows
            pooled_pub.append(pub)
            pooled_def.append(default_covs(rows, v["refiner"]))
        pub = np.concatenate(pooled_pub)
        m = metrics(pooled_rows, pub, wrong_m=wrong_m)
        md.append(_row_md("**pooled**", m))
        md += ["", "Uncalibrated (every solved pose, the shipped default covariance):", "", HEAD]
        for sc, v in summary[name].items():
            md.append(_row_md(sc, v["default"]))
        u = metrics(pooled_rows, _solved(pooled_rows), np.concatenate(pooled_def), wrong_m=wrong_m)
        md += [_row_md("**pooled**", u), ""]
        summary[name]["pooled"] = {"calibrated": m, "default": u}
    return "\n".join(md), summary


def cmd_test(args) -> dict:
    dev = torch.device("cpu")
    scenes = open_scenes(args.data, args.scenes)
    settings = SETTINGS if args.checks is None else {
        "pnp" + "".join(f" + {c}" for c in args.checks): ("pnp", tuple(args.checks)), "none": ("none", ())}
    res = _scene_rows(args, scenes, settings, dev, 0.5)
    md, summary = _tables(res, 0.5)
    head = [f"# Trust on unseen scenes: {args.data}", "",
            f"Model {args.model}; map = each scene's training split, calibration cross-fitted on it "
            f"({args.calib_frames or 'all'} queries per scene); queries = the test split ({args.max_frames or 'all'} "
            "per scene). Confidently wrong: published, more than 0.5 m off, "
            f"position σ below 0.1 m. Written {time.strftime('%Y-%m-%d')}, commit {_commit()}.", ""]
    _write(args.out, "\n".join(head) + md, summary, args)
    _ledger(args, scenes, summary)
    return summary


def cmd_repeated(args) -> dict:
    """Choose the check's gate on ``--choose`` scenes; report check on/off on the others."""
    dev = torch.device("cpu")
    scenes = open_scenes(args.data, None)
    choose = [sc for sc in scenes if sc.name in args.choose]
    report = [sc for sc in scenes if sc.name not in args.choose]
    check = args.check
    # choice: the refined poses of the choice scenes, uncalibrated, the check's distance recorded
    rows = []
    for sc in choose:
        db = scene_database(args.model, sc, args.work, dev, None)
        r, _ = run_scene(args.model, db, sc, "pnp", (check,), dev, None, calibrated=False)
        rows += r
    val = np.array([r.get(f"check_{check}", np.nan) for r in rows], dtype=float)
    solved = np.array([bool(r["fused"]) for r in rows])
    good, wrong = solved & _good(rows), solved & ~_good(rows)
    attr, grid, below = GRIDS[check]
    choice = []
    for g in grid:
        keep = solved & ((val <= g) if below else (val >= g))
        choice.append({"gate": g, "wrong_kept": int((keep & wrong).sum()), "good_lost": int((good & ~keep).sum()),
                       "recall_drop": float((good & ~keep).sum() / max(1, good.sum()))})
    ok = [c for c in choice if c["recall_drop"] <= 0.05]
    # the fewest wrong poses kept; among equals the gate that stops the fewest poses
    best = min(ok, key=lambda c: (c["wrong_kept"], c["good_lost"], -c["gate"] if below else c["gate"]))
    log.info("choice of the %s gate: %s", check, choice)
    unit = CHECKS.get(check)
    setattr(unit, attr, float(best["gate"]))
    settings = {"pnp, no check": ("pnp", ()), f"pnp + {check} ({attr} {best['gate']})": ("pnp", (check,))}
    res = _scene_rows(args, report, settings, dev, 0.25)
    md, summary = _tables(res, 0.25)
    head = [f"# The repeated-structure family: check {check!r} on and off", "",
            f"Gate ({attr}) chosen on {', '.join(sc.name for sc in choose)} (refined poses, uncalibrated; the gate "
            "that keeps the fewest wrong poses with a recall drop of at most 5 points, then loses the fewest good "
            "ones):", "",
            f"| {attr} | wrong poses kept | good poses lost | recall drop |", "|---|---|---|---|",
            *[f"| {c['gate']} | {c['wrong_kept']} | {c['good_lost']} | {pct(c['recall_drop'])} |" for c in choice],
            "", f"Chosen: {best['gate']}. Reported on {', '.join(sc.name for sc in report)}; confidently wrong = "
            "published, more than 0.25 m off, position σ below 0.1 m. Model "
            f"{args.model}. Written {time.strftime('%Y-%m-%d')}, commit {_commit()}.", ""]
    _write(args.out, "\n".join(head) + md, {"choice": choice, "chosen": best, "report": summary}, args)
    return summary


def apply_calibration(rows: list[dict], cal) -> tuple[np.ndarray, np.ndarray]:
    """(published, covariances) of uncalibrated evaluation rows under calibration ``cal``."""
    ok = _solved(rows)
    pub, covs = np.zeros(len(rows), bool), np.tile(np.eye(6), (len(rows), 1, 1))
    for i, r in enumerate(rows):
        if ok[i] and r["signals_vec"] is not None:
            x = np.asarray(r["signals_vec"], dtype=float)
            if np.all(np.isfinite(x)):
                pub[i] = cal.confidence(x) >= cal.threshold
                covs[i] = cal.covariance(x, np.asarray(r["R_vec"]))
    return pub, covs


def cmd_validate(args) -> dict:
    """Choose the cross-fit folds and the precision target on the validation rooms: each
    scene's map cross-fitted both ways, each calibration fitted at each target and applied
    to the scene's test split (validation frames: no ledger)."""
    dev = torch.device("cpu")
    scenes = open_scenes(args.data, args.scenes)
    pooled: dict = {}
    for sc in scenes:
        db = scene_database(args.model, sc, args.work, dev, None)
        for name, (ref, checks) in SETTINGS.items():
            loc = Localizer.from_files(args.model, db, LocalizerConfig(refiner=ref, checks=checks), dev)
            test = evaluate(loc, [sc], "test", args.max_frames, progress=False)["rows"]
            for folds in ("block", "sequence"):
                cf, held = crossfit(loc, [sc], "train", max_frames=args.calib_frames, progress=False, folds=folds)
                for target in args.targets:
                    try:
                        cal, _ = fit_rows(loc, cf, [sc], "train", held, precision=target)
                    except ValueError as e:
                        log.info("%s %s %s %s: %s", sc.name, name, folds, target, e)
                        continue
                    pub, covs = apply_calibration(test, cal)
                    d = pooled.setdefault((name, folds, target), {"rows": [], "pub": [], "covs": [], "missed": 0})
                    d["rows"] += test
                    d["pub"].append(pub)
                    d["covs"].append(covs)
                    d["missed"] += int(not cal.target_met)
            log.info("%s %s done", sc.name, name)
    lines, out = [], {}
    for (name, folds, target), d in pooled.items():
        m = metrics(d["rows"], np.concatenate(d["pub"]), np.concatenate(d["covs"]))
        out[f"{name}/{folds}/{target}"] = {**m, "calibrations_missed": d["missed"]}
        lines.append(f"| {name} | {folds} | {target} | {m['published']}/{m['frames']} | {pct(m['precision'])} | "
                     f"{pct(m['precision_lb'])} | {pct(m['recall'])} | {pct(m['chi2_6'])} | {pct(m['chi2_planar'])} | "
                     f"{m['confidently_wrong']} | {d['missed']} |")
    md = "\n".join([
        "# Choosing the cross-fit folds and the precision target (validation rooms)", "",
        f"Rooms {', '.join(sc.name for sc in scenes)}; map = training split; calibration cross-fitted on it "
        f"({args.calib_frames or 'all'} queries per room); applied to the test split ({args.max_frames or 'all'} per "
        f"room). Written {time.strftime('%Y-%m-%d')}, commit {_commit()}.", "",
        "| setting | folds | precision target (bound) | published | precision | 95 % lower bound | recall | χ²₆ | "
        "planar χ²₃ | confidently wrong | calibrations that missed |", "|---|---|---|---|---|---|---|---|---|---|---|",
        *lines, ""])
    _write(args.out, md, out, args)
    return out


def _write(out: Path, md: str, data: dict, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "trust.md", md + "\n")
    atomic_write_text(out / "trust.json", json.dumps(data, indent=1, default=float) + "\n")
    atomic_write_text(out / "command.json", json.dumps(
        {"command": "python -m reloc_train.experiments.trust " + " ".join(sys.argv[1:]), "commit": _commit(),
         "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": "2-core CPU"}, indent=1) + "\n")
    print(md)


def _ledger(args, scenes, summary) -> None:
    line = dict.fromkeys(LEDGER_FIELDS, "")
    name = next(k for k in summary if k != "none")
    p = summary[name]["pooled"]["calibrated"]
    line.update(date=time.strftime("%Y-%m-%d %H:%M:%S"), commit=_commit(), recipe="trust:" + name.replace(" ", ""),
                data=str(args.data), scenes=" ".join(sc.name for sc in scenes), queries=p["frames"], out=str(args.out))
    with open(LEDGER, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=LEDGER_FIELDS).writerow(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("inflation", "validate", "test", "repeated"):
        p = sub.add_parser(name)
        p.add_argument("--data", type=Path, required=True)
        p.add_argument("--model", type=Path, default=GENERIC_MODEL)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--work", type=Path, default=ROOT / ".cache" / "trust")
        p.add_argument("--max-frames", type=int, help="test queries per scene")
        p.add_argument("--calib-frames", type=int, help="cross-fit queries per scene (evenly spaced in each block)")
        if name != "repeated":
            p.add_argument("--scenes", nargs="*")
        if name == "test":
            p.add_argument("--checks", nargs="*", help="publish checks of the pnp setting (default: verify, the "
                                                       "demo's)")
        if name == "inflation":
            p.add_argument("--refiners", nargs="*", default=["none", "pnp", "lm", "pnp+lm"])
            p.add_argument("--write-defaults", action="store_true", help="write reloc_ros/core/uncalibrated.json")
            p.add_argument("--maps", nargs="*", type=Path, default=[],
                           help="real maps whose own frames are cross-fitted too (test splits never read)")
            p.add_argument("--map-refiners", nargs="*", default=["none", "pnp"])
        if name == "validate":
            p.add_argument("--targets", nargs="*", type=float, default=[0.9, 0.95, 0.97, 0.99])
        if name == "repeated":
            p.add_argument("--choose", nargs=2, required=True)
            p.add_argument("--check", default="verify", choices=sorted(GRIDS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    {"inflation": cmd_inflation, "validate": cmd_validate, "test": cmd_test, "repeated": cmd_repeated}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
