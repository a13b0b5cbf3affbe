"""The frame database: what the localizer knows about the mapped frames.

For every database frame (by default the training split of one or more scenes):

* its pose (4x4 camera-to-world, float64),
* its retrieval descriptor (L2-normalised GeM-pooled encoder features),
* its cached encoder features, the input of the relative-pose heads, so a query costs
  one encoder pass and one batched head call,
* its scene index and frame id ('seq-01/frame-000000').

Per scene: name, source folder, colour intrinsics and image size. The file also records
the format version, the fingerprint, architecture, input size and normalisation of the
model it was built with, and a checksum of its own tensors. :meth:`FrameDatabase.load`
refuses a truncated, edited or foreign file, and :meth:`FrameDatabase.check_model`
refuses a model that is not the one the features came from. Each error names the file and
what does not match.

    python -m reloc_ros.database build --model runs/x/model.pt --scene data/chess --out chess.db.pt
    python -m reloc_ros.database build --model M --scene data/7scenes --scenes chess fire --out two.db.pt
    python -m reloc_ros.database info chess.db.pt
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from reloc_ros.data.sevenscenes import Scene, SevenScenesError, open_scenes, read_color
from reloc_ros.model import (ModelFileError, ModelInfo, RelPoseNet, atomic_save, code_version, load_model,
                             resize_rgb)

DB_FORMAT = "reloc_ros.database"
DB_FORMAT_VERSION = 1


class DatabaseError(RuntimeError):
    """A database file is missing, corrupt, foreign, or does not fit the model. Names the file."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class FrameDatabase:
    """Frames, poses, descriptors and head features, plus the model they were made with.

    Attributes:
        poses: (N, 4, 4) float64 camera-to-world poses.
        descriptors: (N, C) float32, L2-normalised retrieval descriptors.
        features: (N, C) float32 encoder features (the heads' input).
        scene_index: (N,) int64 index into ``scenes``.
        frame_ids: N frame ids such as 'seq-01/frame-000000'.
        scenes: per scene {'name', 'root', 'intrinsics' (colour), 'image_size' [w, h], 'frames'}.
        model: {'fingerprint', 'arch', 'input_size', 'mean', 'std', 'path'} of the model used.
        meta: provenance (split or sequences, created, code version, build seconds).
    """

    poses: torch.Tensor
    descriptors: torch.Tensor
    features: torch.Tensor
    scene_index: torch.Tensor
    frame_ids: list[str]
    scenes: list[dict]
    model: dict
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.frame_ids)
        for name in ("poses", "descriptors", "features", "scene_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"database {name} has {len(getattr(self, name))} rows for {n} frames")

    def __len__(self) -> int:
        return len(self.frame_ids)

    @property
    def scene_names(self) -> list[str]:
        return [s["name"] for s in self.scenes]

    def bytes_per_frame(self) -> float:
        """Memory of the per-frame tensors, divided by the frame count."""
        total = sum(t.numel() * t.element_size() for t in (self.poses, self.descriptors, self.features, self.scene_index))
        return total / max(1, len(self))

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"poses": self.poses, "descriptors": self.descriptors, "features": self.features,
                "scene_index": self.scene_index}

    # -- files ---------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write atomically, with a checksum over the tensors and the frame ids."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        payload = {
            "format": DB_FORMAT, "format_version": DB_FORMAT_VERSION,
            "tensors": tensors, "frame_ids": list(self.frame_ids), "scenes": self.scenes,
            "model": self.model, "meta": self.meta,
            "checksum": tensor_checksum(tensors) + ":" + hashlib.sha256("\n".join(self.frame_ids).encode()).hexdigest(),
        }
        atomic_save(payload, path)

    @classmethod
    def load(cls, path: Path | str, map_location: str | torch.device = "cpu") -> "FrameDatabase":
        """Read and verify a database file; raises :class:`DatabaseError`."""
        path = Path(path)
        if not path.is_file():
            raise DatabaseError(path, "database file does not exist")
        try:
            payload = torch.load(io.BytesIO(path.read_bytes()), map_location=map_location, weights_only=True)
        except Exception as e:
            raise DatabaseError(path, f"not a readable database file (corrupt or truncated?): {e}") from None
        if not isinstance(payload, dict) or payload.get("format") != DB_FORMAT:
            fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise DatabaseError(path, f"not a reloc_ros database (format {fmt!r}, expected {DB_FORMAT!r})")
        if payload.get("format_version") != DB_FORMAT_VERSION:
            raise DatabaseError(path, f"database format version {payload.get('format_version')} is not supported "
                                      f"(this code reads version {DB_FORMAT_VERSION}); rebuild it")
        try:
            tensors, ids = payload["tensors"], payload["frame_ids"]
            want = payload["checksum"]
            got = tensor_checksum(tensors) + ":" + hashlib.sha256("\n".join(ids).encode()).hexdigest()
        except (KeyError, TypeError) as e:
            raise DatabaseError(path, f"database file lacks an entry: {e}") from None
        if got != want:
            raise DatabaseError(path, "contents do not match the file's checksum (corrupted or edited)")
        try:
            return cls(poses=tensors["poses"], descriptors=tensors["descriptors"], features=tensors["features"],
                       scene_index=tensors["scene_index"], frame_ids=ids, scenes=payload["scenes"],
                       model=payload["model"], meta=payload.get("meta", {}))
        except (KeyError, ValueError) as e:
            raise DatabaseError(path, f"inconsistent database: {e}") from None

    def check_model(self, info: ModelInfo, db_path: Path | str = "<database>") -> None:
        """Raise :class:`DatabaseError` unless ``info`` is the model the database was built with."""
        problems = []
        m = self.model
        if m.get("fingerprint") != info.fingerprint:
            problems.append(f"model fingerprint {info.fingerprint[:12]} (from {info.path}) differs from the "
                            f"database's {str(m.get('fingerprint'))[:12]} (built with {m.get('path')})")
        if list(m.get("input_size", [])) != list(info.config.input_size):
            problems.append(f"input size {list(info.config.input_size)} != database {m.get('input_size')}")
        if [round(v, 6) for v in m.get("mean", [])] != [round(v, 6) for v in info.config.mean] or \
           [round(v, 6) for v in m.get("std", [])] != [round(v, 6) for v in info.config.std]:
            problems.append("input normalisation differs")
        if m.get("arch") != info.config.arch:
            problems.append(f"architecture {info.config.arch} != database {m.get('arch')}")
        if problems:
            raise DatabaseError(db_path, "does not match the model: " + "; ".join(problems))

    @classmethod
    def concat(cls, dbs: Sequence["FrameDatabase"]) -> "FrameDatabase":
        """Several databases built with the same model, as one (scenes appended)."""
        if not dbs:
            raise ValueError("nothing to concatenate")
        fp = dbs[0].model["fingerprint"]
        if any(d.model["fingerprint"] != fp for d in dbs):
            raise ValueError("databases were built with different models")
        offset, sidx, scenes = 0, [], []
        for d in dbs:
            sidx.append(d.scene_index + offset)
            scenes += d.scenes
            offset += len(d.scenes)
        return cls(poses=torch.cat([d.poses for d in dbs]), descriptors=torch.cat([d.descriptors for d in dbs]),
                   features=torch.cat([d.features for d in dbs]), scene_index=torch.cat(sidx),
                   frame_ids=[i for d in dbs for i in d.frame_ids], scenes=scenes, model=dbs[0].model,
                   meta={"concat_of": [d.meta for d in dbs]})


# --------------------------------------------------------------------------- building
@torch.no_grad()
def encode_images(model: RelPoseNet, paths: Sequence[Path], device: torch.device, batch: int = 32,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, descriptors) of image files, encoded in batches."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

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
    C = model.cfg.feature_dim
    if not feats:
        return torch.zeros((0, C)), torch.zeros((0, C))
    return torch.cat(feats), torch.cat(descs)


def build_database(model: RelPoseNet, info: ModelInfo, scenes: Sequence[Scene],
                   split: str | Sequence[int] = "train", device: torch.device | str = "cpu",
                   batch: int = 32, progress: bool = True) -> FrameDatabase:
    """Encode the frames of ``split`` of every scene and collect their poses.

    Args:
        model, info: the network and its model-file info (from :func:`load_model`).
        scenes: the scenes to map (their ids are kept per frame).
        split: 'train', 'test', 'all', or a list of sequence numbers.
        device: where to run the encoder.
        batch: images per encoder batch.
    """
    t0 = time.time()
    device = torch.device(device)
    model.eval().to(device)
    poses, feats, descs, sidx, ids, scene_meta = [], [], [], [], [], []
    for k, sc in enumerate(scenes):
        frames = sc.frames(split)
        f, d = encode_images(model, [fr.color_path for fr in frames], device, batch, progress)
        poses.append(torch.from_numpy(sc.poses(frames)))
        feats.append(f)
        descs.append(d)
        sidx.append(torch.full((len(frames),), k, dtype=torch.int64))
        ids += [fr.id for fr in frames]
        intr = sc.color_intrinsics
        scene_meta.append({"name": sc.name, "root": str(sc.root), "intrinsics": intr.as_dict(),
                           "image_size": [intr.width, intr.height], "frames": len(frames)})
    return FrameDatabase(
        poses=torch.cat(poses).double(), descriptors=torch.cat(descs), features=torch.cat(feats),
        scene_index=torch.cat(sidx), frame_ids=ids, scenes=scene_meta,
        model={"fingerprint": info.fingerprint, "arch": info.config.arch,
               "input_size": list(info.config.input_size), "mean": list(info.config.mean),
               "std": list(info.config.std), "path": str(info.path)},
        meta={"split": split if isinstance(split, str) else list(split), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "code_version": code_version(), "build_seconds": round(time.time() - t0, 2)},
    )


def load_pair(model_path: Path | str, db_path: Path | str, device: str | torch.device = "cpu"):
    """Load a model file and a database and check that they belong together."""
    model, info = load_model(model_path, device)
    db = FrameDatabase.load(db_path)
    db.check_model(info, db_path)
    return model, info, db


# --------------------------------------------------------------------------- CLI
def _auto_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build or inspect a reloc_ros frame database")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="encode the frames of scenes with a model")
    b.add_argument("--model", required=True, type=Path)
    b.add_argument("--scene", required=True, type=Path, help="a scene folder or a dataset root")
    b.add_argument("--scenes", nargs="*", help="scene names under a dataset root (default all)")
    b.add_argument("--split", default="train", help="train | test | all")
    b.add_argument("--sequences", help="comma-separated sequence numbers (instead of --split)")
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--device", default="auto")
    b.add_argument("--batch", type=int, default=32)
    i = sub.add_parser("info", help="describe a database file")
    i.add_argument("path", type=Path)
    i.add_argument("--model", type=Path, help="also check it against this model file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            dev = _auto_device(args.device)
            model, info = load_model(args.model, dev)
            scenes = open_scenes(args.scene, args.scenes)
            split = [int(s) for s in args.sequences.split(",")] if args.sequences else args.split
            db = build_database(model, info, scenes, split, dev, args.batch)
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
    except (DatabaseError, ModelFileError, SevenScenesError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
