"""Table 3 in practice: the cost of one training step per MTL method, as a ratio to Uniform.

    python -m reloc_train.experiments.table3                                    # config/train_cpu.yaml
    python -m reloc_train.experiments.table3 --config config/train.yaml --device cuda   # the paper's

The network, the tasks and the frozen stages come from the training configuration
(``--config``, ``--set``; ``--arch`` and ``--size`` are shortcuts). With frozen stages the
batches are what the trainer feeds then: the cached output of the frozen stages, so a step
runs only the trainable stages and the heads. With the retrieval task, every pair brings a
hard negative and the view-overlap labels mark a↔b positive and the rest negative. With
auxiliary tasks (``aux.tasks``), the decoder runs on every input of the step, with random
labels (the 20 synthetic classes) and depths at its output size.

Every method runs in its own child process (so that its peak memory is its own) on the
same batches (fixed seed) with the same model initialisation; the list is run ``--repeats``
times in alternating order so that drifts of the machine do not favour one method, and the
timed steps are pooled. Per method: the median wall time of one full step
(:func:`reloc_train.train.mtl_step`: forward, MTL backward, optimiser step) after warm-up,
the number of backward passes the engine reports, and the peak memory of the steps (GPU:
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
from reloc_ros.core.model import RelPoseNet
from reloc_ros.eval.report import emit, markdown_table, write_json
from reloc_sim.synthetic import CLASSES
from reloc_train.auxiliary import AuxDecoder, default_levels
from reloc_train.config import load_config
from reloc_train.mtl import METHODS, build_method
from reloc_train.train import build_optimizer, mtl_step

ROOT = Path(__file__).resolve().parents[2]
PAPER_ORDER = ["uniform", "uncertainty", "mgda", "mgda_ub", "gradnorm", "pcgrad", "aligned", "aligned_ub"]


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_method(method: str, cfg, batch: int, steps: int, warmup: int, device: str, seed: int = 0) -> dict:
    """Time ``steps`` training steps of one method (in this process); ``cfg``: a TrainConfig."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = RelPoseNet(cfg.model.model_config())
    model.freeze_stages(cfg.model.freeze_stages)
    model.to(dev).train()
    start = cfg.model.freeze_stages
    tasks = model.cfg.tasks
    aux_tasks = tuple(cfg.aux.tasks)
    decoder = None
    if aux_tasks:  # the auxiliary decoder, with the 20 classes of the synthetic scenes
        levels = tuple(cfg.aux.levels) or default_levels(model, start)
        decoder = AuxDecoder.for_model(model, levels, len(CLASSES) if "seg" in aux_tasks else 0,
                                       "depth" in aux_tasks, cfg.aux.width).to(dev).train()
    m = build_method(method, len(tasks) + len(aux_tasks)).to(dev)
    opt = build_optimizer(model, m, lr=1e-4, weight_decay=0.0, method_lr=1e-3, decoder=decoder)
    g = torch.Generator().manual_seed(seed)
    size = model.cfg.input_size

    @torch.no_grad()
    def inputs(n):  # what the trainer feeds: images, or the frozen stages' output
        x = model.preprocess(torch.randint(0, 256, (n, *size, 3), dtype=torch.uint8, generator=g).to(dev))
        return model.encoder.feature_map(x, 0, start) if start else x

    M = 3 * batch if "r" in tasks else 2 * batch
    labels = -torch.ones(M, M)
    for i in range(batch):
        labels[i, batch + i] = labels[batch + i, i] = 1
    labels.fill_diagonal_(0)
    batches = [(inputs(batch), inputs(batch), inputs(batch) if "r" in tasks else None,
                {"t": torch.randn(batch, 3, generator=g).to(dev),
                 "q": torch.nn.functional.normalize(torch.randn(batch, 4, generator=g), dim=1).to(dev),
                 "r": labels.to(dev)}) for _ in range(4)]
    aux_targets = []
    if decoder is not None:
        h, w = decoder.output_size
        for _ in batches:
            lab = torch.randint(0, max(1, decoder.num_classes), (M, h, w), generator=g).to(torch.uint8)
            aux_targets.append({"labels": lab.to(dev), "has_label": torch.ones(M, dtype=torch.bool, device=dev),
                                "depth": (0.5 + 4 * torch.rand(M, h, w, generator=g)).to(dev)})
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, n_backward = [], None
    amp = dev.type == "cuda" and cfg.run.amp

    def step(i):
        xa, xb, xh, target = batches[i % len(batches)]
        aux = (decoder, aux_tasks, aux_targets[i % len(batches)]) if decoder is not None else None
        return mtl_step(model, m, opt, xa, xb, target, start, xh, amp, aux=aux)

    for i in range(warmup):
        step(i)
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
        st = step(i)
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


def _config(args):
    sets = list(args.set)
    if args.arch:
        sets.append(f"model.arch={args.arch}")
    if args.size:
        sets.append(f"model.input_size=[{args.size[0]},{args.size[1]}]")
    return load_config(args.config or [ROOT / "config" / "train_cpu.yaml"], sets)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Per-method training-step cost (Table 3 in practice)")
    ap.add_argument("--methods", default="paper", help="'paper' (the 8), 'all', or a comma list")
    ap.add_argument("--config", action="append", default=[], type=Path,
                    help="training YAML(s) over config/train.yaml (default: config/train_cpu.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--arch", help="shortcut for --set model.arch=...")
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="shortcut for model.input_size")
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default optim.batch_size)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2,
                    help="run the method list this many times, alternating its order; times are pooled")
    ap.add_argument("--out", type=Path, help="write the table as Markdown (and .json beside it)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = str(resolve_device(args.device))
    cfg = _config(args)
    batch = args.batch or cfg.optim.batch_size

    if args.child:
        res = run_method(args.child, cfg, batch, args.steps, args.warmup, device)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    names = (PAPER_ORDER if args.methods == "paper" else list(METHODS) if args.methods == "all"
             else [s.strip() for s in args.methods.split(",")])
    if "uniform" not in names:
        names = ["uniform"] + names
    passthrough = [a for c in args.config for a in ("--config", str(c))] + [a for s in args.set for a in ("--set", s)]
    if args.arch:
        passthrough += ["--arch", args.arch]
    if args.size:
        passthrough += ["--size", *map(str, args.size)]
    pooled: dict[str, dict] = {}
    for rep in range(args.repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            cmd = [sys.executable, "-m", "reloc_train.experiments.table3", "--child", name, *passthrough,
                   "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", device]
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
    mc = cfg.model
    frozen = f", first {mc.freeze_stages} encoder stages frozen (cached inputs)" if mc.freeze_stages else ""
    md = (f"Training-step cost per MTL method: {mc.arch} at {mc.input_size[0]}x{mc.input_size[1]}{frozen}, "
          f"tasks {'+'.join(list(mc.tasks) + list(cfg.aux.tasks))}, batch {batch} pairs, {args.repeats} x {args.steps} timed steps after "
          f"{args.warmup} warm-up each, on {hw}.\n\n"
          + markdown_table(["method", "encoder backward passes", "head-only backward passes",
                            "step (ms)", "time / uniform", "peak mem (MB)", "mem / uniform"], rows))
    emit(md, args.out)
    if args.out:
        write_json(args.out.with_suffix(".json"), {"config": cfg.as_dict(), "batch": batch, "device": device,
                                                   "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
