"""Bag to map, stage 6 (``--database``): a frame database of the written scene.

:func:`prepare_database` runs before the bag is read: it checks the database file's path
and the split, resolves the device and loads the model, so that a bad model or path stops
the command before any conversion. :func:`build_scene_database` runs after the scene is
written (:func:`reloc_ros.mapping.database.build_database` on it).

torch is imported only here and only with ``--database``: a plain conversion does not pay for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reloc_ros.core.featuremetric import DenseConfig
from reloc_ros.data.sevenscenes import Scene
from reloc_ros.tools.bag.map_config import MapInputError
from reloc_ros.tools.bag.map_write import check_writable

__all__ = ["DB_SPLITS", "DatabaseRequest", "DatabaseJob", "check_database_out", "prepare_database",
           "build_scene_database"]

#: The splits of the written scene a database may map.
DB_SPLITS = ("train", "test", "all", "fit", "calib")


@dataclass(frozen=True)
class DatabaseRequest:
    """What ``--database`` asks for.

    Attributes:
        path: the database file to write.
        model: the model file to encode the frames with.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        split: the split of the scene to map (:data:`DB_SPLITS`).
        keypoints: also store SIFT keypoints (the PnP refiner).
        dense: also store dense grids (the lm and dro refiners).
    """

    path: Path
    model: Path
    device: str = "auto"
    split: str = "train"
    keypoints: bool = False
    dense: bool = False


@dataclass
class DatabaseJob:
    """A checked :class:`DatabaseRequest` with its model loaded.

    Attributes:
        request: the request.
        model: the network (on ``device``, eval mode).
        info: its model-file info.
        device: the torch device.
    """

    request: DatabaseRequest
    model: object
    info: object
    device: object


def check_database_out(path: Path, overwrite: bool, scene_out: Path | None = None) -> None:
    """Check that the database file ``path`` may be written.

    Args:
        path: the database file; an existing file is replaced (atomically), as it always was.
        overwrite: kept for the callers' signature (the scene folder needs it, the database
            file does not).
        scene_out: the scene folder the same command writes (it must be another path).

    Raises:
        MapInputError: ``path`` is a folder, the scene folder, or cannot be created.
    """
    path = Path(path)
    if scene_out is not None and os.path.abspath(path) == os.path.abspath(scene_out):
        raise MapInputError(path, "is also the --out scene folder; give the database another path")
    if path.is_dir():
        raise MapInputError(path, "is a folder; --database takes a file path (e.g. map.db.pt)")
    check_writable(path, "database file")


def prepare_database(req: DatabaseRequest, overwrite: bool = False, scene_out: Path | None = None) -> DatabaseJob:
    """Check a database request and load its model (before any conversion).

    Args:
        req: the request.
        overwrite: an existing database file may be replaced.
        scene_out: the scene folder the same command writes, if any.

    Raises:
        MapInputError: a bad split, device or output path.
        ModelFileError: the model file is missing, not a model, corrupt or inconsistent
            (a :class:`~reloc_ros.core.files.FileProblem`: one line naming the file).
    """
    from reloc_ros.core.device import resolve_device  # lazy: torch, only with --database
    from reloc_ros.core.model import load_model  # lazy: torch, only with --database

    if req.split not in DB_SPLITS:
        raise MapInputError("--db-split", f"unknown split {req.split!r}; use one of {', '.join(DB_SPLITS)}")
    check_database_out(req.path, overwrite, scene_out)
    try:
        dev = resolve_device(req.device)
    except (ValueError, RuntimeError) as e:
        raise MapInputError("--device", str(e)) from None
    model, info = load_model(req.model, dev)
    return DatabaseJob(req, model, info, dev)


def build_scene_database(job: DatabaseJob, scene_dir: Path, progress: bool = True,
                         log: Callable[[str], None] | None = print) -> None:
    """Encode the scene's frames into the requested database file.

    Args:
        job: from :func:`prepare_database`.
        scene_dir: the written scene folder.
        progress: show progress bars.
        log: ``log(str)`` for the closing line (None: quiet).
    """
    from reloc_ros.core.pnp import PnPConfig  # lazy: torch, only with --database
    from reloc_ros.mapping.database import build_database  # lazy: torch, only with --database

    req = job.request
    db = build_database(job.model, job.info, [Scene(scene_dir)], req.split, job.device, progress=progress,
                        keypoints=PnPConfig() if req.keypoints else None, dense=DenseConfig() if req.dense else None)
    db.save(req.path)
    if log:
        log(f"database {req.path}: {len(db)} frames, {db.bytes_per_frame():.0f} B/frame")
