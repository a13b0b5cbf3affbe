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
  camera (:class:`DriftingOdometry`: it restarts at the identity with every sequence, and its
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
published with the data: the depth optical frame is put at the colour one (an
approximation) unless the scene's ``intrinsics.yaml`` says ``depth_registered: true``, in
which case it is exact. The bag's ``custom_data`` records the scene, split, sequences, rate,
stamps of each sequence and the registration flag (keys ``reloc_ros.*``).

Type definitions and RIHS01 hashes come from the rosbags type store of ROS 2 Kilted (same
for these types in Jazzy); the metadata is version 9, as Jazzy writes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from reloc_ros import __version__
from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import invert
from reloc_ros.data.sevenscenes import (
    Frame,
    Scene,
    SevenScenesError,
    read_color,
    read_depth_raw,
    read_pose,
)
from reloc_ros.ros import messages as msgs
from reloc_ros.tools.bag import topics as tp
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
    "frame_stamps",
    "convert_scene",
    "main",
]

#: Stamp of the first frame when none is given (2023-11-14 22:13:20 UTC): fixed, so that the
#: same scene always gives the same bag.
DEFAULT_START_TIME_S = 1_700_000_000
DEFAULT_RATE_HZ = 30.0
DEFAULT_SEQUENCE_GAP_S = 1.0
STORAGES = ("mcap", "sqlite3")
COMPRESSIONS = ("none", "jpeg", "png")
#: Prefix of the keys this converter writes into the bag's custom_data.
CUSTOM_PREFIX = "reloc_ros."
#: Files a rosbag2 folder may hold; ``--overwrite`` deletes nothing else.
_BAG_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal", ".zstd")
_NS = 1_000_000_000


# --------------------------------------------------------------------------- stamps
def _to_ns(seconds: float | int | str | Decimal) -> int:
    """Integer nanoseconds of a time in seconds, without float rounding for strings/ints."""
    try:
        d = Decimal(str(seconds)) if not isinstance(seconds, Decimal) else seconds
    except InvalidOperation:
        raise ValueError(f"not a time in seconds: {seconds!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite time: {seconds!r}")
    return int((d * _NS).to_integral_value())


def frame_stamps(
    counts: Sequence[int],
    rate_hz: float = DEFAULT_RATE_HZ,
    start_time_s: float | int | str = DEFAULT_START_TIME_S,
    sequence_gap_s: float = DEFAULT_SEQUENCE_GAP_S,
) -> list[list[int]]:
    """Stamps (integer ns) of the frames of consecutive sequences with ``counts`` frames.

    Frame ``i`` of a sequence is ``i / rate_hz`` after its first frame (rounded to the
    nanosecond, without accumulating error); a sequence starts ``sequence_gap_s`` after the
    last frame of the previous one; the first starts at ``start_time_s``.
    """
    if not (rate_hz > 0 and np.isfinite(rate_hz)):
        raise ValueError(f"rate must be a positive number of Hz, got {rate_hz!r}")
    if not (sequence_gap_s > 0 and np.isfinite(sequence_gap_s)):
        raise ValueError(f"sequence gap must be positive, got {sequence_gap_s!r}")
    t0 = _to_ns(start_time_s)
    if t0 < 0:
        raise ValueError(f"start time must be >= 0, got {start_time_s!r}")
    rate = Decimal(str(rate_hz))
    gap = _to_ns(sequence_gap_s)
    out: list[list[int]] = []
    for n in counts:
        stamps = [t0 + int((Decimal(i) * _NS / rate).to_integral_value()) for i in range(int(n))]
        out.append(stamps)
        if stamps:
            t0 = stamps[-1] + gap
    return out


# --------------------------------------------------------------------------- output folder
def _prepare_output(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out}: output already exists; pass --overwrite (overwrite=True) to replace it"
        )
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a bag folder; not replacing it")
    foreign = [
        p.name
        for p in out.iterdir()
        if p.is_dir() or p.is_symlink() or not (p.name == "metadata.yaml" or p.name.endswith(_BAG_SUFFIXES))
    ]
    if foreign:
        raise FileExistsError(
            f"{out}: does not look like a rosbag2 folder (holds {', '.join(sorted(foreign)[:5])}); "
            "not deleting it with --overwrite"
        )
    shutil.rmtree(out)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- frame sources
def _check_size(path: Path, size: tuple[int, int], intr: Intrinsics, what: str) -> None:
    if size != (intr.width, intr.height):
        raise SevenScenesError(
            path,
            f"{what} image is {size[0]}x{size[1]} but the scene's {what} intrinsics are "
            f"{intr.width}x{intr.height}",
        )


def _passthrough(path: Path, fmt: str) -> bytes | None:
    """The file's bytes when it already is an 8-bit RGB ``fmt`` file (stored as is), else None."""
    want = {"jpeg": "JPEG", "png": "PNG"}[fmt]
    try:
        with PILImage.open(path) as im:
            ok = im.format == want and im.mode == "RGB"
    except FileNotFoundError:
        raise SevenScenesError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SevenScenesError(path, f"unreadable image ({e})") from None
    return path.read_bytes() if ok else None


def _image_size(data: bytes, path: Path) -> tuple[int, int]:
    import io

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SevenScenesError(path, f"unreadable image ({e})") from None


def _ordered_map(fn, items: Sequence, workers: int) -> Iterator:
    """``map(fn, items)`` computed by ``workers`` threads, in order, at most ``2 x workers``
    items ahead of the consumer. Exceptions surface at their item."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bagload") as pool:
        pending: deque = deque()
        it = iter(items)
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


@dataclass(frozen=True)
class BagPlan:
    """What goes into a bag, resolved and validated before anything is written.

    Attributes:
        scene: the source scene.
        split: 'train', 'test', 'all' or the list of sequences.
        sequences: the sequences, in bag order.
        frames: the frames, in bag order.
        stamps: their stamps (integer ns).
        starts: per sequence ``{seq, frames, first_ns, last_ns}``.
        topics: topic and frame names.
        storage: 'mcap' or 'sqlite3'.
        compressed: None (rgb8 Image), 'jpeg' or 'png'.
        depth: write depth and its camera info.
        jpeg_quality, reencode: how compressed colour is made (see :func:`convert_scene`).
        rate_hz, sequence_gap_s: the stamp schedule.
        distro: type definitions ('kilted' or 'jazzy').
    """

    scene: Scene
    split: str | list[int]
    sequences: list[int]
    frames: list[Frame]
    stamps: list[int]
    starts: list[dict]
    topics: BagTopics
    storage: str
    compressed: str | None
    depth: bool
    jpeg_quality: int
    reencode: bool
    rate_hz: float
    sequence_gap_s: float
    distro: str
    odometry: float | None = None

    @property
    def color_topic(self) -> str:
        return self.topics.color_compressed if self.compressed else self.topics.color_image

    def connections(self) -> list[tuple[str, str, object]]:
        """(topic, type, offered QoS) of every connection, in the order they are added."""
        t = self.topics
        specs = [
            (t.tf_static, tp.TF_MESSAGE, tp.QOS_TF_STATIC),
            (t.tf, tp.TF_MESSAGE, tp.QOS_TF),
            (t.gt_pose, tp.POSE_STAMPED, tp.QOS_SENSOR),
            (t.frame_id, tp.STRING, tp.QOS_SENSOR),
            (t.color_info, tp.CAMERA_INFO, tp.QOS_SENSOR),
            (self.color_topic, tp.COMPRESSED_IMAGE if self.compressed else tp.IMAGE, tp.QOS_SENSOR),
        ]
        if self.depth:
            specs += [(t.depth_info, tp.CAMERA_INFO, tp.QOS_SENSOR), (t.depth_image, tp.IMAGE, tp.QOS_SENSOR)]
        return specs

    def custom_data(self, scene_dir: Path | str) -> dict[str, str]:
        """The ``reloc_ros.*`` entries of the bag's custom_data (without the prefix)."""
        sc = self.scene
        return {
            "scene": sc.name,
            "scene_dir": str(Path(scene_dir).resolve()),
            "split": self.split if isinstance(self.split, str) else ",".join(map(str, self.split)),
            "sequences": ",".join(map(str, self.sequences)),
            "frames": str(len(self.frames)),
            "rate_hz": repr(float(self.rate_hz)),
            "start_time_ns": str(self.stamps[0]) if self.stamps else "",
            "sequence_gap_s": repr(float(self.sequence_gap_s)),
            "sequence_stamps": json.dumps(self.starts, separators=(",", ":")),
            "frame_id_topic": self.topics.frame_id,
            "depth_registered": "true" if sc.camera["depth_registered"] else "false",
            "intrinsics_source": str(sc.camera["source"]),
            "converter": f"reloc_ros.tools.bag.convert {__version__}",
        }


def _check_split(scene: Scene, split) -> str | list[int]:
    if isinstance(split, str):
        if split not in ("train", "test", "all"):
            raise ValueError(f"unknown split {split!r}: use 'train', 'test', 'all' or a list of sequences")
        return split
    split = [int(s) for s in split]
    if not split:
        raise ValueError("the list of sequences is empty")
    if len(set(split)) != len(split):
        raise ValueError(f"a sequence is listed twice: {split}")
    for s in split:
        if not scene.seq_dir(s).is_dir():
            raise SevenScenesError(scene.seq_dir(s), "sequence folder is missing")
    return split


def plan_conversion(
    scene_dir: Path | str,
    split: str | Sequence[int] = "test",
    *,
    storage: str = "mcap",
    rate_hz: float = DEFAULT_RATE_HZ,
    compressed: str | None = None,
    depth: bool = False,
    start_time_s: float | int | str = DEFAULT_START_TIME_S,
    sequence_gap_s: float = DEFAULT_SEQUENCE_GAP_S,
    max_frames: int | None = None,
    topics: BagTopics | None = None,
    jpeg_quality: int = 95,
    reencode: bool = False,
    distro: str = tp.DEFAULT_DISTRO,
    odometry: float | None = None,
) -> BagPlan:
    """Check every option and the scene, and work out the frames and stamps (writes nothing).

    The arguments are those of :func:`convert_scene`.

    Raises:
        SevenScenesError: the scene or a sequence folder or depth file is missing.
        ValueError: a bad option.
    """
    compressed = None if compressed in (None, "none", "") else compressed
    if compressed not in (None, "jpeg", "png"):
        raise ValueError(f"compressed must be one of {', '.join(COMPRESSIONS)}, got {compressed!r}")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    if distro not in tp.DISTROS:
        raise ValueError(f"unknown ROS 2 distribution {distro!r}: use one of {', '.join(tp.DISTROS)}")
    if isinstance(start_time_s, str) and start_time_s.strip().lower() == "now":
        start_time_s = repr(time.time())
    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if odometry is not None and not (np.isfinite(odometry) and 0 <= odometry < 1):
        raise ValueError(f"odometry drift must be a fraction in [0, 1), got {odometry}")
    scene = Scene(Path(scene_dir))
    split = _check_split(scene, split)
    frames = scene.frames(split)
    if max_frames is not None:
        frames = frames[: int(max_frames)]
    if depth:
        for f in frames:
            if f.depth_path is None:
                raise SevenScenesError(f.pose_path.with_name(f"frame-{f.index:06d}.depth.png"),
                                       "depth file is missing (needed by --depth)")
    # group consecutive frames by sequence (frames are sorted by sequence then index)
    groups: list[tuple[int, int]] = []
    for f in frames:
        if groups and groups[-1][0] == f.seq:
            groups[-1] = (f.seq, groups[-1][1] + 1)
        else:
            groups.append((f.seq, 1))
    per_seq = frame_stamps([n for _, n in groups], rate_hz, start_time_s, sequence_gap_s)
    starts = [{"seq": seq, "frames": n, "first_ns": st[0], "last_ns": st[-1]}
              for (seq, n), st in zip(groups, per_seq)]
    return BagPlan(scene=scene, split=split, sequences=[s for s, _ in groups], frames=frames,
                   stamps=[t for seq_stamps in per_seq for t in seq_stamps], starts=starts,
                   topics=topics or BagTopics(), storage=storage, compressed=compressed, depth=bool(depth),
                   jpeg_quality=int(jpeg_quality), reencode=bool(reencode), rate_hz=float(rate_hz),
                   sequence_gap_s=float(sequence_gap_s), distro=distro,
                   odometry=None if odometry is None else float(odometry))


class _FrameReader:
    """Reads and checks one frame's files (run in worker threads: PIL decodes without the GIL)."""

    def __init__(self, plan: BagPlan):
        self.plan = plan
        self.color_intr, self.depth_intr = plan.scene.color_intrinsics, plan.scene.depth_intrinsics

    def __call__(self, f: Frame):
        plan = self.plan
        T = read_pose(f.pose_path)
        if plan.compressed:
            data = None if plan.reencode else _passthrough(f.color_path, plan.compressed)
            if data is None:
                rgb = read_color(f.color_path)
                _check_size(f.color_path, (rgb.shape[1], rgb.shape[0]), self.color_intr, "colour")
                data = msgs.encode_compressed(rgb, plan.compressed, quality=plan.jpeg_quality)
            else:
                _check_size(f.color_path, _image_size(data, f.color_path), self.color_intr, "colour")
            color = data
        else:
            color = read_color(f.color_path)
            _check_size(f.color_path, (color.shape[1], color.shape[0]), self.color_intr, "colour")
        raw = None
        if plan.depth:
            raw = read_depth_raw(f.depth_path)
            _check_size(f.depth_path, (raw.shape[1], raw.shape[0]), self.depth_intr, "depth")
        return T, color, raw


class DriftingOdometry:
    r"""The odometry a robot would give along one sequence: the camera's motion since the
    sequence's first frame, with errors that grow with the path travelled.

    With :math:`T_i` the ground-truth camera poses (optical axes), :math:`s_i` the path
    length up to frame i and :math:`\delta` the drift,
    :math:`T^{odom}_i = \mathrm{diag}(R_y(\delta s_i), 1)\,S\,T_0^{-1} T_i` where :math:`S`
    scales positions by :math:`1 + \delta` and :math:`R_y` turns about the first camera's y
    axis (the image's down direction: a heading drift). The frame ``odom`` is the first
    camera's optical frame; :meth:`__call__` returns ``odom -> camera_link``.

    Args:
        drift: :math:`\delta` (0.02: 2 % scale error and 0.02 rad, 1.15°, of heading per metre).
    """

    def __init__(self, drift: float):
        self.drift = float(drift)
        self.reset()

    def reset(self) -> None:
        """Start a new sequence (the odometry restarts at the identity)."""
        self._T0_inv = None
        self._last = None
        self.path_m = 0.0

    def __call__(self, T_map_opt: np.ndarray) -> np.ndarray:
        """``odom -> camera_link`` at the frame whose ground truth is ``T_map_opt``."""
        T = np.asarray(T_map_opt, dtype=np.float64)
        if self._T0_inv is None:
            self._T0_inv = invert(T)
        else:
            self.path_m += float(np.linalg.norm(T[:3, 3] - self._last[:3, 3]))
        self._last = T
        rel = self._T0_inv @ T
        a = self.drift * self.path_m
        D = np.eye(4)
        D[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        rel[:3, 3] *= 1 + self.drift
        T_odom_opt = D @ rel
        T_link_opt = np.eye(4)
        T_link_opt[:3, :3] = tp.OPTICAL_ROTATION
        return T_odom_opt @ invert(T_link_opt)


def _frame_messages(plan: BagPlan, f: Frame, stamp: int, T, color, raw, types,
                    T_odom: np.ndarray | None = None) -> list[tuple[str, object, str]]:
    """(topic, message, type) of everything one frame puts into the bag (``T_odom``:
    odom -> camera_link, or None)."""
    t = plan.topics
    intr = plan.scene
    tfs = [msgs.transform_stamped_msg(T, stamp, t.map_frame, t.gt_frame, types=types)]
    if T_odom is not None:
        tfs.append(msgs.transform_stamped_msg(T_odom, stamp, t.odom_frame, t.camera_frame, types=types))
    out = [
        (t.tf, msgs.tf_message(tfs, types), tp.TF_MESSAGE),
        (t.gt_pose, msgs.pose_stamped_msg(T, stamp, t.map_frame, types), tp.POSE_STAMPED),
        (t.frame_id, msgs.string_msg(f.id, types), tp.STRING),
        (t.color_info, msgs.camera_info_msg(intr.color_intrinsics, stamp, t.color_optical_frame, types),
         tp.CAMERA_INFO),
    ]
    if plan.compressed:
        out.append((plan.color_topic, msgs.compressed_image_msg(color, plan.compressed, stamp, t.color_optical_frame,
                                                                types), tp.COMPRESSED_IMAGE))
    else:
        out.append((plan.color_topic, msgs.image_msg(color, stamp, t.color_optical_frame, "rgb8", types), tp.IMAGE))
    if plan.depth:
        out += [(t.depth_info, msgs.camera_info_msg(intr.depth_intrinsics, stamp, t.depth_optical_frame, types),
                 tp.CAMERA_INFO),
                (t.depth_image, msgs.image_msg(raw, stamp, t.depth_optical_frame, "16UC1", types), tp.IMAGE)]
    return out


def write_bag(plan: BagPlan, out: Path | str, scene_dir: Path | str, *, overwrite: bool = False, workers: int = 1,
              progress: bool = True) -> dict:
    """Write a planned bag into the folder ``out`` (removed again if anything fails).

    Args:
        plan: from :func:`plan_conversion`.
        out: the bag folder to create (it must not exist unless ``overwrite``).
        scene_dir: the scene folder as given (recorded in the custom data).
        overwrite: replace an existing bag folder (never a folder holding other files).
        workers: threads that read and decode the images ahead of the writer.
        progress: print a line per sequence.

    Returns:
        The summary described in :func:`convert_scene`.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t_start = time.perf_counter()
    out = Path(out)
    types = msgs.rosbags_types(plan.distro)
    store = types.store
    _prepare_output(out, overwrite)
    specs = plan.connections()
    counts = {topic: 0 for topic, _, _ in specs}
    writer = Writer(out, version=9,
                    storage_plugin=StoragePlugin.MCAP if plan.storage == "mcap" else StoragePlugin.SQLITE3)
    for k, v in plan.custom_data(scene_dir).items():
        writer.set_custom_data(CUSTOM_PREFIX + k, v)

    created = False
    loaded: Iterator | None = None
    try:
        writer.open()
        created = True
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store, serialization_format="cdr",
                                              offered_qos_profiles=[qos])
                 for topic, msgtype, qos in specs}

        def write(topic: str, message, msgtype: str, stamp: int) -> None:
            writer.write(conns[topic], stamp, store.serialize_cdr(message, msgtype))
            counts[topic] += 1

        if plan.frames:
            t = plan.topics
            links = [(t.camera_frame, t.color_optical_frame)] + (
                [(t.camera_frame, t.depth_optical_frame)] if plan.depth else [])
            write(t.tf_static, tp.optical_links_msg(links, plan.stamps[0], types), tp.TF_MESSAGE, plan.stamps[0])
        loaded = _ordered_map(_FrameReader(plan), plan.frames, int(workers))
        i = 0
        odom = DriftingOdometry(plan.odometry) if plan.odometry is not None else None
        for group in plan.starts:
            t_seq = time.perf_counter()
            if odom is not None:
                odom.reset()
            for _ in range(group["frames"]):
                f, stamp = plan.frames[i], plan.stamps[i]
                i += 1
                T, color, raw = next(loaded)
                for topic, message, msgtype in _frame_messages(plan, f, stamp, T, color, raw, types,
                                                               odom(T) if odom is not None else None):
                    write(topic, message, msgtype, stamp)
            if progress:
                dt = time.perf_counter() - t_seq
                print(f"  seq-{group['seq']:02d}: {group['frames']} frames, "
                      f"t = {group['first_ns'] / _NS:.3f} .. {group['last_ns'] / _NS:.3f} s "
                      f"({group['frames'] / max(dt, 1e-9):.0f} frames/s)", flush=True)
        writer.close()
    except BaseException:
        if loaded is not None:
            loaded.close()  # stop the reading threads first
        writer.abort()
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise

    seconds = time.perf_counter() - t_start
    n = len(plan.frames)
    return {
        "bag": str(out), "storage": plan.storage, "scene": plan.scene.name, "split": plan.split,
        "sequences": plan.sequences, "frames": n,
        "topics": {topic: {"type": msgtype, "count": counts[topic]} for topic, msgtype, _ in specs},
        "messages": sum(counts.values()), "compressed": plan.compressed or "none", "depth": plan.depth,
        "depth_registered": bool(plan.scene.camera["depth_registered"]), "rate_hz": plan.rate_hz,
        "start_ns": plan.stamps[0] if n else None, "end_ns": plan.stamps[-1] if n else None,
        "duration_s": (plan.stamps[-1] - plan.stamps[0]) / _NS if n else 0.0, "seconds": seconds,
        "frames_per_s": n / seconds if seconds > 0 else float("inf"), "bytes": _folder_bytes(out),
    }


def convert_scene(
    scene_dir: Path | str,
    out: Path | str,
    split: str | Sequence[int] = "test",
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
    **options,
) -> dict:
    """Write the frames of a 7-Scenes scene into a rosbag2 folder ``out``: :func:`plan_conversion`
    then :func:`write_bag`.

    Args:
        scene_dir: the scene folder (``TrainSplit.txt``, ``TestSplit.txt``, ``seq-XX``).
        out: the bag folder to create (it must not exist unless ``overwrite``).
        split: 'test', 'train', 'all' or a list of sequence numbers (in that order).
        overwrite: replace an existing bag folder (never a folder holding other files).
        workers: threads that read and decode the images ahead of the writer (1: none, the
            default; more helps only where spare cores are free).
        progress: print a line per sequence.
        options: those of :func:`plan_conversion`: ``storage`` ('mcap' or 'sqlite3'),
            ``rate_hz`` (frame rate of the stamps), ``compressed`` (None / 'none': rgb8 Image;
            'jpeg' or 'png': CompressedImage), ``depth`` (also write depth and its camera
            info), ``start_time_s`` (stamp of the first frame: seconds since the epoch; a
            string keeps every digit; 'now' for the wall clock), ``sequence_gap_s``,
            ``max_frames`` (the first N frames of the split), ``topics`` (:class:`BagTopics`),
            ``jpeg_quality``, ``reencode`` (encode compressed images even when the source
            file could be stored as is), ``distro`` ('kilted' or 'jazzy').

    Returns:
        A summary: bag, storage, scene, split, sequences, frames, topics (type, count),
        messages, start_ns, end_ns, duration_s (bag time), seconds (wall), frames_per_s, bytes.

    Raises:
        SevenScenesError: the scene or one of its files is missing or malformed.
        FileExistsError: ``out`` exists (without ``overwrite``) or is not a bag folder.
        ValueError: a bad option.
    """
    plan = plan_conversion(scene_dir, split, **options)
    return write_bag(plan, out, scene_dir, overwrite=overwrite, workers=workers, progress=progress)


def summary_line(s: dict) -> str:
    """One line describing a :func:`convert_scene` summary."""
    seqs = ", ".join(str(x) for x in s["sequences"])
    return (
        f"wrote {s['frames']} frames of {s['scene']} (sequence(s) {seqs}) to {s['bag']}: "
        f"{s['storage']}, {s['bytes'] / 1e6:.1f} MB, {len(s['topics'])} topics, {s['messages']} messages, "
        f"{s['duration_s']:.2f} s of bag time; "
        f"converted in {s['seconds']:.2f} s ({s['frames_per_s']:.0f} frames/s)"
    )


# --------------------------------------------------------------------------- command line
def _parse_sequences(text: str) -> list[int]:
    try:
        seqs = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sequence numbers, got {text!r}") from None
    if not seqs:
        raise argparse.ArgumentTypeError("no sequence given")
    return seqs


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.convert SCENE_DIR --out BAG_DIR ...``."""
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
    args = p.parse_args(argv)

    try:
        topics = BagTopics().with_overrides(args.remap)
        split = args.sequences if args.sequences is not None else args.split
        if not args.quiet:
            which = split if isinstance(split, str) else "sequences " + ",".join(map(str, split))
            print(f"converting {args.scene_dir} ({which}) -> {args.out}", flush=True)
        summary = convert_scene(
            args.scene_dir,
            args.out,
            split,
            storage=args.storage,
            rate_hz=args.rate,
            compressed=args.compressed,
            depth=args.depth,
            start_time_s=args.start_time,
            sequence_gap_s=args.sequence_gap,
            max_frames=args.max_frames,
            overwrite=args.overwrite,
            topics=topics,
            jpeg_quality=args.jpeg_quality,
            reencode=args.reencode,
            distro=args.distro,
            odometry=args.odometry,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (SevenScenesError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
