"""Convert a 7-Scenes scene (real or synthetic) into a ROS 2 bag (rosbag2, no ROS install).

Command line::

    python -m reloc_ros.tools.bag.convert SCENE_DIR --out BAG_DIR [--split test|train|all | --sequences 1,4]
        [--storage mcap|sqlite3] [--rate 30] [--compressed {none,jpeg,png}] [--depth]
        [--start-time SECONDS|now] [--sequence-gap 1.0] [--max-frames N] [--overwrite]
        [--remap FIELD=VALUE ...] [--distro kilted|jazzy] [--jpeg-quality 95] [--reencode]
        [--workers 1] [--quiet] [--json]

    python -m reloc_ros.tools.bag.convert /data/7scenes/chess --out chess_test --depth

What goes in (names: :mod:`reloc_ros.tools.bag.topics`), for every frame and at the same stamp:

* ``/tf``: ``map`` -> ``camera_gt``, the ground-truth camera-to-world pose (optical axes);
* with ``--odometry DRIFT``: ``/tf`` ``odom`` -> ``camera_link``, a drifting odometry of the
  camera (:class:`~reloc_ros.tools.bag.convert_frames.DriftingOdometry`: it restarts at the identity with every sequence, and its
  position is off by DRIFT, e.g. 0.02, of the path travelled: a scale error of DRIFT and a
  heading drift of DRIFT rad per metre), what a robot's wheel or visual odometry gives the
  node's ``/initialpose`` gate;
* ``/camera_gt/pose``: the same pose as ``geometry_msgs/PoseStamped`` in ``map``;
* ``/reloc/frame_id``: ``std_msgs/String`` "seq-01/frame-000000", the 7-Scenes frame;
* ``/camera/color/camera_info`` and ``/camera/color/image_raw`` (rgb8), or
  ``/camera/color/image_raw/compressed`` (jpeg/png, ``--compressed``);
* with ``--depth``: ``/camera/depth/camera_info`` (the depth intrinsics) and
  ``/camera/depth/image_raw`` (16UC1, the raw millimetres of the depth PNG; 0 and 65535
  mean "no measurement").

Once, at the first stamp, on ``/tf_static`` (offered transient-local): ``camera_link`` ->
``camera_color_optical_frame`` (and ``camera_depth_optical_frame`` with ``--depth``), zero
translation and the REP-103 optical rotation (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5).

Stamps: 7-Scenes has none. Frame ``i`` of a sequence gets ``t0 + i / rate``; the next
sequence starts ``--sequence-gap`` seconds (default 1 s) after the last frame of the one
before, so a consumer can tell sequences apart by the jump. ``t0`` of the first sequence is
``--start-time`` (default 1 700 000 000 s, a fixed date so that bags are reproducible;
``now`` for the wall clock). The bag's receive timestamps equal the header stamps.

Images are checked against the intrinsics' size. With ``--compressed jpeg`` a source
``.color.jpg`` (as in some 7-Scenes copies) is stored as is (no second lossy step), and
with ``--compressed png`` a source RGB ``.color.png`` too; ``--reencode`` forces encoding.

Colour and depth of the real 7-Scenes are not registered and their relative pose is not
published with the data. Where the scene records a depth-to-colour calibration
(``python -m reloc_ros.data.rgbd fit``), the depth optical frame is put at its calibrated pose
and the camera poses are the colour camera's; otherwise the depth optical frame is put at the
colour one (an approximation), exact only where ``intrinsics.yaml`` says ``depth_registered: true``. The bag's ``custom_data`` records the scene, split, sequences, rate,
stamps of each sequence and the registration flag (keys ``reloc_ros.*``).

Type definitions and RIHS01 hashes come from the rosbags type store of ROS 2 Kilted (same
for these types in Jazzy); the metadata is version 9, as Jazzy writes it.

This module is the command line; the stages live beside it:
:mod:`~reloc_ros.tools.bag.convert_plan` (options, frames and stamps: :func:`plan_conversion`),
:mod:`~reloc_ros.tools.bag.convert_frames` (reading a frame, its messages, the simulated
odometry) and :mod:`~reloc_ros.tools.bag.convert_write` (:func:`write_bag`, and
:func:`convert_scene`, which chains the two stages).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from reloc_ros.data.sevenscenes import SevenScenesError
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.convert_frames import DriftingOdometry
from reloc_ros.tools.bag.convert_plan import (
    COMPRESSIONS,
    CUSTOM_PREFIX,
    DEFAULT_RATE_HZ,
    DEFAULT_SEQUENCE_GAP_S,
    DEFAULT_START_TIME_S,
    STORAGES,
    BagPlan,
    frame_stamps,
    plan_conversion,
)
from reloc_ros.tools.bag.convert_write import convert_scene, summary_line, write_bag
from reloc_ros.tools.bag.topics import BagTopics

__all__ = [
    "BagPlan",
    "plan_conversion",
    "write_bag",
    "DEFAULT_START_TIME_S",
    "DEFAULT_RATE_HZ",
    "DEFAULT_SEQUENCE_GAP_S",
    "STORAGES",
    "COMPRESSIONS",
    "CUSTOM_PREFIX",
    "DriftingOdometry",
    "frame_stamps",
    "convert_scene",
    "summary_line",
    "build_parser",
    "main",
]


def _parse_sequences(text: str) -> list[int]:
    """``--sequences``: comma-separated sequence numbers, e.g. "1,4"."""
    try:
        seqs = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sequence numbers, got {text!r}") from None
    if not seqs:
        raise argparse.ArgumentTypeError("no sequence given")
    return seqs


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m reloc_ros.tools.bag.convert",
        description="Convert a 7-Scenes scene into a ROS 2 bag (images, camera info, ground-truth TF and pose).",
    )
    p.add_argument(
        "scene_dir", type=Path, help="7-Scenes scene folder (holds TrainSplit.txt, TestSplit.txt, seq-XX)"
    )
    p.add_argument("--out", type=Path, required=True, help="bag folder to create")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--split", choices=("test", "train", "all"), default="test", help="split to convert (default: test)"
    )
    which.add_argument(
        "--sequences", type=_parse_sequences, help="explicit sequences, e.g. 1,4 (instead of --split)"
    )
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="storage plugin (default: mcap)")
    p.add_argument(
        "--rate", type=float, default=DEFAULT_RATE_HZ, help="frame rate of the stamps in Hz (default: 30)"
    )
    p.add_argument(
        "--compressed",
        choices=COMPRESSIONS,
        default="none",
        help="colour as CompressedImage (default: none = rgb8 Image)",
    )
    p.add_argument("--jpeg-quality", type=int, default=95, help="quality of encoded JPEGs (default: 95)")
    p.add_argument(
        "--reencode",
        action="store_true",
        help="encode compressed images even when the source file fits as is",
    )
    p.add_argument("--depth", action="store_true", help="also write depth (16UC1 mm) and its camera info")
    p.add_argument(
        "--start-time",
        default=str(DEFAULT_START_TIME_S),
        help=f"stamp of the first frame in seconds since the epoch, or 'now' (default: {DEFAULT_START_TIME_S})",
    )
    p.add_argument(
        "--sequence-gap",
        type=float,
        default=DEFAULT_SEQUENCE_GAP_S,
        help="seconds between the last frame of a sequence and the first of the next (default: 1)",
    )
    p.add_argument("--max-frames", type=int, help="keep only the first N frames")
    p.add_argument("--odometry", type=float, metavar="DRIFT",
                   help="also write a drifting odometry TF odom -> camera_link (DRIFT: e.g. 0.02)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag folder")
    p.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"rename a topic or frame (fields: {', '.join(BagTopics.field_names())})",
    )
    p.add_argument(
        "--distro", choices=tp.DISTROS, default=tp.DEFAULT_DISTRO, help="type definitions (default: kilted)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="threads reading images ahead of the writer (default: 1)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.convert SCENE_DIR --out BAG_DIR ...``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0, or 2 on a bad scene or option (one ``error:`` line on stderr).
    """
    args = build_parser().parse_args(argv)
    try:
        topics = BagTopics().with_overrides(args.remap)
        split = args.sequences if args.sequences is not None else args.split
        if not args.quiet:
            which = split if isinstance(split, str) else "sequences " + ",".join(map(str, split))
            print(f"converting {args.scene_dir} ({which}) -> {args.out}", flush=True)
        summary = convert_scene(
            args.scene_dir, args.out, split, storage=args.storage, rate_hz=args.rate, compressed=args.compressed,
            depth=args.depth, start_time_s=args.start_time, sequence_gap_s=args.sequence_gap,
            max_frames=args.max_frames, overwrite=args.overwrite, topics=topics, jpeg_quality=args.jpeg_quality,
            reencode=args.reencode, distro=args.distro, odometry=args.odometry, workers=args.workers,
            progress=not args.quiet,
        )
    except (SevenScenesError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
