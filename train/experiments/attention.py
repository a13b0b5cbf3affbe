"""Attention maps of the relative-pose network, as in the second reference: Grad-CAM++
(Chattopadhyay et al., WACV 2018; the ``grad-cam`` package's ``GradCAMPlusPlus``) over the
encoder's layers 1–4, on the query branch, for two scalar outputs: the norm of the predicted
translation ||t̂|| and the predicted rotation angle 2·atan2(||q̂_xyz||, |q̂_w|).

    python -m reloc_train.experiments.attention --model runs/pose/model.pt --model runs/seg/model.pt \\
        --data /work/exp/bench --frames synth_a:5:40 synth_b:6:120 --out docs/results/aux_benchmark/attention.png

The pair is (reference, query), as in the node: the reference is the query's oracle
neighbour among the training frames (nearest by d + r/30°, the same for every model, so
the maps of two models are comparable), its features are computed once without gradient,
and the gradient flows through the query's encoder pass only.

Layers 1–4: the last encoder stage at strides 4, 8, 16 and 32 (ResNet: layer1..layer4;
EfficientNet-Lite0: blocks 1, 2, 4 and the head). Grad-CAM++ weighs each channel k of a
layer's activations A^k by  w_k = Σ_ij α_ij^k relu(∂y/∂A_ij^k)  with
α = g² / (2 g² + Σ_ab A_ab^k g³), g = ∂y/∂A^k, and shows relu(Σ_k w_k A^k), scaled to
[0, 1] and resized to the image.

The grid: one row per (frame, model); columns: the query, its reference, then the four
layers for ||t̂|| and the four for the rotation angle.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reloc_ros.core.files import atomic_write
from reloc_ros.core.model import RelPoseNet, load_model, resize_rgb
from reloc_ros.core.model._torchvision import import_torchvision
from reloc_ros.data.coverage import oracle_neighbours
from reloc_ros.data.sevenscenes import open_scenes, read_color

__all__ = ["TARGETS", "layer_stages", "QueryBranch", "attention_maps", "main"]


def _t_norm(out_7: torch.Tensor) -> torch.Tensor:
    return out_7[:3].norm()


def _rot_angle(out_7: torch.Tensor) -> torch.Tensor:
    q = out_7[3:]
    return 2.0 * torch.atan2(q[1:].norm(), q[0].abs())


#: the scalar outputs explained: name -> function of one (7,) output row [t, q]
TARGETS = {"|t|": _t_norm, "rotation angle": _rot_angle}


def layer_stages(model: RelPoseNet, strides: tuple[int, ...] = (4, 8, 16, 32)) -> list[int]:
    """The encoder's "layers 1–4": for each stride, the last stage whose output has it."""
    h, w = model.cfg.input_size
    shapes = model.encoder.stage_shapes((h, w))
    out = []
    for s in strides:
        size = (-(-h // s), -(-w // s))
        at = [i for i, sh in enumerate(shapes) if sh[1:] == size]
        if not at:
            raise ValueError(f"{model.cfg.arch}: no encoder stage at stride {s} for input {h}x{w}")
        out.append(max(at))
    return out


class QueryBranch(nn.Module):
    """The network as a function of the query image alone: the reference's pose feature is a
    constant, so the gradient flows through the query's encoder pass only.

    Args:
        model: the network (eval mode).
        f_ref_1C: the reference image's pose feature (1, C).

    ``forward(x_B3HW)`` (normalised query images) -> (B, 7): [t̂, q̂] of the query in the
    reference's frame (the node's convention: ``predict(f_database, f_query)``).
    """

    def __init__(self, model: RelPoseNet, f_ref_1C: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("f_ref", f_ref_1C.detach())

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        f_q = self.model.pose_feature(self.model.encoder(x_B3HW))
        p = self.model.predict(self.f_ref.expand(len(f_q), -1), f_q)
        return torch.cat([p["t"].float(), p["q"].float()], dim=1)


def attention_maps(model: RelPoseNet, query_HW3: np.ndarray, reference_HW3: np.ndarray
                   ) -> tuple[dict[str, list[np.ndarray]], list[int], np.ndarray]:
    """Grad-CAM++ maps of one (reference, query) pair.

    Args:
        model: the network (put in eval mode, weights untouched).
        query_HW3, reference_HW3: uint8 RGB images (any size; resized as the node does).

    Returns ``({target: [map (H, W) in [0, 1] per layer]}, the layers' stages, the output
    [t, q] (7,))``, the maps at the model's input size.
    """
    import_torchvision()  # pytorch_grad_cam imports torchvision: define its op schemas first
    from pytorch_grad_cam import GradCAMPlusPlus  # lazy: after import_torchvision() above; an optional train extra

    model.eval()
    size = model.cfg.input_size
    x = model.preprocess(torch.from_numpy(np.stack([resize_rgb(query_HW3, size)])))
    with torch.no_grad():
        f_ref = model.pose_feature(model.encoder(model.preprocess(
            torch.from_numpy(np.stack([resize_rgb(reference_HW3, size)])))))
    branch = QueryBranch(model, f_ref)
    stages = layer_stages(model)
    mods = model.encoder.stages()
    with torch.no_grad():
        out = branch(x)[0].numpy()
    maps: dict[str, list[np.ndarray]] = {name: [] for name in TARGETS}
    for st in stages:
        with GradCAMPlusPlus(branch, target_layers=[mods[st][-1]]) as cam:
            for name, fn in TARGETS.items():
                maps[name].append(cam(input_tensor=x, targets=[fn])[0])
    model.zero_grad(set_to_none=True)
    return maps, stages, out


def _grid(rows: list[dict], out: Path) -> None:
    import matplotlib  # lazy: matplotlib (about 1 s) only for the figure; the maps go without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the Agg backend is chosen

    n_layers = len(rows[0]["maps"][next(iter(TARGETS))])
    cols = 2 + n_layers * len(TARGETS)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.35 * len(rows) + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        ax = axes[r]
        ax[0].imshow(row["query"])
        ax[0].set_ylabel(row["label"], fontsize=5)
        ax[1].imshow(row["reference"])
        ax[1].set_xlabel(row.get("ref", ""), fontsize=5)
        c = 2
        for name, maps in row["maps"].items():
            for k, m in enumerate(maps):
                ax[c].imshow(row["query"])
                ax[c].imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
                if r == 0:
                    ax[c].set_title(f"{name}\nlayer {k + 1} (stage {row['stages'][k]})", fontsize=6)
                c += 1
        if r == 0:
            ax[0].set_title("query", fontsize=6)
            ax[1].set_title("reference", fontsize=6)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout(pad=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    atomic_write(out, lambda f: f.write(buf.getvalue()))


def _parse_frame(spec: str, scenes) -> tuple[object, object]:
    """'SCENE:SEQ:INDEX' (or 'SEQ:INDEX' with one scene) -> (scene, frame)."""
    parts = spec.split(":")
    if len(parts) == 2 and len(scenes) == 1:
        parts = [scenes[0].name] + parts
    if len(parts) != 3:
        raise SystemExit(f"--frames {spec!r}: expected SCENE:SEQ:INDEX (SEQ:INDEX with one scene)")
    name, seq, idx = parts[0], int(parts[1]), int(parts[2])
    sc = next((s for s in scenes if s.name == name), None)
    if sc is None:
        raise SystemExit(f"--frames {spec!r}: no scene {name!r} (have {[s.name for s in scenes]})")
    fr = next((f for f in sc.frames("all") if f.seq == seq and f.index == idx), None)
    if fr is None:
        raise SystemExit(f"--frames {spec!r}: {sc.root} has no frame seq-{seq:02d}/frame-{idx:06d}")
    return sc, fr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Grad-CAM++ maps of the query branch over encoder layers 1-4",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", action="append", required=True, type=Path, help="model.pt (repeat to compare)")
    ap.add_argument("--label", action="append", default=[], help="a row label per --model")
    ap.add_argument("--data", required=True, type=Path, help="scene folder or dataset root")
    ap.add_argument("--frames", nargs="*", default=[], help="SCENE:SEQ:INDEX ...; default: --num test frames")
    ap.add_argument("--num", type=int, default=2, help="evenly spaced test frames of each scene without --frames")
    ap.add_argument("--out", required=True, type=Path, help="the PNG grid")
    args = ap.parse_args(argv)
    labels = args.label or [p.parent.name for p in args.model]
    if len(labels) != len(args.model):
        ap.error("give one --label per --model")
    scenes = open_scenes(args.data)
    picks = [_parse_frame(s, scenes) for s in args.frames]
    if not picks:
        for sc in scenes:
            test = sc.frames("test")
            picks += [(sc, test[int(i)]) for i in np.linspace(0, len(test) - 1, args.num + 2)[1:-1].round()]
    models = [load_model(p)[0] for p in args.model]
    rows = []
    for sc, fr in picks:
        train = sc.frames("train")
        T_map = sc.poses(train)
        j, d, r, _ = oracle_neighbours(T_map, sc.poses([fr]))
        ref = train[int(j[0])]
        q_img, ref_img = read_color(fr.color_path), read_color(ref.color_path)
        for model, label in zip(models, labels):
            maps, stages, out = attention_maps(model, q_img, ref_img)
            rows.append({"label": f"{label}\n{sc.name} {fr.id}", "ref": f"{ref.id}\n{d[0]:.2f} m, {r[0]:.0f}°",
                         "query": resize_rgb(q_img, model.cfg.input_size),
                         "reference": resize_rgb(ref_img, model.cfg.input_size), "maps": maps, "stages": stages})
            print(f"{label}: {sc.name} {fr.id} (reference {ref.id}, {d[0]:.2f} m / {r[0]:.1f}°): "
                  f"|t| {np.linalg.norm(out[:3]):.3f} m, angle {np.degrees(float(_rot_angle(torch.from_numpy(out)))):.1f}°")
    _grid(rows, args.out)
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
