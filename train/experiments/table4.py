"""Train every MTL method with several seeds, then evaluate them all (the Table-4 experiment).

    python -m reloc_train.experiments.table4 --data data/synth_demo --out runs/mtl \\
        --config config/train_cpu.yaml --methods paper --seeds 0 1 2 --jobs 2 --report docs/results

Runs are ``OUT/<method>/seed<k>``; a run whose ``model.pt`` exists is skipped, an
interrupted one is resumed (``--resume``), so the command can be re-run after a stop.
``--jobs`` runs trainings in parallel processes, each limited to
``max(1, cores // jobs)`` threads. The report is written by ``reloc_train.evaluate``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reloc_train.evaluate import main as evaluate_main
from reloc_train.mtl import available_methods

PAPER = ["uniform", "uncertainty", "mgda", "mgda_ub", "gradnorm", "pcgrad", "aligned", "aligned_ub"]


def train_run(out: Path, method: str, seed: int, data: Path, configs: list, sets: list, threads: int
              ) -> tuple[float, str]:
    """Train one run into ``out`` in a child process (``reloc_train.train``, its log in
    ``out/train.log``): skipped when ``out/model.pt`` exists, resumed when a checkpoint does.
    Returns (seconds, status)."""
    if (out / "model.pt").is_file():
        return 0.0, "cached"
    cmd = [sys.executable, "-m", "reloc_train.train", "--data", str(data), "--out", str(out),
           "--method", method, "--seed", str(seed)]
    for c in configs:
        cmd += ["--config", str(c)]
    for s in sets:
        cmd += ["--set", s]
    if (out / "checkpoint.pt").is_file():
        cmd.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / "train.log", "w") as log:
        r = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return time.time() - t0, "ok" if r.returncode == 0 else f"failed ({out / 'train.log'})"


def run_one(method: str, seed: int, args, threads: int) -> tuple[str, int, float, str]:
    dt, status = train_run(args.out / method / f"seed{seed}", method, seed, args.data, args.config, args.set,
                           threads)
    return method, seed, dt, status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train and evaluate every MTL method with several seeds")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", action="append", default=[], type=Path)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--methods", default="paper", help="'paper', 'all' or a comma list")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--report", type=Path, help="write the Table-4 report here")
    ap.add_argument("--max-frames", type=int, default=None, help="test queries per scene in the report")
    args = ap.parse_args(argv)
    methods = PAPER if args.methods == "paper" else available_methods() if args.methods == "all" \
        else [m.strip() for m in args.methods.split(",")]
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    jobs = [(m, s) for s in args.seeds for m in methods]
    t0 = time.time()
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for i, (m, s, dt, status) in enumerate(pool.map(lambda j: run_one(j[0], j[1], args, threads), jobs), 1):
            print(f"[{i}/{len(jobs)}] {m} seed {s}: {status} in {dt:.0f} s (elapsed {time.time() - t0:.0f} s)",
                  flush=True)
            if status.startswith("failed"):
                failed.append((m, s))
    if failed:
        print(f"{len(failed)} run(s) failed: {failed}", file=sys.stderr)
        return 1
    if args.report:
        runs = [str(args.out / m / f"seed{s}") for m in methods for s in args.seeds]
        extra = ["--max-frames", str(args.max_frames)] if args.max_frames else []
        return evaluate_main(runs + ["--out", str(args.report)] + extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
