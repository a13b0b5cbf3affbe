"""The auxiliary-task table (the second reference's experiment): pose only, + segmentation,
+ depth, + both, each trained with several MTL methods and seeds, in the reference's style.

    python -m reloc_train.experiments.aux_table --data /work/exp/bench --out /work/exp/aux \\
        --config config/train_cpu.yaml --config config/train_aux.yaml --jobs 2 --report docs/results/aux_benchmark \
        --step-cost --node-cost

Runs are ``OUT/<row>/<method>/seed<k>`` (``reloc_train.experiments.train_run``: a finished
run is skipped, an interrupted one resumed), so the command can be re-run after a stop; with
``--report-only`` it only rewrites the report from the runs on disk. ``--step-cost`` adds the
uncontended cost of a training step per row and method (``reloc_train.experiments.table3``),
``--node-cost`` the node's cost per frame with each row's model file.

Every number comes from the run's own ``model.pt`` and ``metrics.json``: the final
validation of the trainer (top-1 retrieval from the training frames, then the regressed
relative pose, on ``eval.max_frames`` test frames per scene; per-scene median and mean,
averaged over the scenes), the decoder's mIoU and depth errors on the same frames, and the
mean wall time of a training step (forward, MTL backward, optimiser step; all runs of the
experiment run under the same load, ``--jobs`` at a time).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.files import atomic_write_text
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import load_model
from reloc_ros.eval.latency import latency, synthetic_database
from reloc_train.experiments.table3 import main as table3_main
from reloc_train.experiments.table4 import train_run

#: rows: name -> (aux.tasks, label)
ROWS = {"pose": ([], "pose only"), "seg": (["seg"], "+ segmentation"), "depth": (["depth"], "+ depth"),
        "both": (["seg", "depth"], "+ both")}
#: Uniform, the reference's weighting (Uncertainty) and the best method of Table 4 on the
#: benchmark preset (GradNorm, top-1 setting: docs/results/mtl_benchmark/table4.md).
METHODS = ["uniform", "uncertainty", "gradnorm"]
LABELS = {"uniform": "Uniform", "uncertainty": "Uncertainty", "gradnorm": "GradNorm"}
POSE_KEYS = ["median_t_m", "mean_t_m", "median_r_deg", "mean_r_deg"]
AUX_KEYS = ["miou", "abs_rel", "median_abs_m"]


def run_dir(out: Path, row: str, method: str, seed: int) -> Path:
    return out / row / method / f"seed{seed}"


def read_run(path: Path) -> dict | None:
    """The numbers of one finished run (None if it has no model.pt)."""
    if not (path / "model.pt").is_file():
        return None
    meta = torch.load(path / "model.pt", map_location="cpu", weights_only=False)["meta"]
    m = meta["validation"]["mean"]
    rec = {k: m[k] for k in POSE_KEYS}
    rec["retrieval_median_t_m"], rec["retrieval_median_r_deg"] = m["retrieval_median_t_m"], m["retrieval_median_r_deg"]
    aux = meta.get("aux_validation") or {}
    rec.update({k: aux.get(k, float("nan")) for k in AUX_KEYS})
    rows = json.loads((path / "metrics.json").read_text())
    steps = [r["step_seconds"] for r in rows if "step_seconds" in r]
    rec["step_s"] = float(np.mean(steps)) if steps else float("nan")
    rec["steps"], rec["aux_tasks"] = meta["steps"], meta.get("aux_tasks", [])
    return rec


def _ms(values: list[float], fmt: str) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return "–"
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1) if len(v) > 1 else 0.0)}"


def step_cost(dest: Path, configs: list, sets: list, methods: list[str], steps: int = 10) -> None:
    """The uncontended cost of one training step per row and method (``reloc_train.experiments.table3``,
    one child process per method, alternating order), into ``dest/step_cost_<row>.{md,json}``."""
    for r, (tasks, _) in ROWS.items():
        argv = [a for c in configs for a in ("--config", str(c))] + [a for s in sets for a in ("--set", s)]
        argv += ["--set", f"aux.tasks=[{','.join(tasks)}]", "--methods", ",".join(methods), "--steps", str(steps),
                 "--out", str(dest / f"step_cost_{r}.md")]
        table3_main(argv)


def _bench_steps(dest: Path | None) -> dict[tuple[str, str], float]:
    """(row, method) -> median step seconds from the step_cost files in ``dest`` (if any)."""
    out = {}
    for r in ROWS:
        p = dest / f"step_cost_{r}.json" if dest is not None else None
        if p is not None and p.is_file():
            for res in json.loads(p.read_text())["results"]:
                out[(r, res["method"])] = res["step_s"]
    return out


def report(out: Path, seeds: list[int], methods: list[str], dest: Path | None, wall_s: float | None = None,
           notes: str = "") -> str:
    """The table (markdown) from the runs under ``out``; written with a CSV and JSON to ``dest``.
    The step column is the uncontended benchmark's (``--step-cost``) where ``dest`` has it,
    else the mean step time during training (marked *)."""
    recs = {(r, m): [x for s in seeds if (x := read_run(run_dir(out, r, m, s))) is not None]
            for r in ROWS for m in methods}
    bench = _bench_steps(dest)
    head = ["Method", "Tasks", "median t (m)", "mean t (m)", "median r (°)", "mean r (°)", "mIoU", "AbsRel",
            "median |Δd| (m)", "step (ms)", "runs"]
    table, csv_rows, verdicts = [], [], []
    for m in methods:
        base = recs[("pose", m)]
        for r, (_, label) in ROWS.items():
            xs = recs[(r, m)]
            if not xs:
                continue
            cells = [_ms([x[k] for x in xs], "{:.3f}" if k.endswith("_m") else "{:.2f}") for k in POSE_KEYS]
            aux = [_ms([x["miou"] for x in xs], "{:.3f}") if "seg" in ROWS[r][0] else "",
                   _ms([x["abs_rel"] for x in xs], "{:.3f}") if "depth" in ROWS[r][0] else "",
                   _ms([x["median_abs_m"] for x in xs], "{:.3f}") if "depth" in ROWS[r][0] else ""]
            step = (f"{1000 * bench[(r, m)]:.0f} ({bench[(r, m)] / bench[('pose', m)]:.2f}x)"
                    if (r, m) in bench and ("pose", m) in bench
                    else _ms([1000 * x["step_s"] for x in xs], "{:.0f}") + " *")
            table.append([LABELS.get(m, m), label, *cells, *aux, step, str(len(xs))])
            for x, s in zip(xs, seeds):
                csv_rows.append({"row": r, "method": m, "seed": s, **{k: x[k] for k in x if k != "aux_tasks"}})
            if r != "pose" and len(xs) > 1 and len(base) > 1:
                verdicts.append(_verdict(m, label, base, xs))
    base_ret = [x for (r, _), xs in recs.items() if r == "pose" for x in xs]
    ret = (f"retrieval only (the top-1 training frame's pose, no regression; pose-only runs' descriptors): "
           f"median {_ms([x['retrieval_median_t_m'] for x in base_ret], '{:.3f}')} m / "
           f"{_ms([x['retrieval_median_r_deg'] for x in base_ret], '{:.2f}')}°") if base_ret else ""
    n = sum(len(v) for v in recs.values())
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(c) + " |" for c in table]
    text = "\n".join([
        f"Auxiliary tasks on the encoder: {n} runs, mean ± standard deviation over seeds {seeds}.", "",
        *(lines), "",
        ret, "",
        "Pose: top-1 retrieval then the regressed relative pose, per-scene median and mean over the test frames,",
        "averaged over the scenes. mIoU over the classes present; AbsRel and median absolute depth error over the",
        "valid pixels; both at the decoder's output resolution. step: the median wall time of one training step",
        "(forward, MTL backward, optimiser step) measured uncontended by reloc_train.experiments.table3, and its ratio to",
        "pose only with the same method (* instead: the mean step time during the experiment's training).", "",
        "**Does an auxiliary task help?** (better in both t and r by more than one standard deviation, the larger",
        "of the two cells', on the median errors)", "",
        *[f"- {v}" for v in verdicts],
        *(["", f"Wall time of the whole experiment: {wall_s / 60:.0f} min."] if wall_s else []),
        *(["", notes] if notes else []),
    ])
    if dest is not None:
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest / "aux_table.md", text + "\n")
        buf = io.StringIO()
        if csv_rows:
            w = csv.DictWriter(buf, fieldnames=list(csv_rows[0]))
            w.writeheader()
            w.writerows(csv_rows)
        atomic_write_text(dest / "per_run.csv", buf.getvalue())
        atomic_write_text(dest / "summary.json", json.dumps(
            {"seeds": seeds, "methods": methods, "rows": list(ROWS), "wall_s": wall_s, "verdicts": verdicts,
             "table": [dict(zip(head, c)) for c in table]}, indent=2))
    return text


def _verdict(method: str, label: str, base: list[dict], xs: list[dict]) -> str:
    out = []
    better = True
    for k, unit in (("median_t_m", "m"), ("median_r_deg", "°")):
        b, a = np.array([x[k] for x in base]), np.array([x[k] for x in xs])
        sd = max(b.std(ddof=1), a.std(ddof=1))
        d = a.mean() - b.mean()
        ok = d < -sd
        better &= ok
        out.append(f"{k.split('_')[1]} {d:+.3f} {unit} (1 sd {sd:.3f})" + (" ✓" if ok else ""))
    return f"{LABELS.get(method, method)} {label}: " + ", ".join(out) + \
        (": **better in both, by more than 1 sd**" if better else ": not better by more than 1 sd in both")


def node_cost(models: dict[str, Path], db_frames: int = 1600, queries: int = 30, rounds: int = 3) -> str:
    """The node's cost per frame with each model file: the localizer (encode, retrieval,
    heads, fusion) on the same 640x480 frames against a database of ``db_frames`` synthetic
    frames, the models timed in alternating rounds in one process; the ratio is to the
    first model. The decoder is not in a model file, so the cost must not change."""
    cfg = LocalizerConfig(top_k=5, fusion=FusionConfig(method="consensus"))
    locs, info = {}, {}
    for name, path in models.items():
        model, _ = load_model(path)
        meta = torch.load(path, map_location="cpu", weights_only=False)["meta"]
        locs[name] = Localizer(model, synthetic_database(model, db_frames), cfg, torch.device("cpu"))
        info[name] = (meta.get("aux_tasks", []), sum(p.numel() for p in model.parameters()))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    times: dict[str, list[float]] = {n: [] for n in models}
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            times[name].append(latency(locs[name], images, queries)["total"])
    first = next(iter(models))
    ref = float(np.median(times[first]))
    rows = [f"| {n} | {'+'.join(info[n][0]) or '–'} | {info[n][1] / 1e6:.2f} | {np.median(times[n]):.1f} | "
            f"{np.median(times[n]) / ref:.2f}x |" for n in models]
    return "\n".join([
        f"Node cost per frame (localizer: encode + top-5 retrieval + heads + fusion; {db_frames} database frames, "
        f"640x480 input, CPU, {torch.get_num_threads()} threads; median of {rounds} alternating rounds of "
        f"{queries} queries)", "",
        "| model | aux tasks trained | parameters (M) | total ms | ratio |", "|---|---|---|---|---|", *rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train and tabulate pose-only vs auxiliary-task runs")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", action="append", default=[], type=Path)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma list of " + ", ".join(ROWS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--report", type=Path, help="write aux_table.md, per_run.csv, summary.json here")
    ap.add_argument("--report-only", action="store_true", help="only tabulate the runs on disk")
    ap.add_argument("--notes", default="", help="a paragraph appended to the report")
    ap.add_argument("--step-cost", action="store_true",
                    help="also benchmark the training step of every row and method, uncontended (into --report)")
    ap.add_argument("--node-cost", action="store_true",
                    help="also time the node's localizer with the seed-0 Uniform model of every row")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",")]
    rows = [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; known: {list(ROWS)}")
    wall = None
    if not args.report_only:
        if args.data is None:
            ap.error("--data is required to train")
        threads = max(1, (os.cpu_count() or 2) // args.jobs)
        jobs = [(r, m, s) for s in args.seeds for r in rows for m in methods]
        t0 = time.time()
        failed = []

        def one(j):
            r, m, s = j
            tasks = "[" + ",".join(ROWS[r][0]) + "]"
            return j, train_run(run_dir(args.out, r, m, s), m, s, args.data, args.config,
                                args.set + [f"aux.tasks={tasks}"], threads)

        with ThreadPoolExecutor(args.jobs) as pool:
            for i, ((r, m, s), (dt, status)) in enumerate(pool.map(one, jobs), 1):
                print(f"[{i}/{len(jobs)}] {r} / {m} / seed {s}: {status} in {dt:.0f} s "
                      f"(elapsed {time.time() - t0:.0f} s)", flush=True)
                if status.startswith("failed"):
                    failed.append((r, m, s))
        wall = time.time() - t0
        atomic_write_text(args.out / "wall.json", json.dumps({"wall_s": wall, "runs": len(jobs)}))
        if failed:
            print(f"{len(failed)} run(s) failed: {failed}", file=sys.stderr)
            return 1
    if wall is None and (args.out / "wall.json").is_file():
        wall = json.loads((args.out / "wall.json").read_text())["wall_s"]
    if args.step_cost:
        if args.report is None:
            ap.error("--step-cost writes into --report")
        step_cost(args.report, args.config, args.set, methods)
    print(report(args.out, args.seeds, methods, args.report, wall, args.notes))
    if args.node_cost:
        models = {r: run_dir(args.out, r, methods[0], args.seeds[0]) / "model.pt" for r in ROWS}
        text = node_cost({r: p for r, p in models.items() if p.is_file()})
        print(text)
        if args.report:
            atomic_write_text(args.report / "node_cost.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
