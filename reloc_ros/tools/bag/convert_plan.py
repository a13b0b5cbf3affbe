"""7-Scenes to rosbag2, stage 1: check the options and the scene, and plan the bag (writes nothing).

:func:`plan_conversion` resolves the frames of the split, their stamps (:func:`frame_stamps`)
and the connections into a :class:`BagPlan`; :mod:`reloc_ros.tools.bag.convert_write` then
writes it. What a bag holds and why: :mod:`reloc_ros.tools.bag.convert`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Sequence

import numpy as np

from reloc_ros import __version__
from reloc_ros.data.sevenscenes import Frame, Scene, SevenScenesError
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.topics import BagTopics

__all__ = ["DEFAULT_START_TIME_S", "DEFAULT_RATE_HZ", "DEFAULT_SEQUENCE_GAP_S", "STORAGES", "COMPRESSIONS",
           "CUSTOM_PREFIX", "BagPlan", "frame_stamps", "plan_conversion"]

#: Stamp of the first frame when none is given (2023-11-14 22:13:20 UTC): fixed, so that the
#: same scene always gives the same bag.
DEFAULT_START_TIME_S = 1_700_000_000
DEFAULT_RATE_HZ = 30.0
DEFAULT_SEQUENCE_GAP_S = 1.0
STORAGES = ("mcap", "sqlite3")
COMPRESSIONS = ("none", "jpeg", "png")
#: Prefix of the keys this converter writes into the bag's custom_data.
CUSTOM_PREFIX = "reloc_ros."
_NS = 1_000_000_000


# --------------------------------------------------------------------------- stamps
def _to_ns(seconds: float | int | str | Decimal) -> int:
    """Integer nanoseconds of a time in seconds, without float rounding for strings/ints.

    Args:
        seconds: the time; a string keeps every digit.

    Raises:
        ValueError: not a finite number.
    """
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
    """Stamps (integer ns) of the frames of consecutive sequences.

    Frame ``i`` of a sequence is ``i / rate_hz`` after its first frame (rounded to the
    nanosecond, without accumulating error); a sequence starts ``sequence_gap_s`` after the
    last frame of the previous one; the first starts at ``start_time_s``.

    Args:
        counts: the number of frames of each sequence, in bag order.
        rate_hz: the frame rate.
        start_time_s: the stamp of the first frame, seconds since the epoch.
        sequence_gap_s: seconds between the last frame of a sequence and the first of the next.

    Raises:
        ValueError: a rate, gap or start time that is not a positive (start: >= 0) number.
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


# --------------------------------------------------------------------------- the plan
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
        jpeg_quality, reencode: how compressed colour is made (see
            :func:`~reloc_ros.tools.bag.convert_write.convert_scene`).
        rate_hz, sequence_gap_s: the stamp schedule.
        distro: type definitions ('kilted' or 'jazzy').
        odometry: the drift of the simulated odometry (None: no odometry TF).
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
        """The colour image topic: compressed or raw."""
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
        """The ``reloc_ros.*`` entries of the bag's custom_data (without the prefix).

        Args:
            scene_dir: the scene folder as given (recorded resolved).
        """
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
    """The split, checked against the scene.

    Args:
        scene: the source scene.
        split: 'train', 'test', 'all' or a list of sequence numbers.

    Raises:
        ValueError: an unknown split name, an empty list or a sequence listed twice.
        SevenScenesError: a listed sequence has no folder.
    """
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


def _check_options(compressed, storage: str, jpeg_quality: int, distro: str, max_frames, odometry) -> str | None:
    """Raise ValueError for a bad option; returns ``compressed`` normalised (None: raw).

    The arguments are those of :func:`plan_conversion`.
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
    if max_frames is not None and int(max_frames) < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if odometry is not None and not (np.isfinite(odometry) and 0 <= odometry < 1):
        raise ValueError(f"odometry drift must be a fraction in [0, 1), got {odometry}")
    return compressed


def _sequence_groups(frames: Sequence[Frame]) -> list[tuple[int, int]]:
    """(sequence, number of frames) of each run of consecutive frames of one sequence.

    Args:
        frames: the frames, sorted by sequence then index.
    """
    groups: list[tuple[int, int]] = []
    for f in frames:
        if groups and groups[-1][0] == f.seq:
            groups[-1] = (f.seq, groups[-1][1] + 1)
        else:
            groups.append((f.seq, 1))
    return groups


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

    The arguments are those of :func:`~reloc_ros.tools.bag.convert_write.convert_scene`.

    Raises:
        SevenScenesError: the scene or a sequence folder or depth file is missing.
        ValueError: a bad option.
    """
    compressed = _check_options(compressed, storage, jpeg_quality, distro, max_frames, odometry)
    if isinstance(start_time_s, str) and start_time_s.strip().lower() == "now":
        start_time_s = repr(time.time())
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
    groups = _sequence_groups(frames)
    per_seq = frame_stamps([n for _, n in groups], rate_hz, start_time_s, sequence_gap_s)
    starts = [{"seq": seq, "frames": n, "first_ns": st[0], "last_ns": st[-1]}
              for (seq, n), st in zip(groups, per_seq)]
    return BagPlan(scene=scene, split=split, sequences=[s for s, _ in groups], frames=frames,
                   stamps=[t for seq_stamps in per_seq for t in seq_stamps], starts=starts,
                   topics=topics or BagTopics(), storage=storage, compressed=compressed, depth=bool(depth),
                   jpeg_quality=int(jpeg_quality), reencode=bool(reencode), rate_hz=float(rate_hz),
                   sequence_gap_s=float(sequence_gap_s), distro=distro,
                   odometry=None if odometry is None else float(odometry))
