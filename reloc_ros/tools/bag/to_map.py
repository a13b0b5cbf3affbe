"""Bring your own map: a robot's rosbag2 to a scene in the 7-Scenes layout, or to a database.

Command line::

    python -m reloc_ros.tools.bag.to_map BAG --out SCENE_DIR [--config config/bag_to_map.yaml]
        [--image-topic /camera/color/image_raw[/compressed]] [--depth-topic /camera/depth/image_rect_raw]
        [--pose-source tf|topic|tum] [--map-frame map] [--pose-topic /slam/pose] [--trajectory traj.tum]
        [--no-keyframes] [--keyframe-m 0.05] [--keyframe-deg 5] [--max-frames N] [--overwrite] ...
    python -m reloc_ros.tools.bag.to_map BAG --database map.db.pt --model model.pt [--dense] [--keypoints]

The command first checks every input and output (:func:`check_inputs`): the bag folder,
the TUM trajectory, the scene folder (not clobbered, creatable) and, with ``--database``,
the database file, the split, the device and the model file, which is loaded. A problem
stops it with one ``error:`` line naming the file and the problem, before anything is read
or written. Then :func:`main` runs the stages in order; each is a function:

1. :func:`scan` reads everything but the pixels: the TF tree (``/tf`` and ``/tf_static``),
   the pose topic or the TUM trajectory, the camera infos, and the header stamps of the
   images. Header stamps must not go backwards within a topic (within an edge, for TF).
2. :func:`camera_poses`: the pose of the colour optical frame in the map frame at each
   image stamp, through :class:`~reloc_ros.ros.tf_store.TransformStore` (tf2's lookup:
   chains of any length, static edges from ``/tf_static``, lerp + slerp on dynamic edges).
   Pose sources (``pose_source``):

   * ``tf``: ``map_frame -> camera frame`` (the images' ``header.frame_id``) from TF;
   * ``topic``: a ``PoseStamped`` (pose of ``pose_frame``) or ``Odometry`` (pose of its
     ``child_frame_id``) topic in its header's frame, chained to the camera through the
     static edges of ``/tf_static``;
   * ``tum``: a trajectory file ``stamp tx ty tz qx qy qz qw`` (the pose of ``pose_frame``
     in ``map_frame``, as SLAM saves an optimised trajectory), chained the same way.

   An image has a pose when every dynamic edge on its path has a sample within
   ``pose_tolerance_s`` of its stamp (interpolated between, held beyond the last one).
3. :func:`select_frames`: skips the images with no pose, the blurred ones (variance of the
   Laplacian below ``blur_ratio`` x the median of the images within ``blur_window_s``) and,
   with depth, those with no depth image within ``depth_tolerance_s``; then keyframes (a
   new frame once the camera has moved ``keyframe_m`` or turned ``keyframe_deg`` since the
   last one kept; ``keyframes: false`` keeps all) and the cap ``max_frames`` (evenly spaced).
   Every skipped image is counted with its reason.
4. :func:`split_blocks`: one recording has no separate test sequences, so time blocks are
   held out: every ``test_every``-th block of ``test_block_s`` seconds is a test block, and
   training frames within ``guard_s`` of one are dropped. Runs of training (test) frames
   become the sequences of ``TrainSplit.txt`` (``TestSplit.txt``); the coverage of the test
   frames by the training frames is printed (:mod:`reloc_ros.data.coverage`).
5. :func:`write_scene` writes the scene: colour (``.color.png``, or the bag's JPEG bytes as
   ``.color.jpg``), depth registered to the colour camera (``.depth.png``, uint16 mm, 0 =
   none: reprojected through the extrinsic when it is in another optical frame, resampled
   when only the size differs), ``.pose.txt``, the splits, ``intrinsics.yaml`` and
   ``conversion.json`` + ``frames.csv`` (what was read, kept and skipped). Images with lens
   distortion are undistorted (OpenCV; ``distortion: refuse`` stops instead). The folder is
   written under a temporary name and renamed when complete: it is complete or absent.
6. With ``--database``: :func:`reloc_ros.mapping.database.build_database` on the written scene
   (:func:`~reloc_ros.tools.bag.map_database.build_scene_database`, with the model loaded by
   the checks).

Every problem with the bag raises :class:`BagMapError`, whose message names the bag, the
topic and the problem; a problem with another input or output raises
:class:`~reloc_ros.tools.bag.map_config.MapInputError`, ``FileExistsError`` or the model
file's :class:`~reloc_ros.core.model.ModelFileError`, each one line naming the path.

This module is the command line and the pipeline. The stages live beside it:
:mod:`~reloc_ros.tools.bag.map_config` (settings, errors), :mod:`~reloc_ros.tools.bag.map_scan`
(stages 1-2), :mod:`~reloc_ros.tools.bag.map_select` (stages 3-4),
:mod:`~reloc_ros.tools.bag.map_write` (stage 5) and :mod:`~reloc_ros.tools.bag.map_database`
(stage 6).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from reloc_ros.core.files import FileProblem
from reloc_ros.data import registration as reg
from reloc_ros.data.coverage import coverage
from reloc_ros.tools.bag.map_config import BagMapError, MapConfig, MapInputError, load_conf
from reloc_ros.tools.bag.map_database import DatabaseJob, DatabaseRequest, build_scene_database, prepare_database
from reloc_ros.tools.bag.map_scan import (
    BagScan,
    CameraModel,
    camera_poses,
    checked_bag,
    depth_extrinsic,
    read_tum,
    scan,
)
from reloc_ros.tools.bag.map_select import Selection, measure_sharpness, select_frames, sharpness, split_blocks
from reloc_ros.tools.bag.map_write import check_scene_out, write_scene

__all__ = ["BagMapError", "MapInputError", "MapConfig", "BagScan", "CameraModel", "Selection", "scan",
           "camera_poses", "depth_extrinsic", "sharpness", "measure_sharpness", "select_frames", "split_blocks",
           "write_scene", "read_tum", "check_inputs", "main", "summary_text", "build_parser", "cli"]

_NS = 1_000_000_000


# --------------------------------------------------------------------------- 0. inputs
def check_inputs(conf: MapConfig, bag: Path | str, out: Path | None, *, overwrite: bool = False,
                 database: DatabaseRequest | None = None) -> DatabaseJob | None:
    """Check every input and output of a conversion before anything is read or written.

    Args:
        conf: the settings (its TUM trajectory is read).
        bag: the rosbag2 folder.
        out: the scene folder to write (None: a temporary one, for ``database`` only).
        overwrite: an existing scene folder (written by this converter) or database file
            may be replaced.
        database: what ``--database`` asks for, or None.

    Returns:
        The database job, its model loaded (None without ``database``).

    Raises:
        BagMapError: not a bag folder.
        ValueError: an unreadable or malformed trajectory (naming the file and the line).
        FileExistsError: an output exists (without ``overwrite``).
        MapInputError: an output that cannot be created, a bad split or device.
        FileProblem: the model file cannot be loaded (one line naming it).
    """
    checked_bag(bag)
    if conf.pose_source == "tum":
        read_tum(conf.trajectory)  # its ValueError names the file and the line
    if out is not None:
        check_scene_out(Path(out), overwrite)
    return prepare_database(database, overwrite, out) if database is not None else None


# --------------------------------------------------------------------------- pipeline
def _frame_summary(s: BagScan, sel: Selection, roles: Sequence[str], poses: Sequence) -> dict:
    """The counts, skips, path length and coverage that ``conversion.json`` records.

    Args:
        s: the scan.
        sel: the selection.
        roles: the role of each kept frame.
        poses: the camera pose of each image.

    Raises:
        BagMapError: no frame is left to map.
    """
    conf = s.conf
    skipped = dict(sel.skipped, **{"in a guard gap": sum(r == "guard" for r in roles)})
    kept = [k for k, r in zip(sel.kept, roles) if r != "guard"]
    if not kept:
        raise BagMapError(s.bag, conf.image_topic, f"no frame left to map (skipped: {skipped})")
    T_train = np.stack([poses[k] for k, r in zip(sel.kept, roles) if r == "train"] or [np.eye(4)])
    test_T = [poses[k] for k, r in zip(sel.kept, roles) if r == "test"]
    cov = coverage(T_train, np.stack(test_T), "test blocks vs train blocks").as_dict() if test_T else None
    span = (s.image_ns[-1] - s.image_ns[0]) / _NS
    return {"images_read": len(s.image_ns), "frames_kept": len(kept),
            "train_frames": sum(r == "train" for r in roles), "test_frames": sum(r == "test" for r in roles),
            "skipped": skipped, "path_m": round(sel.path_m, 4), "duration_s": round(span, 3),
            "coverage": cov, "tf": s.counts, "depth": s.depth is not None,
            "undistorted": reg.has_distortion(s.color.D)}


def main(conf: MapConfig, bag: Path | str, out: Path | str, *, overwrite: bool = False,
         progress: bool = True, log: Callable[[str], None] | None = print) -> dict:
    """Convert ``bag`` into the scene folder ``out`` (stages 1-5).

    Args:
        conf: the settings.
        bag: the rosbag2 folder.
        out: the scene folder to write.
        overwrite: replace an ``out`` written by this converter.
        progress: show progress bars.
        log: ``log(str)`` for the closing summary (None: quiet).

    Returns:
        The summary that ``conversion.json`` holds (counts, skipped by reason, path length,
        coverage).
    """
    t0 = time.time()
    check_scene_out(Path(out), overwrite)  # before reading the bag
    s = scan(bag, conf, progress)
    poses = camera_poses(s)
    depth_extrinsic(s)  # fail before reading any pixel
    sharp = measure_sharpness(s, poses, progress)
    sel = select_frames(s, poses, sharp)
    roles = split_blocks([s.image_ns[k] for k in sel.kept], conf.test_block_s, conf.test_every, conf.guard_s)
    extra = _frame_summary(s, sel, roles, poses)
    summary = write_scene(s, poses, sel, roles, out, overwrite=overwrite, progress=progress, extra=extra)
    summary["seconds"] = round(time.time() - t0, 2)
    if log:
        log(summary_text(summary, out))
    return summary


def summary_text(s: dict, out: Path | str) -> str:
    """The lines printed after a conversion.

    Args:
        s: the summary (:func:`main`).
        out: the scene folder.
    """
    lines = [f"read {s['images_read']} images from {s['bag']} ({s['duration_s']:.1f} s, "
             f"{s['path_m']:.2f} m of camera path)"]
    lines += [f"  skipped {v:5d}: {k}" for k, v in s["skipped"].items()]
    lines.append(f"kept {s['frames_kept']} frames in {out}: {s['train_frames']} train in "
                 f"{len(s['train_sequences'])} sequence(s), {s['test_frames']} test in "
                 f"{len(s['test_sequences'])} sequence(s)")
    cv = s.get("coverage")
    if cv:
        lines.append(f"coverage of the test blocks by the train blocks: median oracle neighbour {cv['median_d_m']:.3f} m"
                     f" / {cv['median_r_deg']:.1f}°, {100 * cv['within_50cm_30deg']:.0f} % within 0.5 m and 30°, "
                     f"{100 * cv['within_25cm_15deg']:.0f} % within 0.25 m and 15° (real 7-Scenes: 0.265 m / 9.9°, "
                     "95 %, 46 %)")
    else:
        lines.append("no test block: the recording is shorter than test_every x test_block_s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments: the command's own, and one flag per :class:`MapConfig` field."""
    ap = argparse.ArgumentParser(prog="python -m reloc_ros.tools.bag.to_map",
                                 description="Convert a robot's rosbag2 into a 7-Scenes-layout scene, or a database")
    ap.add_argument("bag", type=Path, help="the rosbag2 folder (mcap or sqlite3)")
    ap.add_argument("--out", type=Path, help="the scene folder to write")
    ap.add_argument("--config", type=Path, help="YAML settings (config/bag_to_map.yaml); flags override them")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an --out written by this converter (an existing --database file is always replaced)")
    ap.add_argument("--database", type=Path, help="also (or only) build a database of the scene's train split")
    ap.add_argument("--model", type=Path, help="the model file, for --database")
    ap.add_argument("--db-split", default="train", help="split the database maps (train | all | fit | test | calib)")
    ap.add_argument("--keypoints", action="store_true", help="database: SIFT keypoints for the PnP refiner")
    ap.add_argument("--dense", action="store_true", help="database: dense grids for the lm and dro refiners")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    for f in dataclasses.fields(MapConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            ap.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            ap.add_argument(flag, dest=f.name, default=None,
                            type={"int": int, "float": float}.get(str(f.type), str))
    return ap


def _run(conf: MapConfig, a: argparse.Namespace) -> None:
    """Check the inputs, convert, and build the database when asked (``a``: the parsed arguments)."""
    request = None if a.database is None else DatabaseRequest(a.database, a.model, a.device, a.db_split,
                                                              a.keypoints, a.dense)
    job = check_inputs(conf, a.bag, a.out, overwrite=a.overwrite, database=request)
    with tempfile.TemporaryDirectory(prefix="bag_to_map_") as td:
        out = a.out or Path(td) / Path(a.bag).name
        main(conf, a.bag, out, overwrite=a.overwrite, progress=not a.quiet)
        if job is not None:
            build_scene_database(job, out, progress=not a.quiet)


def cli(argv: list[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.to_map BAG --out SCENE | --database DB --model M ...``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0, or 2 with one ``error:`` line on stderr naming the bag, file or option at fault.
    """
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.out is None and a.database is None:
        ap.error("give --out (a scene), --database (with --model), or both")
    if a.database is not None and a.model is None:
        ap.error("--database needs --model")
    try:
        conf = load_conf(a.config, {f.name: getattr(a, f.name) for f in dataclasses.fields(MapConfig)})
        _run(conf, a)
    except (BagMapError, FileProblem, ValueError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
