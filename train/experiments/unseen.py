"""Relocalization in scenes the model never saw: the unseen-scene benchmark (not a test).

    python -m reloc_train.experiments.unseen --recipe generic --model models/generic/model.pt \\
        --data data/rooms52/test --out docs/results/unseen/generic_rooms52
    python -m reloc_train.experiments.unseen --recipe generic --model models/generic/model.pt \\
        --data ../shared/data/independent --out docs/results/unseen/generic_redkitchen
    python -m reloc_train.experiments.unseen --recipe finetune --model models/generic/model.pt ...
    python -m reloc_train.experiments.unseen --recipe per_scene ...

For every scene of ``--data`` the map is its training split and the queries its test split.
The recipe (:mod:`reloc_train.recipes`) says where each scene's model comes from: the given
model as it is (``generic``), that model fine-tuned on the scene's training split with the
epoch chosen on its last training sequence (``finetune``), or the per-scene recipe from
ImageNet (``per_scene``). Then a database of the map is built (keypoints for SIFT + PnP,
dense features for LM and DRO) and every query runs through the localizer once.

Per scene it reports:
- the map's coverage (oracle neighbour distance and angle, share within 0.5 m and 30°);
- retrieval recall@1/5/10 beside the oracle recall, and recall@1 of a frozen ImageNet
  EfficientNet-Lite0 GeM descriptor at the model's input size;
- retrieval-only, top1, consensus and triangulate, and each refiner from the same fused pose;
- regression from the oracle neighbour beside that neighbour's own pose (the regressor alone,
  retrieval aside);
- the PnP failures (SIFT + PnP not within 25 cm / 10° while the fused pose is not either) and
  how many of them LM or DRO brings within 25 cm / 10°.

The summary gives the per-scene ratios (top1 / retrieval-only, oracle regression / oracle
neighbour) and their means. Test scenes are read by this command only, and every run appends
one line (commit, config hash, model fingerprint, numbers) to ``docs/results/test_ledger.csv``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.device import resolve_device
from reloc_ros.core.featuremetric import DenseConfig
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.geometry import pose_errors
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import load_model
from reloc_ros.core.pnp import PnPConfig
from reloc_ros.data.coverage import oracle_neighbours
from reloc_ros.data.sevenscenes import Scene, open_scenes, read_color
from reloc_ros.eval.evaluate import baseline_localizers, evaluate, query_frames, write
from reloc_ros.eval.report import fmt, markdown_table, pct, write_summary
from reloc_ros.core.files import atomic_write_text
from reloc_ros.mapping.database import build_database
from reloc_train.dataset import FrameSet, ImageStore
from reloc_train.experiments.recall import frozen_model
from reloc_train.recipes import RECIPES, scene_training_config
from reloc_train.train import Trainer
from reloc_train.validate import encode_store, recall_at

log = logging.getLogger("reloc_train.experiments.unseen")

__all__ = ["DEFAULT_CONF", "main", "run", "scene_model", "oracle_regression", "pnp_recovery", "frozen_recall",
           "append_ledger", "LEDGER"]

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "docs" / "results" / "test_ledger.csv"
#: A pose is good within these limits (the issue's "within 25 cm / 10°").
GOOD_T_M, GOOD_R_DEG = 0.25, 10.0

DEFAULT_CONF = {
    "recipe": "generic",
    "top_k": 5,
    "fusion": "consensus",
    "refiners": ["pnp", "lm"],  # rows refined from the same fused pose; dro with a DRO file
    "max_frames": None,         # queries per scene (evenly spaced); None: the whole test split
    "split": "test",
    "dense": {"levels": [3, 2], "steps": [1, 2]},  # LM/DRO features (EfficientNet-Lite0 stages, coarse to fine)
}

LEDGER_FIELDS = ["date", "commit", "recipe", "data", "scenes", "queries", "config_hash", "model_fingerprint",
                 "retrieval_t_m", "retrieval_r_deg", "top1_t_m", "top1_r_deg", "top1_ratio_t", "top1_ratio_r",
                 "consensus_t_m", "consensus_r_deg", "oracle_regression_ratio_t", "oracle_regression_ratio_r",
                 "recall5_over_oracle", "pnp_failures", "recovered", "out"]


def scene_model(recipe: str, model: Path | None, scene: Scene, work: Path, device: str) -> Path:
    """The model file a recipe gives the scene (trained into ``work`` when it trains; reused
    when that run's config is unchanged)."""
    r = RECIPES[recipe]
    if not r.trains:
        return Path(model)
    run = work / f"model_{recipe}_{scene.name}"
    cfg = scene_training_config(r, scene.root, run, init=model, device=device)
    key = hashlib.sha256(json.dumps(cfg.as_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
    if (run / "model.pt").is_file() and (run / "stamp").is_file() and (run / "stamp").read_text() == key:
        log.info("%s: reusing %s", scene.name, run / "model.pt")
        return run / "model.pt"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.time()
    Trainer(cfg).fit()
    (run / "stamp").write_text(key)
    log.info("%s: %s model trained in %.0f s", scene.name, recipe, time.time() - t0)
    return run / "model.pt"


def scene_database(model_path: Path, scene: Scene, work: Path, device: torch.device, dense: dict | None) -> Path:
    """The scene's training split as a database of that model, with SIFT keypoints at the
    scene's resolution (and dense features for LM and DRO: ``dense``, DenseConfig fields);
    cached in ``work`` by model and settings."""
    net, info = load_model(model_path, device)
    intr = scene.color_intrinsics
    kp = PnPConfig(image_size=(intr.width, intr.height))
    dn = DenseConfig(levels=tuple(dense["levels"]), steps=tuple(dense["steps"])) if dense else None
    key = hashlib.sha256(json.dumps([info.fingerprint, str(scene.root.resolve()), kp.as_dict(),
                                     dn.as_dict() if dn else None]).encode()).hexdigest()[:12]
    path = work / f"db_{scene.name}_{key}.pt"
    if not path.is_file():
        db = build_database(net, info, [scene], "train", device, keypoints=kp, dense=dn, progress=False)
        db.save(path)
    return path


@torch.no_grad()
def oracle_regression(loc: Localizer, scene: Scene, frames) -> dict:
    """Regression from each query's oracle neighbour (the map frame nearest by d + r/30°)
    beside that neighbour's own pose: medians and per-query errors."""
    T_q = scene.poses(frames)
    rows = loc.scene_rows[loc.db.scene_names.index(scene.name)].numpy()
    idx, _, _, _ = oracle_neighbours(loc.poses[rows], T_q)
    top1 = replace(loc.cfg.fusion, method="top1")
    nb_t, nb_r, rg_t, rg_r = [], [], [], []
    for fr, T_gt, i in zip(frames, T_q, rows[idx]):
        h = loc.hypothesize(read_color(fr.color_path), neighbours=np.array([i]))
        r = loc.fuse(h, top1)
        t, a = pose_errors(loc.poses[i], T_gt)
        nb_t.append(float(t))
        nb_r.append(float(a))
        t, a = pose_errors(r.pose, T_gt) if r.ok else (np.nan, np.nan)
        rg_t.append(float(t))
        rg_r.append(float(a))
    med = lambda v: float(np.nanmedian(v)) if len(v) else float("nan")  # noqa: E731
    return {"neighbour_t_m": med(nb_t), "neighbour_r_deg": med(nb_r), "regressed_t_m": med(rg_t),
            "regressed_r_deg": med(rg_r)}


@functools.lru_cache(maxsize=2)
def _frozen(size_hw: tuple[int, int], device: torch.device):
    return frozen_model("efficientnet_lite0", size_hw).to(device)


def frozen_recall(scene: Scene, frames, size_hw: tuple[int, int], device: torch.device) -> float:
    """recall@1 of a frozen ImageNet EfficientNet-Lite0 GeM descriptor (map: the training split)."""
    model = _frozen(tuple(size_hw), device)
    tr = FrameSet.from_scenes([scene], "train")
    ids = {fr.id for fr in frames}
    te = FrameSet.from_scenes([scene], "test")
    q = np.array([i for i, fr in enumerate(te.frames) if fr.id in ids])
    _, d_db = encode_store(model, ImageStore(tr, size_hw), np.arange(len(tr)), device)
    _, d_q = encode_store(model, ImageStore(te, size_hw), q, device)
    return recall_at(d_db.cpu(), tr.poses, d_q.cpu(), te.poses[q], (1,))["recall_at_1"]


def _good(t: float, r: float) -> bool:
    return bool(np.isfinite(t) and t <= GOOD_T_M and r <= GOOD_R_DEG)


def pnp_recovery(rows: list[dict], fused: str) -> dict:
    """PnP failures (``sift+pnp`` not within 25 cm / 10°, the fused pose not either) and how
    many of them each dense refiner, and either, brings within 25 cm / 10°."""
    fails = [r for r in rows if "sift+pnp_t_m" in r and not _good(r["sift+pnp_t_m"], r["sift+pnp_r_deg"])
             and not _good(r[f"{fused}_t_m"], r[f"{fused}_r_deg"])]
    out = {"failures": len(fails)}
    rec_any = np.zeros(len(fails), bool)
    for name in ("fused+lm", "fused+dro"):
        if rows and f"{name}_t_m" in rows[0]:
            ok = np.array([_good(r[f"{name}_t_m"], r[f"{name}_r_deg"]) for r in fails], dtype=bool)
            out[name] = int(ok.sum())
            rec_any |= ok
    out["recovered"] = int(rec_any.sum())
    return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b and np.isfinite(a) and np.isfinite(b) else float("nan")


def scene_result(res: dict, orc: dict, gem1: float, fused: str) -> dict:
    """The numbers of one scene's run that the summary and the ledger keep."""
    s = res["summary"]
    cov = res["coverage"][0] if res["coverage"] else {}
    out = {"queries": res["queries"], "coverage": cov, "recall": res["recall"], "oracle_recall": res["oracle_recall"],
           "frozen_gem_recall_at_1": gem1, "oracle": orc, "pnp": pnp_recovery(res["rows"], fused),
           "methods": {m: {k: s[m][k] for k in ("median_t_m", "median_r_deg", "rejection_rate")}
                       for m in res["methods"]}}
    ro, t1 = s["retrieval-only"], s["top1"]
    out["ratio"] = {"top1_t": _ratio(t1["median_t_m"], ro["median_t_m"]),
                    "top1_r": _ratio(t1["median_r_deg"], ro["median_r_deg"]),
                    "fused_t": _ratio(s[fused]["median_t_m"], t1["median_t_m"]),
                    "fused_r": _ratio(s[fused]["median_r_deg"], t1["median_r_deg"]),
                    "oracle_t": _ratio(orc["regressed_t_m"], orc["neighbour_t_m"]),
                    "oracle_r": _ratio(orc["regressed_r_deg"], orc["neighbour_r_deg"]),
                    "recall5_over_oracle": _ratio(res["recall"][5], res["oracle_recall"])}
    return out


def run(conf: dict, model: Path | None, data: Path, out: Path, scenes: list[str] | None = None,
        work: Path | None = None, dro: Path | None = None, device: str = "auto", progress: bool = True) -> dict:
    """Evaluate a recipe on every scene of ``data``; writes per-scene reports and the summary
    into ``out`` and returns the summary (see the module docstring)."""
    conf = {**DEFAULT_CONF, **conf}
    work = Path(work or out / "work")
    work.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    refiners = [r for r in conf["refiners"] if r != "dro" or dro is not None]
    per_scene, fingerprints = {}, []
    for sc in open_scenes(data, scenes):
        t0 = time.time()
        mpath = scene_model(conf["recipe"], model, sc, work, device)
        dbp = scene_database(mpath, sc, work, dev, conf["dense"] if any(r in ("lm", "dro") for r in refiners) else None)
        lcfg = LocalizerConfig(top_k=conf["top_k"], fusion=FusionConfig(method=conf["fusion"]), refiner="none")
        loc = Localizer.from_files(mpath, dbp, lcfg, dev)
        fingerprints.append(loc.model_info.fingerprint)
        also = baseline_localizers(loc, tuple(refiners), dro_path=dro)
        loc.warmup()
        res = evaluate(loc, [sc], conf["split"], conf["max_frames"], progress=progress, also=also)
        frames = query_frames(sc, conf["split"], conf["max_frames"])
        orc = oracle_regression(loc, sc, frames)
        gem1 = frozen_recall(sc, frames, tuple(loc.model.cfg.input_size), dev)
        write(res, out / sc.name, f"{conf['recipe']} model on unseen {sc.name} ({conf['split']}), top-{conf['top_k']}")
        per_scene[sc.name] = scene_result(res, orc, gem1, conf["fusion"]) | {"model": str(mpath),
                                                                          "database": str(dbp),
                                                                          "seconds": round(time.time() - t0, 1)}
        log.info("%s: %s", sc.name, _scene_line(per_scene[sc.name]))
    summary = summarize(per_scene)
    cfg_hash = hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:12]
    fp = fingerprints[0] if len(set(fingerprints)) == 1 else \
        "per-scene:" + hashlib.sha256("".join(fingerprints).encode()).hexdigest()[:16]
    result = {"conf": conf, "config_hash": cfg_hash, "model": str(model) if model else None,
              "model_fingerprint": fp, "data": str(data), "dro": str(dro) if dro else None,
              "scenes": per_scene, "summary": summary, "commit": _commit(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    md = report(result)
    write_summary(out, md, result, stem="unseen")
    return result


def _scene_line(r: dict) -> str:
    m = r["methods"]
    return (f"retrieval-only {m['retrieval-only']['median_t_m']:.3f} m / {m['retrieval-only']['median_r_deg']:.1f}°, "
            f"top1 {m['top1']['median_t_m']:.3f} m / {m['top1']['median_r_deg']:.1f}° "
            f"(×{r['ratio']['top1_t']:.2f} / ×{r['ratio']['top1_r']:.2f}), recall@5 {pct(r['recall'][5])} "
            f"of oracle {pct(r['oracle_recall'])}")


def summarize(per_scene: dict) -> dict:
    """Means over scenes of the per-scene medians and ratios, the worst scene's ratios, and the
    pooled PnP failures."""
    if not per_scene:
        return {}
    vals = list(per_scene.values())

    def mean(f):
        x = np.array([f(v) for v in vals], float)
        return float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")

    def worst(f):
        x = np.array([f(v) for v in vals], float)
        return float(np.max(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")

    methods = vals[0]["methods"].keys()
    out = {"scenes": len(vals), "queries": int(sum(v["queries"] for v in vals)),
           "methods": {m: {"median_t_m": mean(lambda v: v["methods"][m]["median_t_m"]),
                           "median_r_deg": mean(lambda v: v["methods"][m]["median_r_deg"])} for m in methods},
           "ratio_mean": {k: mean(lambda v: v["ratio"][k]) for k in vals[0]["ratio"]},
           "ratio_worst": {k: worst(lambda v: v["ratio"][k]) for k in vals[0]["ratio"]},
           "recall": {k: mean(lambda v: v["recall"][k]) for k in vals[0]["recall"]},
           "oracle_recall": mean(lambda v: v["oracle_recall"]),
           "frozen_gem_recall_at_1": mean(lambda v: v["frozen_gem_recall_at_1"])}
    out["pnp"] = {k: int(sum(v["pnp"].get(k, 0) for v in vals)) for k in ("failures", "fused+lm", "fused+dro",
                                                                           "recovered")
                  if k in ("failures", "recovered") or any(k in v["pnp"] for v in vals)}
    return out


def report(result: dict) -> str:
    """The Markdown report: one row per scene, then the means."""
    per, s = result["scenes"], result["summary"]
    fused = result["conf"]["fusion"]
    extra = [m for m in next(iter(per.values()))["methods"] if m not in ("retrieval-only", "top1", "consensus",
                                                                       "triangulate")] if per else []

    def tr(m):
        return f"{fmt(m['median_t_m'])} / {fmt(m['median_r_deg'], '.1f')}"

    head = ["scene", "coverage (median, ≤0.5 m/30°)", "recall@1/5/10 (oracle; frozen GeM @1)", "retrieval-only",
            "top1", "ratio t / r", "consensus", "triangulate", "oracle nb → regressed"] + extra + ["PnP fails → recovered"]
    rows = []
    for name, r in per.items():
        c, m, o, p = r["coverage"], r["methods"], r["oracle"], r["pnp"]
        rows.append([name, f"{c.get('median_d_m', float('nan')):.2f} m / {c.get('median_r_deg', float('nan')):.1f}°, "
                           f"{pct(c.get('within_50cm_30deg', float('nan')))}",
                     "/".join(pct(r["recall"][k]) for k in (1, 5, 10)) + f" ({pct(r['oracle_recall'])}; "
                     f"{pct(r['frozen_gem_recall_at_1'])})", tr(m["retrieval-only"]), tr(m["top1"]),
                     f"{r['ratio']['top1_t']:.2f} / {r['ratio']['top1_r']:.2f}", tr(m["consensus"]), tr(m["triangulate"]),
                     f"{fmt(o['neighbour_t_m'])} / {fmt(o['neighbour_r_deg'], '.1f')} → {fmt(o['regressed_t_m'])} / "
                     f"{fmt(o['regressed_r_deg'], '.1f')}"] + [tr(m[e]) for e in extra]
                    + [_recovered(p)])
    if s:
        rm, rw = s["ratio_mean"], s["ratio_worst"]
        rows.append(["**mean**", "", "/".join(pct(s["recall"][k]) for k in (1, 5, 10))
                     + f" ({pct(s['oracle_recall'])}; {pct(s['frozen_gem_recall_at_1'])})",
                     tr(s["methods"]["retrieval-only"]), tr(s["methods"]["top1"]),
                     f"**{rm['top1_t']:.2f} / {rm['top1_r']:.2f}**", tr(s["methods"]["consensus"]),
                     tr(s["methods"]["triangulate"]), f"ratio {rm['oracle_t']:.2f} / {rm['oracle_r']:.2f}"]
                    + [tr(s["methods"][e]) for e in extra] + [_recovered(s["pnp"])])
    trains = RECIPES[result["conf"]["recipe"]].trains
    what = (f"one model per scene ({result['model_fingerprint'][:26]})"
            + (f", each fine-tuned from {result['model']}" if result["model"] else "")) if trains else \
        f"model {result['model']} (fingerprint {result['model_fingerprint'][:16]})"
    notes = [f"Recipe {result['conf']['recipe']!r}, {what}, data {result['data']}, commit {result['commit']}, "
             f"{s.get('queries', 0)} queries; fusion {fused}, top-{result['conf']['top_k']}.",
             "Medians in m / °. Ratio: top1 / retrieval-only per scene (mean over scenes in bold; worst scene "
             + (f"{rw['top1_t']:.2f} / {rw['top1_r']:.2f}" if s else "-") + "). Oracle nb → regressed: the oracle "
             "neighbour's own pose, then the regression from it.",
             (f"Fusion ({fused}) / top1: {rm['fused_t']:.2f} / {rm['fused_r']:.2f}. recall@5 / oracle: "
              f"{rm['recall5_over_oracle']:.2f}. PnP failures (fused pose also outside 25 cm / 10°): "
              f"{s['pnp']['failures']}" + "".join(f"; {n} brings {s['pnp'][k]} within 25 cm / 10°"
                                                 for k, n in (("fused+lm", "LM"), ("fused+dro", "DRO"))
                                                 if k in s["pnp"])
              + ("" if any(k in s["pnp"] for k in ("fused+lm", "fused+dro")) else " (no LM or DRO row)")
              + ".") if s else ""]
    return markdown_table(head, rows, f"Unseen scenes: {result['conf']['recipe']} recipe", notes)


def _recovered(p: dict) -> str:
    """'failures → recovered', or '→ –' when no LM or DRO row ran."""
    ran = any(k in p for k in ("fused+lm", "fused+dro"))
    return f"{p['failures']} → {p['recovered'] if ran else '–'}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append_ledger(result: dict, out: Path, ledger: Path = LEDGER) -> dict:
    """Append the run's line to the test ledger (rewritten atomically); returns the line."""
    s = result["summary"]
    m = s["methods"]
    line = {"date": result["date"], "commit": result["commit"], "recipe": result["conf"]["recipe"],
            "data": result["data"], "scenes": " ".join(result["scenes"]), "queries": s["queries"],
            "config_hash": result["config_hash"], "model_fingerprint": result["model_fingerprint"][:24],
            "retrieval_t_m": m["retrieval-only"]["median_t_m"], "retrieval_r_deg": m["retrieval-only"]["median_r_deg"],
            "top1_t_m": m["top1"]["median_t_m"], "top1_r_deg": m["top1"]["median_r_deg"],
            "top1_ratio_t": s["ratio_mean"]["top1_t"], "top1_ratio_r": s["ratio_mean"]["top1_r"],
            "consensus_t_m": m["consensus"]["median_t_m"], "consensus_r_deg": m["consensus"]["median_r_deg"],
            "oracle_regression_ratio_t": s["ratio_mean"]["oracle_t"],
            "oracle_regression_ratio_r": s["ratio_mean"]["oracle_r"],
            "recall5_over_oracle": s["ratio_mean"]["recall5_over_oracle"],
            "pnp_failures": s["pnp"]["failures"], "recovered": s["pnp"]["recovered"], "out": str(out)}
    line = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in line.items()}
    old = ledger.read_text() if ledger.is_file() else ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, LEDGER_FIELDS, lineterminator="\n")
    if not old:
        w.writeheader()
    w.writerow(line)
    atomic_write_text(ledger, old + buf.getvalue())
    return line


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description="Relocalization in unseen scenes: generic, fine-tuned or per-scene "
                                             "models against retrieval, the oracle and the refiners")
    ap.add_argument("--recipe", default="generic", choices=sorted(RECIPES))
    ap.add_argument("--model", type=Path, help="the model (generic), or the one to fine-tune (finetune)")
    ap.add_argument("--data", required=True, type=Path, help="a scene folder or a root of unseen scenes")
    ap.add_argument("--scenes", nargs="*", help="only these scenes of --data")
    ap.add_argument("--refiners", nargs="*", default=DEFAULT_CONF["refiners"], help="refiners reported (pnp lm dro)")
    ap.add_argument("--dro", type=Path, help="the DRO file (for the dro row)")
    ap.add_argument("--max-frames", type=int, help="queries per scene (default: the whole test split)")
    ap.add_argument("--top-k", type=int, default=DEFAULT_CONF["top_k"])
    ap.add_argument("--work", type=Path, help="cache of per-scene models and databases (default OUT/work)")
    ap.add_argument("--ledger", type=Path, default=LEDGER, help="the test ledger the run appends to")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    if args.recipe != "per_scene" and args.model is None:
        ap.error(f"--recipe {args.recipe} needs --model")
    conf = {"recipe": args.recipe, "top_k": args.top_k, "refiners": list(args.refiners), "max_frames": args.max_frames}
    result = run(conf, args.model, args.data, args.out, args.scenes, args.work, args.dro, args.device)
    line = append_ledger(result, args.out, args.ledger)
    print(report(result))
    print(f"written to {args.out}/ (unseen.md, unseen.json, one folder per scene); ledger line appended to "
          f"{args.ledger} ({line['commit']}, config {line['config_hash']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
