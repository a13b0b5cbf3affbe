"""7-Scenes to rosbag2, stage 2: write a planned bag into its folder (complete, or removed).

:func:`convert_scene` chains the two stages: :func:`~reloc_ros.tools.bag.convert_plan.plan_conversion`
then :func:`write_bag`. What a bag holds and why: :mod:`reloc_ros.tools.bag.convert`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterator, Sequence

from rosbags.rosbag2 import StoragePlugin, Writer

from reloc_ros.ros import messages as msgs
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.convert_frames import DriftingOdometry, FrameReader, frame_messages, ordered_map
from reloc_ros.tools.bag.convert_plan import CUSTOM_PREFIX, BagPlan, plan_conversion

__all__ = ["write_bag", "convert_scene", "summary_line"]

#: Files a rosbag2 folder may hold; ``--overwrite`` deletes nothing else.
_BAG_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal", ".zstd")
_NS = 1_000_000_000


# --------------------------------------------------------------------------- output folder
def _prepare_output(out: Path, overwrite: bool) -> None:
    """Make room for the bag folder ``out``.

    Args:
        out: the bag folder to create.
        overwrite: delete an existing bag folder there (never a folder holding other files).

    Raises:
        FileExistsError: ``out`` exists (without ``overwrite``) or is not a bag folder.
    """
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
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _BagFile:
    """A rosbag2 writer with one connection per planned topic, counting what it writes.

    Args:
        out: the bag folder to create.
        plan: the bag plan (storage, connections).
        custom: the custom_data entries (keys without the prefix).
        types: the rosbags message types.
    """

    def __init__(self, out: Path, plan: BagPlan, custom: dict[str, str], types):
        self.out, self.store = out, types.store
        self.specs = plan.connections()
        self.counts = {topic: 0 for topic, _, _ in self.specs}
        self.writer = Writer(out, version=9,
                             storage_plugin=StoragePlugin.MCAP if plan.storage == "mcap" else StoragePlugin.SQLITE3)
        for k, v in custom.items():
            self.writer.set_custom_data(CUSTOM_PREFIX + k, v)
        self.created = False
        self.conns: dict = {}

    def open(self) -> None:
        """Create the folder and add the connections."""
        self.writer.open()
        self.created = True
        self.conns = {topic: self.writer.add_connection(topic, msgtype, typestore=self.store,
                                                        serialization_format="cdr", offered_qos_profiles=[qos])
                      for topic, msgtype, qos in self.specs}

    def write(self, topic: str, message, msgtype: str, stamp: int) -> None:
        """Serialize ``message`` (of type ``msgtype``) onto ``topic`` at bag time ``stamp`` (ns)."""
        self.writer.write(self.conns[topic], stamp, self.store.serialize_cdr(message, msgtype))
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml)."""
        self.writer.close()

    def abort(self) -> None:
        """Drop the bag: the writer, and the folder when this writer created it."""
        self.writer.abort()
        if self.created:
            shutil.rmtree(self.out, ignore_errors=True)


# --------------------------------------------------------------------------- writing
def _write_static(bag: _BagFile, plan: BagPlan, types) -> None:
    """The optical links on ``tf_static``, once, at the first stamp (nothing without frames)."""
    if not plan.frames:
        return
    t = plan.topics
    calib = plan.scene.camera.get("depth_to_color")
    depth = (t.camera_frame, t.depth_optical_frame) if calib is None else \
        (t.camera_frame, t.depth_optical_frame, calib.T_color_depth)  # depth -> colour optical
    links = [(t.camera_frame, t.color_optical_frame)] + ([depth] if plan.depth else [])
    bag.write(t.tf_static, tp.optical_links_msg(links, plan.stamps[0], types), tp.TF_MESSAGE, plan.stamps[0])


def _write_frames(bag: _BagFile, plan: BagPlan, loaded: Iterator, types, progress: bool) -> None:
    """Every frame's messages, sequence by sequence.

    Args:
        bag: the open bag.
        plan: the bag plan.
        loaded: what :class:`FrameReader` read, frame by frame in plan order.
        types: the rosbags message types.
        progress: print a line per sequence.
    """
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
            for topic, message, msgtype in frame_messages(plan, f, stamp, T, color, raw, types,
                                                          odom(T) if odom is not None else None):
                bag.write(topic, message, msgtype, stamp)
        if progress:
            dt = time.perf_counter() - t_seq
            print(f"  seq-{group['seq']:02d}: {group['frames']} frames, "
                  f"t = {group['first_ns'] / _NS:.3f} .. {group['last_ns'] / _NS:.3f} s "
                  f"({group['frames'] / max(dt, 1e-9):.0f} frames/s)", flush=True)


def _summary(plan: BagPlan, out: Path, specs, counts: dict[str, int], seconds: float) -> dict:
    """The summary of a written bag (see :func:`convert_scene`).

    Args:
        plan: the bag plan.
        out: the bag folder.
        specs: its connections (topic, type, QoS).
        counts: messages written per topic.
        seconds: wall time of the conversion.
    """
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


def write_bag(plan: BagPlan, out: Path | str, scene_dir: Path | str, *, overwrite: bool = False, workers: int = 1,
              progress: bool = True) -> dict:
    """Write a planned bag into the folder ``out`` (removed again if anything fails).

    Args:
        plan: from :func:`~reloc_ros.tools.bag.convert_plan.plan_conversion`.
        out: the bag folder to create (it must not exist unless ``overwrite``).
        scene_dir: the scene folder as given (recorded in the custom data).
        overwrite: replace an existing bag folder (never a folder holding other files).
        workers: threads that read and decode the images ahead of the writer.
        progress: print a line per sequence.

    Returns:
        The summary described in :func:`convert_scene`.
    """
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t_start = time.perf_counter()
    out = Path(out)
    types = msgs.rosbags_types(plan.distro)
    _prepare_output(out, overwrite)
    bag = _BagFile(out, plan, plan.custom_data(scene_dir), types)
    loaded: Iterator | None = None
    try:
        bag.open()
        _write_static(bag, plan, types)
        loaded = ordered_map(FrameReader(plan), plan.frames, int(workers))
        _write_frames(bag, plan, loaded, types, progress)
        bag.close()
    except BaseException:
        if loaded is not None:
            loaded.close()  # stop the reading threads first
        bag.abort()
        raise
    return _summary(plan, out, bag.specs, bag.counts, time.perf_counter() - t_start)


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
    """Write the frames of a 7-Scenes scene into a rosbag2 folder ``out``:
    :func:`~reloc_ros.tools.bag.convert_plan.plan_conversion` then :func:`write_bag`.

    Args:
        scene_dir: the scene folder (``TrainSplit.txt``, ``TestSplit.txt``, ``seq-XX``).
        out: the bag folder to create (it must not exist unless ``overwrite``).
        split: 'test', 'train', 'all' or a list of sequence numbers (in that order).
        overwrite: replace an existing bag folder (never a folder holding other files).
        workers: threads that read and decode the images ahead of the writer (1: none, the
            default; more helps only where spare cores are free).
        progress: print a line per sequence.
        options: those of :func:`~reloc_ros.tools.bag.convert_plan.plan_conversion`:
            ``storage`` ('mcap' or 'sqlite3'), ``rate_hz`` (frame rate of the stamps),
            ``compressed`` (None / 'none': rgb8 Image; 'jpeg' or 'png': CompressedImage),
            ``depth`` (also write depth and its camera info), ``start_time_s`` (stamp of the
            first frame: seconds since the epoch; a string keeps every digit; 'now' for the
            wall clock), ``sequence_gap_s``, ``max_frames`` (the first N frames of the split),
            ``topics`` (:class:`~reloc_ros.tools.bag.topics.BagTopics`), ``jpeg_quality``,
            ``reencode`` (encode compressed images even when the source file could be stored
            as is), ``distro`` ('kilted' or 'jazzy'), ``odometry`` (drift of a simulated
            odometry TF; None: none).

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
    """One line describing a :func:`convert_scene` summary ``s``."""
    seqs = ", ".join(str(x) for x in s["sequences"])
    return (
        f"wrote {s['frames']} frames of {s['scene']} (sequence(s) {seqs}) to {s['bag']}: "
        f"{s['storage']}, {s['bytes'] / 1e6:.1f} MB, {len(s['topics'])} topics, {s['messages']} messages, "
        f"{s['duration_s']:.2f} s of bag time; "
        f"converted in {s['seconds']:.2f} s ({s['frames_per_s']:.0f} frames/s)"
    )
