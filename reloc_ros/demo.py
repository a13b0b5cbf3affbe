"""The end-to-end demo (README quick start, first command: ``scripts/demo``).

Stages that exist so far:

1. data: generate the default synthetic 7-Scenes-format scene (cached: a second run reuses
   it), or take a real 7-Scenes scene with ``--scene PATH``;
2. read it back with the 7-Scenes reader and validate every pose and image;
3. sample the overlapping training pairs that relative-pose training uses;
4. print a summary.

Training, the frame database, the node and the rosbag replay join this command as they
land (see the README's roadmap).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from reloc_ros.data.pairs import PairConfig, PairSampler
from reloc_ros.data.sevenscenes import Scene, SevenScenesError

DEFAULT_OUT = Path(__file__).resolve().parents[1] / ".cache" / "demo"


def log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def synthetic_scene(out: Path, preset: str, seed: int, workers: int) -> Path:
    """Generate (or reuse) the synthetic scene for ``preset`` and ``seed``."""
    from reloc_ros.data import synthetic

    cfg = synthetic.PRESETS[preset]
    key = {"preset": preset, "seed": seed, "config": asdict(cfg), "version": 1}
    stamp = out / f"{cfg.name}.synthetic.json"
    scene_dir = out / cfg.name
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(key)) and scene_dir.is_dir():
        log(f"reusing synthetic scene {scene_dir} (preset {preset!r}, seed {seed})")
        return scene_dir
    log(f"rendering synthetic scene (preset {preset!r}, seed {seed}, {workers} workers) ...")
    t0 = time.time()
    scene_dir = Path(synthetic.generate_scene(out, cfg, seed=seed, workers=workers))
    log(f"rendered in {time.time() - t0:.1f} s")
    stamp.write_text(json.dumps(key, indent=2))
    return scene_dir


def summarize(scene: Scene, pair_cfg: PairConfig) -> dict:
    t0 = time.time()
    n = scene.validate("all", images=True)
    t_val = time.time() - t0
    train = scene.frames("train")
    poses = scene.poses(train)
    sampler = PairSampler(poses, pair_cfg, seq_ids=np.array([f.seq for f in train]), seed=0)
    pairs = sampler.pairs(0)
    img = scene.color(train[0])
    depth = scene.depth(train[0]) if train[0].depth_path else None
    return {
        "scene": scene.name,
        "root": str(scene.root),
        "frames": n,
        "train": scene.summary("train"),
        "test": scene.summary("test"),
        "image": f"{img.shape[1]}x{img.shape[0]} RGB",
        "depth_valid": None if depth is None else float(np.isfinite(depth).mean()),
        "intrinsics": scene.color_intrinsics.as_dict(),
        "pairs": int(len(pairs)),
        "frames_without_partner": sampler.n_isolated,
        "validate_s": round(t_val, 2),
    }


def print_summary(s: dict) -> None:
    rows = [
        ("scene", f"{s['scene']}  ({s['root']})"),
        ("frames", f"{s['frames']} (train {s['train']['frames']} in seq {s['train']['sequences']}, "
                   f"test {s['test']['frames']} in seq {s['test']['sequences']})"),
        ("image", s["image"]),
        ("intrinsics", "fx {fx:.1f} fy {fy:.1f} cx {cx:.1f} cy {cy:.1f}".format(**s["intrinsics"])),
        ("train extent (m)", " x ".join(f"{v:.2f}" for v in s["train"]["extent_m"])),
        ("depth valid (frame 0)", "n/a" if s["depth_valid"] is None else f"{100 * s['depth_valid']:.1f} %"),
        ("training pairs (epoch 0)", f"{s['pairs']} ({s['frames_without_partner']} frames without partner)"),
        ("validated all files in", f"{s['validate_s']} s"),
    ]
    w = max(len(k) for k, _ in rows)
    print()
    print("reloc_ros demo summary")
    print("-" * 72)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print("-" * 72)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="reloc_ros end-to-end demo")
    ap.add_argument("--scene", type=Path, help="a real 7-Scenes scene folder instead of the synthetic one")
    ap.add_argument("--preset", default="demo", help="synthetic scene preset (see reloc_ros.data.synthetic.PRESETS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (cached between runs)")
    args = ap.parse_args(argv)

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        scene_dir = args.scene or synthetic_scene(args.out, args.preset, args.seed, args.workers)
        scene = Scene(scene_dir)
        s = summarize(scene, PairConfig())
    except SevenScenesError as e:
        print(f"[demo] error: {e}", file=sys.stderr)
        return 2
    print_summary(s)
    (args.out / "summary.json").write_text(json.dumps(s, indent=2))
    log(f"done in {time.time() - t0:.1f} s; summary written to {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
