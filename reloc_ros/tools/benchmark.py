"""Localizer benchmark: per-query latency by stage, search time against map size, memory per frame.

    python -m reloc_ros.tools.benchmark --model model.pt --db db.pt --scene data/chess
    python -m reloc_ros.tools.benchmark --arch resnet34 --size 256 341      # random weights, synthetic map

1. Latency: median per stage (encode, search, heads, fusion, total) over ``--queries``
   queries after warm-up, and the ratio total / encode measured in the same run. The goal
   is ≤ 1.2×: everything beyond the one encoder pass should cost little.
2. Search: median time of one top-k query against 1k, 10k and 100k synthetic
   L2-normalised descriptors, exact (torch) and HNSW (faiss, when installed).
3. Memory: bytes per database frame (pose, descriptor, features, scene id).
4. Encoders: the median forward time of each backbone (``--backbones``) for one image, at
   each of ``--backbone-sizes`` (the first is the node's input size of the default model).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.device import resolve_device
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelConfig, RelPoseNet
from reloc_ros.core.retrieval import build_index
from reloc_ros.data.sevenscenes import Scene, read_color
from reloc_ros.eval.latency import latency, synthetic_database
from reloc_ros.eval.report import emit, markdown_table


@torch.no_grad()
def encoder_times(archs: list[str], sizes: list[tuple[int, int]], device: torch.device, n: int = 30) -> list[dict]:
    """Median ms of ``model.encode`` (features + descriptor) for one preprocessed image."""
    out = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for arch in archs:
        for h, w in sizes:
            model = RelPoseNet(ModelConfig(arch=arch, input_size=(h, w))).to(device).eval()
            x = model.preprocess(torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, device=device))
            for _ in range(5):
                model.encode(x)
            ts = []
            for _ in range(n):
                sync()
                t0 = time.perf_counter()
                model.encode(x)
                sync()
                ts.append((time.perf_counter() - t0) * 1e3)
            out.append({"arch": arch, "size": [h, w], "median_ms": float(np.median(ts)),
                        "params_m": sum(p.numel() for p in model.encoder.parameters()) / 1e6})
    return out


def search_scaling(dim: int, sizes: list[int], k: int, device: torch.device, queries: int = 200) -> list[dict]:
    out = []
    g = torch.Generator().manual_seed(1)
    for n in sizes:
        db = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
        q = torch.nn.functional.normalize(torch.randn(queries, dim, generator=g), dim=1)
        for kind in ("exact", "hnsw"):
            try:
                t0 = time.perf_counter()
                idx = build_index(kind, db, device)
                build_s = time.perf_counter() - t0
            except ImportError:
                continue
            times = []
            for i in range(queries):
                t0 = time.perf_counter()
                s, _ = idx.search(q[i:i + 1], k)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            exact_idx = (q @ db.T).topk(k, dim=1).indices
            got = torch.stack([idx.search(q[i:i + 1], k)[1][0].cpu() for i in range(min(queries, 100))])
            recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k
                                    for a, b in zip(exact_idx[:len(got)], got)]))
            out.append({"frames": n, "index": kind, "median_ms": 1e3 * float(np.median(times)),
                        "build_s": build_s, "recall_vs_exact": recall})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Localizer latency, search scaling and memory")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--scene", type=Path, help="scene whose test images are the queries")
    ap.add_argument("--arch", default="efficientnet_lite0", help="without --model: random network of this arch")
    ap.add_argument("--size", type=int, nargs=2, default=[120, 160], metavar=("H", "W"))
    ap.add_argument("--backbones", default="efficientnet_lite0,resnet18,resnet34",
                    help="comma list for the encoder table ('' to skip)")
    ap.add_argument("--backbone-sizes", default="120x160,240x320,256x341", help="HxW list for the encoder table")
    ap.add_argument("--db-frames", type=int, default=1000, help="without --db: synthetic map size")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="write the tables as Markdown")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    cfg = LocalizerConfig(top_k=args.top_k, fusion=FusionConfig(method="consensus"))
    if args.model and args.db:
        loc = Localizer.from_files(args.model, args.db, cfg, dev)
    else:
        model = RelPoseNet(ModelConfig(arch=args.arch, input_size=tuple(args.size))).eval()
        loc = Localizer(model, synthetic_database(model, args.db_frames), cfg, dev)
    if args.scene:
        sc = Scene(args.scene)
        images = [read_color(f.color_path) for f in sc.frames("test")[:20]]
    else:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    h, w = loc.model.cfg.input_size
    hw = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads ({os.cpu_count()} cores)"
    lat = latency(loc, images, args.queries)
    stages = ("encode", "search", "heads", "fusion", "total")
    md = markdown_table(["stage", "median ms", "share of total"],
                        [[k, f"{lat[k]:.2f}", f"{100 * lat[k] / lat['total']:.1f}%"] for k in stages],
                        f"Per-query latency: {loc.model.cfg.arch} at {h}x{w}, {images[0].shape[1]}x{images[0].shape[0]} "
                        f"input images, top-{args.top_k}, {len(loc.db)} database frames, {hw}",
                        [f"total / encode = **{lat['total'] / lat['encode']:.3f}x** (goal ≤ 1.2x)"])
    sizes = [int(s) for s in args.sizes.split(",") if s]
    sc_rows = search_scaling(loc.model.cfg.descriptor_length, sizes, args.top_k, dev)
    md += "\n" + markdown_table(
        ["frames", "index", "median ms", "build s", "recall vs exact"],
        [[r["frames"], r["index"], f"{r['median_ms']:.3f}", f"{r['build_s']:.2f}", f"{r['recall_vs_exact']:.3f}"]
         for r in sc_rows],
        f"Search time per query (top-{args.top_k}, {loc.model.cfg.descriptor_length}-d descriptors, {dev.type})")
    bpf = loc.db.bytes_per_frame()
    md += (f"\n### Memory: {bpf:.0f} bytes per database frame ({bpf * 26000 / 2**20:.0f} MB for the "
           "26k training frames of 7-Scenes)\n")
    archs = [a for a in args.backbones.split(",") if a]
    if archs:
        bsizes = [tuple(int(v) for v in s.split("x")) for s in args.backbone_sizes.split(",") if s]
        enc = encoder_times(archs, bsizes, dev)
        md += "\n" + markdown_table(
            ["backbone", "parameters (M)"] + [f"{h}x{w} ms" for h, w in bsizes],
            [[a, f"{next(r for r in enc if r['arch'] == a)['params_m']:.1f}"]
             + [f"{r['median_ms']:.1f}" for r in enc if r["arch"] == a] for a in archs],
            f"Encoder forward, one image, median ms ({hw})",
            [f"The node's input size is the model's: {h}x{w} for the model above."])
    emit(md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
