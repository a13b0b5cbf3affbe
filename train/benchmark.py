"""Table 3 in practice: the cost of one training step per MTL method, as a ratio to Uniform.

    python -m reloc_train.benchmark --arch resnet18 --size 64 85 --batch 16 --steps 10
    python -m reloc_train.benchmark --arch resnet34 --size 256 341 --batch 16 --device cuda

Every method runs in its own child process (so that its peak memory is its own) on the
same batches (fixed seed) with the same model initialisation; the list is run ``--repeats``
times in alternating order so that drifts of the machine do not favour one method, and the
timed steps are pooled. Per method: the median wall time of one full step (forward, MTL backward, optimiser step) after warm-up, the
number of backward passes the engine reports, and the peak memory of the steps (GPU:
``torch.cuda.max_memory_allocated``; CPU: the growth of the process's peak RSS during the
steps, with the peak reset first through ``/proc/self/clear_refs``). Ratios are taken to
``uniform`` from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.device import resolve_device
from reloc_ros.core.model import ModelConfig, RelPoseNet
from reloc_ros.tools.report import emit, markdown_table, write_json
from reloc_train.losses import task_losses
from reloc_train.mtl import METHODS, build_method
from reloc_train.mtl.engine import mtl_backward
from reloc_train.train import build_optimizer

PAPER_ORDER = ["uniform", "uncertainty", "mgda", "mgda_ub", "gradnorm", "pcgrad", "aligned", "aligned_ub"]


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_method(method: str, arch: str, size: tuple[int, int], batch: int, steps: int, warmup: int,
               device: str, seed: int = 0) -> dict:
    """Time ``steps`` training steps of one method (in this process)."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = RelPoseNet(ModelConfig(arch=arch, input_size=size, head_hidden=512)).to(dev).train()
    m = build_method(method, 2).to(dev)
    opt = build_optimizer(model, m, lr=1e-4, weight_decay=0.0, method_lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, generator=g),
                torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, generator=g),
                torch.randn(batch, 3, generator=g),
                torch.nn.functional.normalize(torch.randn(batch, 4, generator=g), dim=1))
               for _ in range(4)]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, n_backward = [], None

    def step(b):
        xa, xb, t, q = (x.to(dev) for x in b)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred, z = model.forward_pair(model.preprocess(xa), model.preprocess(xb))
        losses = task_losses(pred, {"t": t, "q": q}, model.cfg.tasks)
        opt.zero_grad(set_to_none=True)
        st = mtl_backward(m, losses, shared_params=model.shared_parameters(),
                          task_params=model.task_parameters(), z=z,
                          layer_params=model.encoder.last_shared_layer())
        opt.step()
        m.after_step()
        return st

    for i in range(warmup):
        step(batches[i % len(batches)])
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        try:  # reset VmHWM to the current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = _rss_kb("VmRSS") * 1024
    for i in range(steps):
        t0 = time.perf_counter()
        st = step(batches[i % len(batches)])
        sync()
        times.append(time.perf_counter() - t0)
        n_backward = (st.get("encoder_backwards"), st.get("head_backwards"))
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
        total_peak = torch.cuda.max_memory_allocated(dev)
    else:
        total_peak = _rss_kb("VmHWM") * 1024
        peak = total_peak - base
    return {"method": method, "step_times": times, "encoder_backwards": n_backward[0],
            "head_backwards": n_backward[1], "peak_mb": peak / 2**20, "total_peak_mb": total_peak / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Per-method training-step cost (Table 3 in practice)")
    ap.add_argument("--methods", default="paper", help="'paper' (the 8), 'all', or a comma list")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, nargs=2, default=[64, 85], metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2,
                    help="run the method list this many times, alternating its order; times are pooled")
    ap.add_argument("--out", type=Path, help="write the table as Markdown (and .json beside it)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = str(resolve_device(args.device))

    if args.child:
        res = run_method(args.child, args.arch, tuple(args.size), args.batch, args.steps, args.warmup, device)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    names = (PAPER_ORDER if args.methods == "paper" else list(METHODS) if args.methods == "all"
             else [s.strip() for s in args.methods.split(",")])
    if "uniform" not in names:
        names = ["uniform"] + names
    pooled: dict[str, dict] = {}
    for rep in range(args.repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            cmd = [sys.executable, "-m", "reloc_train.benchmark", "--child", name, "--arch", args.arch,
                   "--size", *map(str, args.size), "--batch", str(args.batch), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--device", device]
            r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                print(f"{name}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(line[0][7:])
            agg = pooled.setdefault(name, res | {"step_times": [], "peak_mb": 0.0})
            agg["step_times"] += res["step_times"]
            agg["peak_mb"] = max(agg["peak_mb"], res["peak_mb"])
            print(f"  round {rep + 1}: {name:<12} {1e3 * float(np.median(res['step_times'])):8.1f} ms/step",
                  file=sys.stderr, flush=True)
    results = [pooled[n] | {"step_s": float(np.median(pooled[n]["step_times"]))} for n in names if n in pooled]
    base = next(r for r in results if r["method"] == "uniform")
    hw = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    rows = [[r["method"], r["encoder_backwards"], r["head_backwards"], f"{r['step_s'] * 1000:.1f}",
             f"{r['step_s'] / base['step_s']:.2f}x", f"{r['peak_mb']:.0f}",
             f"{r['peak_mb'] / base['peak_mb']:.2f}x" if base["peak_mb"] > 0 else "n/a"] for r in results]
    md = (f"Training-step cost per MTL method: {args.arch} at {args.size[0]}x{args.size[1]}, "
          f"batch {args.batch} pairs, {args.repeats} x {args.steps} timed steps after {args.warmup} warm-up each, "
          f"on {hw}.\n\n" + markdown_table(["method", "encoder backward passes", "head-only backward passes",
                                              "step (ms)", "time / uniform", "peak mem (MB)", "mem / uniform"], rows))
    emit(md, args.out)
    if args.out:
        write_json(args.out.with_suffix(".json"), {"config": vars(args) | {"device": device}, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
