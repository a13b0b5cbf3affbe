"""Refinement on a real RGB-D scene: matchers, PnP, LM and the chain, chosen on the map only.

    python -m reloc_train.experiments.realscene validate --scene data/redkitchen_rgbd \\
        --model models/generic/model.pt --out docs/results/realscene/validation
    python -m reloc_train.experiments.realscene test --scene data/redkitchen_rgbd \\
        --model models/generic/model.pt --choice docs/results/realscene/validation/choice.json \\
        --out docs/results/realscene/test

``validate`` reads the training split only: each training sequence (a time block) in turn is
the queries, and a database of the other training sequences the map (leave-one-block-out).
Every query is encoded, retrieved and fused once; each matcher's PnP (:mod:`reloc_ros.core.matchers`)
runs from the same retrieved frames, and feature-metric LM and the PnP-then-LM chain from the
same fused pose. It writes the per-matcher table, the blur rule (skip blurred queries or refine
them anyway, whichever scores better) and ``choice.json``: the matcher, PnP settings and blur
threshold that the criterion picks. The criterion is the median position error over all
queries, where a query PnP leaves unsolved is scored by its fused pose (the issue's target
measure), then the share within 5 cm / 5°.

``test`` builds the map from the whole training split, fits the publish calibration of the
chosen chain on the last training sequence (a database without it), and runs the test split
once, every stage on the same queries: retrieval-only, top1, consensus, triangulate, each
matcher + PnP, LM, the chain, and the calibrated publish decision. Each run appends a line to
``docs/results/test_ledger.csv``.

Queries are RGB only: the query frames' depth is never read; their poses only score.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.device import resolve_device
from reloc_ros.core.featuremetric import DenseConfig
from reloc_ros.core.files import atomic_write_text
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import load_model
from reloc_ros.core.pnp import PnPConfig, sharpness
from reloc_ros.data.sevenscenes import Scene, open_scenes, read_color
from reloc_ros.eval.calibrate import calibrate
from reloc_ros.eval.evaluate import evaluate, query_frames
from reloc_ros.eval.report import markdown_table
from reloc_ros.mapping.database import build_database
from reloc_train.experiments.unseen import LEDGER, LEDGER_FIELDS, _commit

log = logging.getLogger("reloc_train.experiments.realscene")

__all__ = ["MATCHER_CONFIGS", "score_rows", "recovery", "choose", "validate", "test", "main"]

#: The PnP settings compared: name -> PnPConfig fields; ``width`` is the image width keypoints
#: are extracted at (at most the scene's own, the aspect kept).
MATCHER_CONFIGS = {
    "sift-320": {"matcher": "sift", "width": 320, "max_keypoints": 300},
    "sift-640": {"matcher": "sift", "width": 640, "max_keypoints": 600, "query_keypoints": 1200},
    "sift-640-mutual": {"matcher": "sift", "width": 640, "max_keypoints": 600, "query_keypoints": 1200,
                        "mutual": True},
    "sift-640-covis": {"matcher": "sift", "width": 640, "max_keypoints": 600, "query_keypoints": 1200,
                       "covisible": 3},
    "xfeat-640": {"matcher": "xfeat", "width": 640, "max_keypoints": 600, "query_keypoints": 1200},
    "xfeat+lighterglue-640": {"matcher": "xfeat+lighterglue", "width": 640, "max_keypoints": 600,
                              "query_keypoints": 1200},
    "xfeat-640-covis": {"matcher": "xfeat", "width": 640, "max_keypoints": 600, "query_keypoints": 1200,
                        "covisible": 3},
    "xfeat+lighterglue-640-covis": {"matcher": "xfeat+lighterglue", "width": 640, "max_keypoints": 600,
                                    "query_keypoints": 1200, "covisible": 3},
}
#: The issue's limits: a setting must stay within them on validation to be chosen (then the
#: lowest median wins); when none does, the lowest median wins outright.
MAX_UNSOLVED, MAX_WRONG = 0.10, 0.02
GOOD_T_M, GOOD_R_DEG = 0.05, 5.0
WRONG_T_M, WRONG_R_DEG = 0.25, 10.0
DENSE = DenseConfig(levels=(3, 2), steps=(1, 2))


def pnp_config(name: str, scene: Scene, configs: dict = MATCHER_CONFIGS) -> PnPConfig:
    c = dict(configs[name])
    w, h = scene.color_intrinsics.width, scene.color_intrinsics.height
    s = min(1.0, c.pop("width") / w)  # never above the scene's own resolution
    return PnPConfig(image_size=(int(round(w * s)), int(round(h * s))), **c)


def _keypoint_db(base, scene, split, cfg: PnPConfig):
    """``base`` (a database of the same frames) with keypoints of ``cfg`` instead of its own."""
    from reloc_ros.mapping.database import scene_keypoints  # lazy: one helper of the builder
    from reloc_ros.core.pnp import KeypointSet  # lazy: as above

    kp = KeypointSet.pack(scene_keypoints(scene, scene.frames(split), cfg, progress=False), cfg)
    return replace(base, keypoints=kp)


def localizers(model, info, scene: Scene, split, names, device, fusion: str = "consensus", top_k: int = 5,
               configs: dict = MATCHER_CONFIGS):
    """{row: Localizer} over databases of the same frames: one per PnP setting, LM and the chain
    (of the first setting's matcher) on the dense database."""
    t0 = time.time()
    base = build_database(model, info, [scene], split, device, keypoints=pnp_config(names[0], scene, configs), dense=DENSE,
                          progress=False)
    cfg0 = LocalizerConfig(top_k=top_k)
    cfg0 = replace(cfg0, fusion=replace(cfg0.fusion, method=fusion))
    out = {"chain": Localizer(model, base, replace(cfg0, refiner="pnp+lm"), device, model_info=info),
           "lm": Localizer(model, base, replace(cfg0, refiner="lm"), device, model_info=info)}
    for n in names:
        db = base if n == names[0] else _keypoint_db(base, scene, split, pnp_config(n, scene, configs))
        out[n] = Localizer(model, db, replace(cfg0, refiner="pnp", pnp=pnp_config(n, scene, configs)), device,
                           model_info=info)
    for n, lc in out.items():  # each setting its own report row
        lc.refiner.row = n
    log.info("databases of %s (%d frames) in %.0f s", split, len(base), time.time() - t0)
    return out


def run_queries(locs: dict, main: str, scene: Scene, split, max_frames=None) -> list[dict]:
    """Per-query rows: every stage's errors (NaN: no pose), the PnP stage's extras and the sharpness."""
    loc = locs[main]
    also = {n: lc for n, lc in locs.items() if n != main}
    res = evaluate(loc, [scene], split, max_frames, progress=False, also=also)
    frames = query_frames(scene, split, max_frames)
    rows = res["rows"]
    for r, fr in zip(rows, frames):
        r["sharpness"] = sharpness(read_color(fr.color_path))
    return rows, res


def score_rows(rows: list[dict], stage: str, fused: str = "consensus", skip_below: float = 0.0) -> dict:
    """The issue's measures for one stage over all queries: median t / r where an unsolved
    query (no pose, or sharpness below ``skip_below``) is scored by its fused pose; the share
    within 5 cm / 5°; the unsolved share; the share solved but more than 25 cm / 10° off; ms."""
    t, r, solved, ms = [], [], [], []
    for x in rows:
        ok = np.isfinite(x.get(f"{stage}_t_m", np.nan)) and x["sharpness"] >= skip_below
        solved.append(ok)
        key = stage if ok else fused
        t.append(x.get(f"{key}_t_m", np.nan))
        r.append(x.get(f"{key}_r_deg", np.nan))
        if np.isfinite(x.get(f"{stage}_ms", np.nan)):
            ms.append(x[f"{stage}_ms"])
    t, r, solved = np.nan_to_num(t, nan=np.inf), np.nan_to_num(r, nan=np.inf), np.array(solved)
    wrong = solved & ((t > WRONG_T_M) | (r > WRONG_R_DEG))
    return {"queries": len(rows), "median_t_m": float(np.median(t)), "median_r_deg": float(np.median(r)),
            "within_5cm_5deg": float(np.mean((t <= GOOD_T_M) & (r <= GOOD_R_DEG))),
            "unsolved": float(1 - solved.mean()), "wrong": float(wrong.mean()),
            "ms": float(np.median(ms)) if ms else float("nan")}


def recovery(rows: list[dict], pnp: str) -> dict:
    """What LM recovers of the queries PnP (setting ``pnp``) leaves unsolved: from the fused
    pose (the ``lm`` row) and, in the chain, from PnP's best partial pose where RANSAC found one."""
    fail = [x for x in rows if not np.isfinite(x.get(f"{pnp}_t_m", np.nan))]

    def good(x, stage, t, r):
        return bool(x.get(f"{stage}_t_m", np.inf) <= t and x.get(f"{stage}_r_deg", np.inf) <= r)

    part = [x for x in fail if x.get("chain_start") == "partial"]
    return {"pnp_failures": len(fail), "with_partial": len(part),
            "fused_good_25cm": sum(good(x, "consensus", WRONG_T_M, WRONG_R_DEG) for x in fail),
            "lm_from_fused_25cm": sum(good(x, "lm", WRONG_T_M, WRONG_R_DEG) for x in fail),
            "lm_from_fused_5cm": sum(good(x, "lm", GOOD_T_M, GOOD_R_DEG) for x in fail),
            "chain_25cm": sum(good(x, "chain", WRONG_T_M, WRONG_R_DEG) for x in fail),
            "chain_5cm": sum(good(x, "chain", GOOD_T_M, GOOD_R_DEG) for x in fail),
            "chain_from_partial_25cm": sum(good(x, "chain", WRONG_T_M, WRONG_R_DEG) for x in part),
            "lm_from_fused_on_partial_25cm": sum(good(x, "lm", WRONG_T_M, WRONG_R_DEG) for x in part)}


def _recovery_md(rec: dict) -> str:
    return (f"PnP failures: {rec['pnp_failures']} ({rec['with_partial']} with a partial RANSAC pose). Within "
            f"25 cm / 10° of them: the fused pose {rec['fused_good_25cm']}, LM from the fused pose "
            f"{rec['lm_from_fused_25cm']} ({rec['lm_from_fused_5cm']} within 5 cm / 5°), the chain "
            f"{rec['chain_25cm']} ({rec['chain_5cm']} within 5 cm / 5°). On the failures with a partial pose: "
            f"LM from the partial pose {rec['chain_from_partial_25cm']}, from the fused pose "
            f"{rec['lm_from_fused_on_partial_25cm']}.\n")


def _table(scores: dict, title: str) -> str:
    head = ["stage", "median t (cm)", "median r (°)", "≤ 5 cm, 5°", "unsolved", "solved, > 25 cm / 10°", "ms"]
    body = [[k, f"{100 * s['median_t_m']:.1f}", f"{s['median_r_deg']:.2f}", f"{100 * s['within_5cm_5deg']:.1f} %",
             f"{100 * s['unsolved']:.1f} %", f"{100 * s['wrong']:.1f} %", f"{s['ms']:.0f}"] for k, s in scores.items()]
    return f"### {title}\n\n" + markdown_table(head, body) + "\n"


def choose(scores: dict, names) -> str:
    """The setting with the lowest median among those within :data:`MAX_UNSOLVED` and
    :data:`MAX_WRONG` (all of them when none is), ties broken by the share within 5 cm / 5°."""
    ok = [n for n in names if scores[n]["unsolved"] <= MAX_UNSOLVED and scores[n]["wrong"] <= MAX_WRONG]
    return min(ok or list(names), key=lambda n: (scores[n]["median_t_m"], -scores[n]["within_5cm_5deg"]))


def validate(model_path: Path, scene: Scene, out: Path, names=tuple(MATCHER_CONFIGS), stride: int = 2,
             device: str = "cpu", merge=()) -> dict:
    """Leave-one-training-block-out over ``scene``'s training split (see the module docstring)."""
    dev = resolve_device(device)
    model, info = load_model(model_path, dev)
    rows = []
    blocks = scene.sequences("train")
    for b in blocks:
        locs = localizers(model, info, scene, [s for s in blocks if s != b], list(names), dev)
        frames = scene.frames([b])[::stride]
        rr, _ = run_queries(locs, names[0], scene, [b], max_frames=len(frames))
        for x in rr:
            x["block"] = b
        rows += rr
        log.info("block %d: %d queries", b, len(rr))
    stages = ["retrieval-only", "top1", "consensus", *names, "lm", "chain"]
    scores = {s: score_rows(rows, s) for s in stages}
    pnp = list(names)
    for other in merge:  # PnP settings scored by earlier validation runs on the same queries
        prev = json.loads((Path(other) / "scores.json").read_text())["stages"]
        for n, v in prev.items():
            if n in MATCHER_CONFIGS and n not in pnp:
                pnp.append(n)
                scores[n] = {**v, "from": str(other)}
    best = choose(scores, pnp)
    sharp = np.array([x["sharpness"] for x in rows])
    gated = best if best in names else choose(scores, names)  # the blur rule needs this run's rows
    blur = {"refine anyway": score_rows(rows, gated)}
    for q in (5, 10, 20):
        tau = float(np.percentile(sharp, q))
        blur[f"skip below {tau:.0f} (p{q})"] = {**score_rows(rows, gated, skip_below=tau), "tau": tau}
    blur_choice = min(blur, key=lambda k: (blur[k]["median_t_m"], blur[k]["wrong"]))
    tau = float(blur[blur_choice].get("tau", 0.0))
    choice = {"matcher_config": best, "pnp": {**pnp_config(best, scene).as_dict(), "min_sharpness": tau},
              "min_sharpness": float(blur[blur_choice].get("tau", 0.0)), "blur_rule": blur_choice,
              "criterion": f"lowest median position error over all queries (unsolved scored by the fused pose) "
                           f"among settings with <= {MAX_UNSOLVED:.0%} unsolved and <= {MAX_WRONG:.0%} solved but "
                           f"more than 25 cm / 10 deg off",
              "blocks": blocks, "queries": len(rows), "model": str(model_path), "scene": str(scene.root),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": _commit()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "choice.json", json.dumps(choice, indent=1))
    atomic_write_text(out / "scores.json", json.dumps({"stages": scores, "blur": blur}, indent=1))
    _write_rows(rows, out / "per_query.csv")
    md = (f"# Real scene, validation (leave-one-training-block-out)\n\n{len(rows)} queries (every {stride}nd frame "
          f"of training blocks {blocks}), map = the other training blocks. Model {model_path}. "
          f"Command: `python -m reloc_train.experiments.realscene validate --scene {scene.root} --model {model_path} "
          f"--out {out}`.\n\n" + _table(scores, "Every stage, same queries (unsolved scored by the fused pose)")
          + "\n" + _table(blur, f"Blur rule for {gated}") + f"\nChosen: **{best}**, blur rule: {blur_choice}.\n\n"
          + _recovery_md(recovery(rows, names[0])))
    atomic_write_text(out / "summary.md", md)
    print(md)
    return choice


def _write_rows(rows, path: Path) -> None:
    """The per-query rows as CSV: every scalar column (the positions of ``*_xyz`` as text)."""
    keys = sorted({k for r in rows for k, v in r.items() if not k.endswith("_vec")})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in keys})
    atomic_write_text(path, buf.getvalue())


def test(model_path: Path, scene: Scene, choice_path: Path, out: Path, names=tuple(MATCHER_CONFIGS),
         device: str = "cpu", ledger: Path | None = LEDGER, max_frames: int | None = None,
         calib_frames: int | None = None) -> dict:
    """The test split once, every stage on the same queries (see the module docstring);
    ``max_frames`` test queries and ``calib_frames`` calibration queries (evenly spaced; None: all)."""
    dev = resolve_device(device)
    model, info = load_model(model_path, dev)
    choice = json.loads(Path(choice_path).read_text())
    best = choice["matcher_config"]
    names = [best] + [n for n in names if n != best]
    configs = {**MATCHER_CONFIGS, best: {**MATCHER_CONFIGS[best], "min_sharpness": choice["pnp"]["min_sharpness"]}}
    # the publish calibration: the chain on the last training block, a map without it
    cal_locs = localizers(model, info, scene, "fit", [best], dev, configs=configs)
    cal, cal_info = calibrate(cal_locs["chain"], [scene], "calib", max_frames=calib_frames, progress=False)
    locs = localizers(model, info, scene, "train", names, dev, configs=configs)
    locs["chain"].cfg = replace(locs["chain"].cfg, calibration=cal)
    t0 = time.time()
    rows, res = run_queries(locs, "chain", scene, "test", max_frames)
    wall = time.time() - t0
    stages = ["retrieval-only", "top1", "consensus", "triangulate", *names, "lm", "chain"]
    scores = {s: score_rows(rows, s) for s in stages}
    pub = np.array([bool(r.get("published")) for r in rows])
    conf = res["confidence"] or {}
    enc = float(np.median([r.get("encode_ms", np.nan) for r in rows])) if rows and "encode_ms" in rows[0] \
        else res["timings_ms"].get("encode", float("nan"))
    decision = {"published_share": float(pub.mean()) if len(pub) else float("nan"),
                "threshold": cal.threshold, "chi2": conf.get("chi2", {}), "precision": conf.get("precision"),
                "calibration": cal_info.get("threshold")}
    rec = recovery(rows, best)
    result = {"scene": str(scene.root), "model": str(model_path), "choice": choice, "queries": len(rows),
              "scores": scores, "decision": decision, "recovery": rec, "timings_ms": res["timings_ms"], "encoder_ms": enc,
              "recall": res["recall"], "oracle_recall": res["oracle_recall"], "coverage": res["coverage"],
              "wall_s": wall, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": _commit()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "result.json", json.dumps(result, indent=1, default=float))
    _write_rows(rows, out / "per_query.csv")
    tm = res["timings_ms"]
    md = (f"# Real scene, test split\n\n{len(rows)} queries (the test split), map = the training split. "
          f"Model {model_path}; settings from {choice_path} (validation only). Command: `python -m "
          f"reloc_train.experiments.realscene test --scene {scene.root} --model {model_path} --choice {choice_path} "
          f"--out {out}`.\n\n" + _table(scores, "Every stage, same queries (unsolved scored by the fused pose)")
          + "\n" + _recovery_md(rec) + f"\nRetrieval recall@1/5/10: {', '.join(f'{100 * v:.0f} %' for v in res['recall'].values())} "
          f"(the map allows {100 * res['oracle_recall']:.0f} %).\n\n"
          f"Calibrated publish decision (chain, calibration fitted on the last training block): published "
          f"{100 * decision['published_share']:.1f} %, precision {conf.get('precision')}, χ² shares "
          f"{conf.get('chi2')}.\n\nTime per query (ms, means): encoder {tm.get('encode', float('nan')):.1f}, "
          + ", ".join(f"{k} {v:.0f}" for k, v in tm.items() if k != "encode") + "\n")
    atomic_write_text(out / "summary.md", md)
    if ledger is not None:
        _append_ledger(result, out, ledger)
    print(md)
    result["rows"] = rows
    return result


def test_scenes(model_path: Path, scenes: list[Scene], choice_path: Path, out: Path, names=tuple(MATCHER_CONFIGS),
                device: str = "cpu", ledger: Path = LEDGER, max_frames: int | None = None,
                calib_frames: int | None = None) -> dict:
    """:func:`test` on each scene (``out/<scene>``), then one table over all their queries."""
    per = {sc.name: test(model_path, sc, choice_path, out / sc.name, names, device, None, max_frames, calib_frames)
           for sc in scenes}
    rows = [r for res in per.values() for r in res["rows"]]
    first = next(iter(per.values()))
    stages = list(first["scores"])
    scores = {s: score_rows(rows, s) for s in stages}
    pub = np.mean([bool(r.get("published")) for r in rows])
    result = {"scene": str(Path(scenes[0].root).parent), "model": str(model_path), "choice": first["choice"],
              "queries": len(rows), "scores": scores, "published_share": float(pub),
              "recovery": recovery(rows, stages[4]), "scenes": list(per), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "commit": _commit()}
    atomic_write_text(out / "result.json", json.dumps(result, indent=1, default=float))
    md = (f"# {len(scenes)} scenes, test splits\n\n{len(rows)} queries ({max_frames or 'all'} per scene), each scene's "
          f"map its training split. Scenes: {', '.join(per)}.\n\n"
          + _table(scores, "Every stage, same queries (unsolved scored by the fused pose)")
          + "\n" + _recovery_md(result["recovery"]) + f"\nCalibrated chain published {100 * pub:.1f} %.\n")
    atomic_write_text(out / "summary.md", md)
    _append_ledger(result, out, ledger)
    print(md)
    return result


def _append_ledger(result: dict, out: Path, ledger: Path) -> None:
    s = result["scores"]
    ch = s["chain"]
    line = {"date": result["date"], "commit": result["commit"], "recipe": f"realscene:{result['choice']['matcher_config']}",
            "data": result["scene"], "scenes": Path(result["scene"]).name, "queries": result["queries"],
            "config_hash": hashlib.sha256(json.dumps(result["choice"]["pnp"], sort_keys=True).encode()).hexdigest()[:12],
            "model_fingerprint": "-", "retrieval_t_m": f"{s['retrieval-only']['median_t_m']:.4f}",
            "retrieval_r_deg": f"{s['retrieval-only']['median_r_deg']:.4f}",
            "top1_t_m": f"{s['top1']['median_t_m']:.4f}", "top1_r_deg": f"{s['top1']['median_r_deg']:.4f}",
            "top1_ratio_t": "", "top1_ratio_r": "", "consensus_t_m": f"{ch['median_t_m']:.4f}",
            "consensus_r_deg": f"{ch['median_r_deg']:.4f}", "oracle_regression_ratio_t": "",
            "oracle_regression_ratio_r": "", "recall5_over_oracle": "",
            "pnp_failures": f"{ch['unsolved']:.4f}", "recovered": "", "out": str(out)}
    new = not ledger.is_file()
    with open(ledger, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LEDGER_FIELDS)
        if new:
            w.writeheader()
        w.writerow(line)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description="Refinement on a real RGB-D scene: validate on the map, then test")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("validate", "test"):
        p = sub.add_parser(name)
        p.add_argument("--scene", required=True, type=Path)
        p.add_argument("--model", required=True, type=Path)
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--matchers", nargs="+", default=list(MATCHER_CONFIGS), choices=list(MATCHER_CONFIGS))
        p.add_argument("--device", default="cpu")
        if name == "validate":
            p.add_argument("--stride", type=int, default=2, help="every n-th frame of each block is a query")
            p.add_argument("--merge", nargs="*", default=[], type=Path,
                           help="earlier validation folders (same queries) whose PnP settings compete too")
        else:
            p.add_argument("--choice", required=True, type=Path, help="choice.json written by validate")
            p.add_argument("--max-frames", type=int, help="queries per scene, evenly spaced (default all)")
            p.add_argument("--calib-frames", type=int, help="calibration queries per scene (default all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.cmd == "validate":
        validate(args.model, Scene(args.scene), args.out, tuple(args.matchers), args.stride, args.device, args.merge)
    else:
        scenes = open_scenes(args.scene)
        if len(scenes) == 1:
            test(args.model, scenes[0], args.choice, args.out, tuple(args.matchers), args.device,
                 max_frames=args.max_frames, calib_frames=args.calib_frames)
        else:
            test_scenes(args.model, scenes, args.choice, args.out, tuple(args.matchers), args.device,
                        max_frames=args.max_frames, calib_frames=args.calib_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
