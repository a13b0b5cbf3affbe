"""Build a frame database offline from mapped frames, and describe one.

    python -m reloc_ros.mapping.database build --model runs/x/model.pt --scene data/chess --out chess.db.pt
    python -m reloc_ros.mapping.database build --model M --scene data/7scenes --scenes chess fire --out two.db.pt
    python -m reloc_ros.mapping.database info chess.db.pt [--model M]

The database itself (the runtime container that the node loads) is
:class:`reloc_ros.core.database.FrameDatabase`; this module encodes the frames of 7-Scenes-format
scenes with a model and fills it. Nothing at run time imports this module.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from reloc_ros.core.database import DatabaseError, FrameDatabase, model_record
from reloc_ros.core.device import resolve_device
from reloc_ros.core.model import ModelFileError, ModelInfo, RelPoseNet, code_version, load_model, resize_rgb
from reloc_ros.core.featuremetric import DenseConfig, DenseSet, frame_points
from reloc_ros.core.matchers import matcher_names
from reloc_ros.core.pnp import KeypointSet, PnPConfig, extract, lift
from reloc_ros.data.sevenscenes import Scene, SevenScenesError, open_scenes, read_color

__all__ = ["encode_images", "build_database", "main"]


@torch.no_grad()
def encode_images(model: RelPoseNet, paths: Sequence[Path], device: torch.device, batch: int = 32,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, descriptors) of image files, encoded in batches."""
    feats, descs = [], []
    def load(p):
        return resize_rgb(read_color(p), model.cfg.input_size)

    with ThreadPoolExecutor(2) as pool, tqdm(total=len(paths), desc="encoding", disable=not progress,
                                             dynamic_ncols=True, leave=False) as bar:
        for s in range(0, len(paths), batch):
            imgs = list(pool.map(load, paths[s:s + batch]))
            x = model.preprocess(torch.from_numpy(np.stack(imgs)).to(device))
            f, d = model.encode(x)
            feats.append(f.float().cpu())
            descs.append(d.float().cpu())
            bar.update(len(imgs))
    if not feats:
        return torch.zeros((0, model.cfg.feature_dim)), torch.zeros((0, model.cfg.descriptor_length))
    return torch.cat(feats), torch.cat(descs)


def scene_keypoints(scene: Scene, frames, cfg: PnPConfig, progress: bool = True) -> list[tuple]:
    """Per frame ``(xyz_K3, desc_KD, uv_K2)``: the strongest ``cfg.max_keypoints`` keypoints of
    the configured matcher with valid depth, lifted into the frame's colour camera with the
    colour intrinsics. The depth is the scene's registered to colour where it records a
    depth-to-colour calibration (:mod:`reloc_ros.data.rgbd`), or is registered already (the
    synthetic scenes, bag-to-map); otherwise it is sampled at the same relative position, an
    approximation for a raw sensor's depth."""
    K = scene.color_intrinsics.scaled(*cfg.image_size).K
    if not scene.camera["depth_registered"] and scene.camera["depth_to_color"] is None:
        print(f"warning: {scene.root}: depth is not registered to colour and no depth_to_color calibration is "
              "recorded; keypoint depth is approximate (python -m reloc_ros.data.rgbd fit)", file=sys.stderr)
    out = []
    for fr in tqdm(frames, desc=f"keypoints {scene.name}", disable=not progress, dynamic_ncols=True, leave=False):
        f = extract(read_color(fr.color_path), cfg, max_keypoints=2 * cfg.max_keypoints)
        xyz, ok = lift(f.uv, scene.depth(fr), K, cfg.image_size)
        keep = np.nonzero(ok)[0][: cfg.max_keypoints]
        out.append((xyz[keep], f.desc[keep], f.uv[keep]))
    return out


@torch.no_grad()
def scene_dense(model: RelPoseNet, scene: Scene, frames, cfg: DenseConfig, device: torch.device,
                progress: bool = True) -> list[list[tuple]]:
    """Per frame, per level ``(xyz (gh, gw, 3), feat (gh, gw, C))``: the frame's depth and
    encoder stage features on the level's grid (:func:`reloc_ros.core.featuremetric.frame_points`)."""
    out = []
    for fr in tqdm(frames, desc=f"dense {scene.name}", disable=not progress, dynamic_ncols=True, leave=False):
        x = model.preprocess(torch.as_tensor(np.array(read_color(fr.color_path))[None]).to(device))
        _, _, maps = model.encode_levels(x, cfg.levels)
        out.append(frame_points({k: v[0].float().cpu().numpy() for k, v in maps.items()}, scene.depth(fr),
                                scene.color_intrinsics, cfg))
    return out


def build_database(model: RelPoseNet, info: ModelInfo, scenes: Sequence[Scene],
                   split: str | Sequence[int] = "train", device: torch.device | str = "cpu",
                   batch: int = 32, progress: bool = True, keypoints: PnPConfig | None = None,
                   dense: DenseConfig | None = None) -> FrameDatabase:
    """Encode the frames of ``split`` of every scene and collect their poses.

    Args:
        model, info: the network and its model-file info (from :func:`load_model`).
        scenes: the scenes to map (their ids are kept per frame).
        split: 'train', 'test', 'all', 'fit', 'calib', or a list of sequence numbers.
        device: where to run the encoder.
        batch: images per encoder batch.
        keypoints: also store SIFT keypoints for the PnP refiner, with these settings
            (:mod:`reloc_ros.core.pnp`; needs the frames' depth).
        dense: also store points with depth and encoder stage features for the
            feature-metric refiner (:mod:`reloc_ros.core.featuremetric`).
    """
    t0 = time.time()
    device = torch.device(device)
    model.eval().to(device)
    poses, feats, descs, sidx, ids, scene_meta, kps, dns = [], [], [], [], [], [], [], []
    for k, sc in enumerate(scenes):
        frames = sc.frames(split)
        f, d = encode_images(model, [fr.color_path for fr in frames], device, batch, progress)
        poses.append(torch.from_numpy(sc.poses(frames)))
        feats.append(f)
        descs.append(d)
        sidx.append(torch.full((len(frames),), k, dtype=torch.int64))
        ids += [fr.id for fr in frames]
        if keypoints is not None:
            kps += scene_keypoints(sc, frames, keypoints, progress)
        if dense is not None:
            dns += scene_dense(model, sc, frames, dense, device, progress)
        intr = sc.color_intrinsics
        scene_meta.append({"name": sc.name, "root": str(sc.root), "intrinsics": intr.as_dict(),
                           "image_size": [intr.width, intr.height], "frames": len(frames)})
    return FrameDatabase(
        poses=torch.cat(poses).double(), descriptors=torch.cat(descs), features=torch.cat(feats),
        scene_index=torch.cat(sidx), frame_ids=ids, scenes=scene_meta,
        model=model_record(model, info.fingerprint, info.path),
        meta={"split": split if isinstance(split, str) else list(split), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "code_version": code_version(), "build_seconds": round(time.time() - t0, 2)},
        keypoints=KeypointSet.pack(kps, keypoints) if keypoints is not None else None,
        dense=DenseSet.pack(dns, dense) if dense is not None else None,
    )



def read_pnp_config(path: Path, image_size: tuple[int, int] = PnPConfig.image_size) -> PnPConfig:
    """PnP settings from a YAML or JSON file of :class:`PnPConfig` fields (a validation's
    ``choice.json`` holds them under ``pnp``), with ``image_size`` where the file gives none;
    ValueError naming the file on a bad one."""
    import yaml  # lazy: this option only

    try:
        d = yaml.safe_load(Path(path).read_text())
        d = dict(d.get("pnp", d))
        d.setdefault("image_size", list(image_size))
        unknown = set(d) - set(PnPConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return PnPConfig.from_dict(d)
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not usable PnP settings ({' '.join(str(e).split())})") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build or inspect a reloc_ros frame database")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="encode the frames of scenes with a model")
    b.add_argument("--model", required=True, type=Path)
    b.add_argument("--scene", required=True, type=Path, help="a scene folder or a dataset root")
    b.add_argument("--scenes", nargs="*", help="scene names under a dataset root (default all)")
    b.add_argument("--split", default="train", help="train | test | all | fit | calib")
    b.add_argument("--sequences", help="comma-separated sequence numbers (instead of --split)")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--device", default="auto")
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--keypoints", action="store_true",
                   help="also store SIFT keypoints with depth, for the PnP refiner (reloc_ros.core.pnp)")
    b.add_argument("--keypoint-size", type=int, nargs=2, metavar=("W", "H"), default=list(PnPConfig.image_size),
                   help="image size the keypoints are extracted at (default 320 240)")
    b.add_argument("--max-keypoints", type=int, default=PnPConfig.max_keypoints, help="keypoints per frame")
    b.add_argument("--matcher", default="sift", choices=matcher_names(),
                   help="local features of the keypoints (reloc_ros.core.matchers; default sift)")
    b.add_argument("--pnp-config", type=Path,
                   help="PnP settings (YAML or JSON, PnPConfig fields, e.g. config/pnp.yaml for real cameras); "
                        "replaces --max-keypoints and --matcher (--keypoint-size where it gives no image_size)")
    b.add_argument("--dense", action="store_true",
                   help="also store depth points with encoder features, for the feature-metric refiner (lm)")
    b.add_argument("--dense-levels", type=int, nargs="+", default=list(DenseConfig.levels),
                   help="encoder stages of the dense features, coarse to fine (default 3 2)")
    b.add_argument("--dense-steps", type=int, nargs="+", default=list(DenseConfig.steps),
                   help="grid step of the stored points per level (default 1 2)")
    i = sub.add_parser("info", help="describe a database file")
    i.add_argument("path", type=Path)
    i.add_argument("--model", type=Path, help="also check it against this model file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            dev = resolve_device(args.device)
            model, info = load_model(args.model, dev)
            scenes = open_scenes(args.scene, args.scenes)
            split = [int(s) for s in args.sequences.split(",")] if args.sequences else args.split
            kcfg = PnPConfig(image_size=tuple(args.keypoint_size), max_keypoints=args.max_keypoints,
                             matcher=args.matcher) if args.keypoints else None
            if args.keypoints and args.pnp_config:
                kcfg = read_pnp_config(args.pnp_config, tuple(args.keypoint_size))
            dcfg = DenseConfig(levels=tuple(args.dense_levels), steps=tuple(args.dense_steps)) if args.dense else None
            db = build_database(model, info, scenes, split, dev, args.batch, keypoints=kcfg, dense=dcfg)
            db.save(args.out)
            print(f"database {args.out}: {len(db)} frames of {', '.join(db.scene_names)}, "
                  f"{db.bytes_per_frame():.0f} B/frame, built in {db.meta['build_seconds']} s on {dev}")
        else:
            db = FrameDatabase.load(args.path)
            if args.model:
                _, info = load_model(args.model)
                db.check_model(info, args.path)
            print(f"{args.path}: {len(db)} frames, {db.bytes_per_frame():.0f} B/frame, feature dim "
                  f"{db.features.shape[1]}")
            for s in db.scenes:
                print(f"  scene {s['name']}: {s['frames']} frames from {s['root']}")
            print(f"  model {db.model['arch']} {db.model['input_size']} fingerprint {db.model['fingerprint'][:12]}")
            print(f"  built {db.meta.get('created')} ({db.meta.get('code_version')}), split {db.meta.get('split')}")
            if db.keypoints is not None:
                k = db.keypoints
                print(f"  keypoints: {int(k.offsets[-1])} {k.config.matcher} ({int(k.offsets[-1]) / max(1, len(k)):.0f} "
                      f"per frame) at "
                      f"{k.config.image_size[0]}x{k.config.image_size[1]}, for the PnP refiner")
            if db.dense is not None:
                d = db.dense
                print(f"  dense grids: levels {list(d.config.levels)}, "
                      + ", ".join(f"{x.shape[1]}x{x.shape[2]} x {f.shape[3]} ch" for x, f in zip(d.xyz, d.feat))
                      + f", {100 * d.valid_share():.0f} % valid depth, for the feature-metric refiners (lm, dro)")
    except (DatabaseError, ModelFileError, SevenScenesError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
