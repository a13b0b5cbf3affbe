"""The frame database: what the localizer knows about the mapped frames (runtime container).

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

This module only holds and checks databases. They are built offline from mapped frames by
``reloc_ros.mapping.database`` (``python -m reloc_ros.mapping.database build ...``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from reloc_ros.core.featuremetric import DenseConfig, DenseSet
from reloc_ros.core.pnp import KeypointSet, PnPConfig
from reloc_ros.core.files import FileProblem, atomic_save, load_container, tensor_fingerprint
from reloc_ros.core.model import ModelInfo, RelPoseNet, load_model

__all__ = ["PARTS", "DB_FORMAT", "DB_FORMAT_VERSION", "DatabaseError", "FrameDatabase", "model_record", "load_pair"]

DB_FORMAT = "reloc_ros.database"  # the format id of every database file (unchanged by the re-layout)
DB_FORMAT_VERSION = 1


#: The optional parts of a database (what refiners read): part -> (what it is, the build option
#: that adds it: ``python -m reloc_ros.mapping.database build OPTION``).
PARTS = {"keypoints": ("keypoints", "--keypoints"), "dense": ("dense grids", "--dense")}


class DatabaseError(FileProblem):
    """A database file is missing, corrupt, foreign, or does not fit the model. Names the file."""


def _checksum(tensors: dict[str, torch.Tensor], frame_ids: Sequence[str]) -> str:
    return tensor_fingerprint(tensors) + ":" + hashlib.sha256("\n".join(frame_ids).encode()).hexdigest()


def model_record(model: RelPoseNet, fingerprint: str, path: Path | str = "(in memory)") -> dict:
    """What a database records of the model its features come from (see ``check_model``)."""
    c = model.cfg
    return {"fingerprint": fingerprint, "arch": c.arch, "input_size": list(c.input_size),
            "mean": list(c.mean), "std": list(c.std), "path": str(path)}


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
        keypoints: optional SIFT keypoints with their 3-D points, for the PnP refiner
            (:class:`reloc_ros.core.pnp.KeypointSet`; its settings are stored in the file).
        dense: optional points with depth and dense encoder features, for the feature-metric
            refiner (:class:`reloc_ros.core.featuremetric.DenseSet`).
    """

    poses: torch.Tensor
    descriptors: torch.Tensor
    features: torch.Tensor
    scene_index: torch.Tensor
    frame_ids: list[str]
    scenes: list[dict]
    model: dict
    meta: dict = field(default_factory=dict)
    keypoints: KeypointSet | None = None
    dense: DenseSet | None = None
    _checksum: str = field(default="", repr=False, compare=False)

    def __post_init__(self):
        n = len(self.frame_ids)
        for name in ("poses", "descriptors", "features", "scene_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"database {name} has {len(getattr(self, name))} rows for {n} frames")
        if self.keypoints is not None and len(self.keypoints) != n:
            raise ValueError(f"database keypoints cover {len(self.keypoints)} frames, not {n}")
        if self.dense is not None and len(self.dense) != n:
            raise ValueError(f"database dense points cover {len(self.dense)} frames, not {n}")

    def __len__(self) -> int:
        return len(self.frame_ids)

    def missing(self, parts) -> list[str]:
        """The parts of :data:`PARTS` among ``parts`` that this database does not hold."""
        return [p for p in sorted(parts) if getattr(self, p) is None]

    @property
    def scene_names(self) -> list[str]:
        return [s["name"] for s in self.scenes]

    def bytes_per_frame(self) -> float:
        """Memory of the per-frame tensors, divided by the frame count."""
        total = sum(t.numel() * t.element_size() for t in self._tensors().values())
        return total / max(1, len(self))

    @property
    def checksum(self) -> str:
        """The checksum of the tensors and frame ids (what the file stores; what a calibration
        file records to refuse another database)."""
        if not self._checksum:
            self._checksum = _checksum({k: v.detach().cpu().contiguous() for k, v in self._tensors().items()},
                                       self.frame_ids)
        return self._checksum

    def _tensors(self) -> dict[str, torch.Tensor]:
        t = {"poses": self.poses, "descriptors": self.descriptors, "features": self.features,
             "scene_index": self.scene_index}
        return t | (self.keypoints.tensors() if self.keypoints is not None else {}) \
            | (self.dense.tensors() if self.dense is not None else {})

    # -- files ---------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write atomically, with a checksum over the tensors and the frame ids."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        payload = {
            "format": DB_FORMAT, "format_version": DB_FORMAT_VERSION,
            "tensors": tensors, "frame_ids": list(self.frame_ids), "scenes": self.scenes,
            "model": self.model, "meta": self.meta,
            "keypoint_config": self.keypoints.config.as_dict() if self.keypoints is not None else None,
            "dense_config": self.dense.config.as_dict() if self.dense is not None else None,
            "checksum": _checksum(tensors, self.frame_ids),
        }
        atomic_save(payload, path)

    @classmethod
    def load(cls, path: Path | str, map_location: str | torch.device = "cpu") -> "FrameDatabase":
        """Read and verify a database file; raises :class:`DatabaseError`."""
        path = Path(path)
        payload = load_container(path, DatabaseError, "database", DB_FORMAT, DB_FORMAT_VERSION, map_location,
                                 rebuild="python -m reloc_ros.mapping.database build")
        try:
            tensors, ids = payload["tensors"], payload["frame_ids"]
            want = payload["checksum"]
            got = _checksum(tensors, ids)
        except (KeyError, TypeError) as e:
            raise DatabaseError(path, f"database file lacks an entry: {e}") from None
        if got != want:
            raise DatabaseError(path, "contents do not match the file's checksum (corrupted or edited)")
        try:
            kp = None
            if "kp_offsets" in tensors:
                kp = KeypointSet(tensors["kp_offsets"], tensors["kp_xyz"], tensors["kp_desc"],
                                 PnPConfig.from_dict(payload["keypoint_config"]), tensors.get("kp_uv"))
            dense = None
            if payload.get("dense_config"):
                dense = DenseSet.from_tensors(tensors, DenseConfig.from_dict(payload["dense_config"]))
            return cls(poses=tensors["poses"], descriptors=tensors["descriptors"], features=tensors["features"],
                       scene_index=tensors["scene_index"], frame_ids=ids, scenes=payload["scenes"],
                       model=payload["model"], meta=payload.get("meta", {}), keypoints=kp, dense=dense,
                       _checksum=got)
        except (KeyError, ValueError, TypeError) as e:
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

    def subset(self, rows) -> "FrameDatabase":
        """The database of frames ``rows`` only (same model and scenes; keypoints and dense
        points kept), e.g. a map without a held-out block for cross-fitted calibration."""
        r = torch.as_tensor(np.asarray(rows, dtype=np.int64).reshape(-1))
        kp = dn = None
        if self.keypoints is not None:
            k = self.keypoints
            spans = [(int(k.offsets[i]), int(k.offsets[i + 1])) for i in r.tolist()]
            idx = torch.as_tensor(np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0),
                                  dtype=torch.int64)
            counts = torch.as_tensor([b - a for a, b in spans], dtype=torch.int64)
            offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
            kp = KeypointSet(offsets, k.xyz[idx], k.desc[idx], k.config, None if k.uv is None else k.uv[idx])
        if self.dense is not None:
            dn = DenseSet([x[r] for x in self.dense.xyz], [f[r] for f in self.dense.feat], self.dense.config)
        return FrameDatabase(poses=self.poses[r], descriptors=self.descriptors[r], features=self.features[r],
                             scene_index=self.scene_index[r], frame_ids=[self.frame_ids[i] for i in r.tolist()],
                             scenes=self.scenes, model=self.model, meta={**self.meta, "subset_of": self.checksum},
                             keypoints=kp, dense=dn)

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
        kps, dns = [d.keypoints for d in dbs], [d.dense for d in dbs]
        for name, xs in (("keypoints", kps), ("dense points", dns)):
            if any(k is None for k in xs) and not all(k is None for k in xs):
                raise ValueError(f"some databases have {name} and some do not")
        return cls(poses=torch.cat([d.poses for d in dbs]), descriptors=torch.cat([d.descriptors for d in dbs]),
                   features=torch.cat([d.features for d in dbs]), scene_index=torch.cat(sidx),
                   frame_ids=[i for d in dbs for i in d.frame_ids], scenes=scenes, model=dbs[0].model,
                   meta={"concat_of": [d.meta for d in dbs]},
                   keypoints=None if kps[0] is None else KeypointSet.concat(kps),
                   dense=None if dns[0] is None else DenseSet.concat(dns))


def load_pair(model_path: Path | str, db_path: Path | str, device: str | torch.device = "cpu"):
    """Load a model file and a database and check that they belong together."""
    model, info = load_model(model_path, device)
    db = FrameDatabase.load(db_path)
    db.check_model(info, db_path)
    return model, info, db
