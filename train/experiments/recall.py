"""Retrieval recall of descriptors: frozen ImageNet GeM, trained models, and the oracle.

    python -m reloc_train.experiments.recall --data DIR --frozen efficientnet_lite0 --size 120 160 \\
        --models runs/uniform/seed0/model.pt --out docs/results/recall

For every scene of ``DIR``, the training split is the map and the test split the queries.
``recall@k`` is the share of queries with a map frame within 0.5 m and 30° among the k
most similar by descriptor; the oracle recall is the share that have such a map frame at
all (:func:`reloc_ros.data.coverage.oracle_neighbours`), the ceiling of any retrieval.

``--frozen ARCH`` adds a network initialised from ImageNet and never trained: its
descriptor is the GeM pooling of the last feature map (what a learned descriptor must
beat). Each ``--models`` file is scored with its own descriptor at its own input size.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.device import resolve_device
from reloc_ros.core.model import ModelConfig, RelPoseNet, load_model
from reloc_ros.data.coverage import oracle_neighbours
from reloc_ros.data.sevenscenes import open_scenes
from reloc_ros.eval.report import markdown_table, pct, write_summary
from reloc_train.dataset import FrameSet, ImageStore
from reloc_train.pretrained import load_imagenet_weights
from reloc_train.validate import encode_store, recall_at

log = logging.getLogger("reloc_train.experiments.recall")

__all__ = ["frozen_model", "scene_recalls", "main"]

KS = (1, 5, 10)


def frozen_model(arch: str, size_hw: tuple[int, int], weights: str = "imagenet") -> RelPoseNet:
    """A network with ImageNet weights and no training: plain GeM descriptor (descriptor_dim 0)."""
    model = RelPoseNet(ModelConfig(arch=arch, input_size=tuple(size_hw), descriptor_dim=0))
    if load_imagenet_weights(model, weights) == "random":
        raise FileNotFoundError(f"no ImageNet weights for {arch} ({weights!r}); see reloc_train.pretrained")
    return model.eval()


def scene_recalls(model: RelPoseNet, data: str | Path, device: torch.device,
                  max_frames: int | None = None) -> dict[str, dict]:
    """Per scene of ``data``: recall@1/5/10 of the model's descriptor and the oracle recall."""
    scenes = open_scenes(data)
    size = model.cfg.input_size
    out = {}
    for sc in scenes:
        tr, te = FrameSet.from_scenes([sc], "train"), FrameSet.from_scenes([sc], "test")
        q = np.arange(len(te)) if max_frames is None or max_frames >= len(te) else \
            np.unique(np.linspace(0, len(te) - 1, max_frames).round().astype(int))
        _, d_db = encode_store(model, ImageStore(tr, size), np.arange(len(tr)), device)
        _, d_q = encode_store(model, ImageStore(te, size), q, device)
        r = recall_at(d_db.cpu(), tr.poses, d_q.cpu(), te.poses[q], KS)
        r["oracle_recall"] = float(oracle_neighbours(tr.poses, te.poses[q])[3][:, 0].mean())
        r["queries"] = len(q)
        out[sc.name] = r
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(description="Retrieval recall@1/5/10: frozen GeM, trained models, oracle")
    ap.add_argument("--data", required=True, help="a scene folder or a dataset root")
    ap.add_argument("--frozen", action="append", default=[], metavar="ARCH",
                    help="score an ImageNet-initialised, untrained network of this architecture")
    ap.add_argument("--size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"),
                    help="input size of the --frozen networks")
    ap.add_argument("--models", nargs="*", default=[], type=Path, help="trained model files")
    ap.add_argument("--max-frames", type=int, default=None, help="queries per scene (default all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="write recall.md / recall.json here")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    entries: list[tuple[str, RelPoseNet]] = []
    for arch in args.frozen:
        entries.append((f"frozen ImageNet GeM ({arch}, {args.size[0]}×{args.size[1]})", frozen_model(arch, args.size)))
    for path in args.models:
        model, info = load_model(path, dev)
        entries.append((f"trained: {path} ({info.meta.get('mtl_method', '?')})", model))
    if not entries:
        ap.error("give --frozen ARCH and/or --models FILE")
    rows, data, oracle = [], {}, {}
    for name, model in entries:
        res = scene_recalls(model.to(dev), args.data, dev, args.max_frames)
        data[name] = res
        for sc, r in res.items():
            rows.append([name, sc] + [pct(r[f"recall_at_{k}"]) for k in KS] + [str(r["queries"])])
            oracle[sc] = r["oracle_recall"]
    rows += [["oracle (a map frame within 0.5 m and 30° exists)", sc] + [pct(v)] * len(KS) + [""]
             for sc, v in oracle.items()]
    md = markdown_table(["descriptor", "scene"] + [f"recall@{k}" for k in KS] + ["queries"], rows,
                        "Retrieval recall (a retrieved map frame within 0.5 m and 30°)",
                        [f"Map: the training split; queries: the test split of {args.data}."])
    print(md)
    if args.out:
        write_summary(args.out, md, {"data": str(args.data), "results": data}, stem="recall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
