"""Bag to map, stages 1 and 2: scan the bag (everything but the pixels), then the camera poses.

* :func:`scan` reads the TF tree, the pose topic or the TUM trajectory (:func:`read_tum`),
  the camera infos and the header stamps of the images into a :class:`BagScan`;
* :func:`camera_poses` looks up the colour camera's pose in the map at every image stamp,
  and :func:`depth_extrinsic` the depth camera in the colour one.

The rules (pose sources, tolerances, monotonic stamps): :mod:`reloc_ros.tools.bag.to_map`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from tqdm import tqdm

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import make_pose, quat_from_ros
from reloc_ros.data import registration as reg
from reloc_ros.ros import messages as msgs
from reloc_ros.ros.tf_store import TfLookupError, TransformStore
from reloc_ros.tools.bag.map_config import BagMapError, MapConfig, sibling_info
from reloc_ros.tools.bag.reading import BagFolderError, bag_folder, header_stamp_ns

__all__ = ["CameraModel", "BagScan", "open_reader", "checked_bag", "read_tum", "scan", "camera_poses",
           "depth_extrinsic"]

_NS = 1_000_000_000
_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED = "sensor_msgs/msg/CompressedImage"
_INFO = "sensor_msgs/msg/CameraInfo"
_POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry",
               "geometry_msgs/msg/PoseWithCovarianceStamped")


@dataclass
class CameraModel:
    """A camera as its CameraInfo describes it.

    Attributes:
        intrinsics: size and pinhole parameters.
        frame: its optical frame (the CameraInfo's ``header.frame_id``).
        model: the distortion model ('plumb_bob', ...).
        D: the distortion coefficients.
    """

    intrinsics: Intrinsics
    frame: str
    model: str
    D: list[float]

    def same_as(self, other: "CameraModel") -> bool:
        """Exactly the same calibration and frame as ``other``."""
        return (self.intrinsics == other.intrinsics and self.frame == other.frame and self.model == other.model
                and np.allclose(self.D, other.D, rtol=0, atol=0))


@dataclass
class BagScan:
    """What :func:`scan` read. Stamps are integer ns; image lists are in bag order.

    Attributes:
        bag: the bag folder.
        conf: the settings.
        image_type: the colour topic's message type.
        image_ns: the header stamps of the colour images.
        camera_frame: the colour optical frame.
        color: the colour camera.
        depth_ns: the header stamps of the depth images (empty without depth).
        depth: the depth camera (None without depth).
        store: every transform and pose sample read.
        map_frame: the map frame of the poses.
        counts: TF messages, static transforms and pose messages read.
    """

    bag: Path
    conf: MapConfig
    image_type: str
    image_ns: list[int]
    camera_frame: str
    color: CameraModel
    depth_ns: list[int] = field(default_factory=list)
    depth: CameraModel | None = None
    store: TransformStore | None = None
    map_frame: str = ""
    counts: dict = field(default_factory=dict)


def open_reader(bag: Path) -> AnyReader:
    """An open ``rosbags`` reader of the bag folder ``bag``; raises :class:`BagMapError`."""
    reader = AnyReader([bag], default_typestore=msgs.rosbags_types().store)
    try:
        reader.open()
    except Exception as e:  # rosbags raises its own errors on a damaged bag
        raise BagMapError(bag, None, f"cannot open the bag ({type(e).__name__}: {e})") from None
    return reader


def checked_bag(bag: Path | str) -> Path:
    """The rosbag2 folder of ``bag`` (see :func:`~reloc_ros.tools.bag.reading.bag_folder`);
    raises :class:`BagMapError`."""
    try:
        return bag_folder(bag)
    except BagFolderError as e:
        raise BagMapError(e.path, None, e.problem) from None


def read_tum(path: Path | str) -> tuple[list[int], list[np.ndarray]]:
    """Stamps (ns) and 4x4 poses of a TUM trajectory file.

    Args:
        path: the file: ``stamp tx ty tz qx qy qz qw`` per line, '#' comments.

    Raises:
        ValueError: naming the file and the line (unreadable, malformed, not finite, stamps
            that go backwards, no pose).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the trajectory ({e})") from None
    stamps, poses = [], []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 8:
            raise ValueError(f"{path}:{n}: a TUM line has 8 numbers (stamp tx ty tz qx qy qz qw), found {len(parts)}")
        try:
            sec, _, frac = parts[0].partition(".")
            t = int(sec) * _NS + int((frac + "000000000")[:9]) if frac else int(float(parts[0]) * _NS)
            v = [float(x) for x in parts[1:]]
        except ValueError:
            raise ValueError(f"{path}:{n}: not a number in {line!r}") from None
        q = quat_from_ros(*v[3:])
        if not (np.all(np.isfinite(v)) and np.linalg.norm(q) > 0.5):
            raise ValueError(f"{path}:{n}: not a finite pose with a unit quaternion")
        if stamps and t < stamps[-1]:
            raise ValueError(f"{path}:{n}: stamps go backwards ({stamps[-1] / _NS:.9f} then {t / _NS:.9f} s)")
        stamps.append(t)
        poses.append(make_pose(v[:3], q / np.linalg.norm(q)))
    if not stamps:
        raise ValueError(f"{path}: the trajectory holds no pose")
    return stamps, poses


# --------------------------------------------------------------------------- 1. scan
class _Monotonic:
    """Checks that header stamps never go backwards within a key (a topic, or a TF edge).

    Args:
        bag: the bag folder (named in errors).
    """

    def __init__(self, bag: Path):
        self.bag, self.last = bag, {}

    def __call__(self, topic: str, key, stamp: int, what: str = "") -> None:
        """Raise :class:`BagMapError` when ``stamp`` is older than the last one of ``key`` on ``topic``."""
        prev = self.last.get(key)
        if prev is not None and stamp < prev:
            raise BagMapError(self.bag, topic, f"header stamps go backwards{what}: {prev / _NS:.9f} s, then "
                                               f"{stamp / _NS:.9f} s (non-monotonic stamps; was the bag "
                                               "merged or recorded from two sources?)")
        self.last[key] = stamp


def _camera_model(bag: Path, topic: str, m) -> CameraModel:
    """The :class:`CameraModel` of the CameraInfo ``m`` on ``topic``; raises :class:`BagMapError`."""
    try:
        intr = msgs.camera_info_to_intrinsics(m)
    except ValueError as e:
        raise BagMapError(bag, topic, str(e)) from None
    return CameraModel(intr, m.header.frame_id, str(m.distortion_model or "plumb_bob"), [float(x) for x in m.d])


def _required_topics(c: MapConfig, info_topic: str, depth_info_topic: str) -> dict[str, tuple[str, ...]]:
    """Topic -> the types it may have, of every topic the settings ``c`` need."""
    need = {c.image_topic: (_IMAGE, _COMPRESSED), info_topic: (_INFO,)}
    if c.depth_topic:
        need[c.depth_topic] = (_IMAGE,)
        need[depth_info_topic] = (_INFO,)
    if c.pose_source == "tf":
        need[c.tf_topic] = ("tf2_msgs/msg/TFMessage",)
    if c.pose_source == "topic":
        need[c.pose_topic] = _POSE_TYPES
    return need


def _check_topics(bag: Path, types: dict[str, str], need: dict[str, tuple[str, ...]]) -> None:
    """Raise :class:`BagMapError` when a needed topic is missing or of another type.

    Args:
        bag: the bag folder.
        types: topic -> type, of the bag.
        need: topic -> the types it may have.
    """
    for topic, ok in need.items():
        if topic not in types:
            have = ", ".join(f"{t} ({m.split('/')[-1]})" for t, m in sorted(types.items()))
            raise BagMapError(bag, topic, f"topic is not in the bag (it has: {have})")
        if types[topic] not in ok:
            raise BagMapError(bag, topic, f"has type {types[topic]}, expected {' or '.join(ok)}")


class _ScanReader:
    """Takes the scanned messages one by one: image stamps, camera infos, TF, poses.

    Args:
        bag: the bag folder.
        conf: the settings.
        info_topic, depth_info_topic: the CameraInfo topics ('' : no depth).
    """

    def __init__(self, bag: Path, conf: MapConfig, info_topic: str, depth_info_topic: str):
        self.bag, self.c, self.info_topic, self.depth_info_topic = bag, conf, info_topic, depth_info_topic
        self.store = TransformStore(cache_time_s=1e7, extrapolation_tolerance_s=conf.pose_tolerance_s,
                                    max_samples=10**9, sample_tolerance_s=conf.pose_tolerance_s)
        self.mono = _Monotonic(bag)
        self.image_ns: list[int] = []
        self.depth_ns: list[int] = []
        self.color: CameraModel | None = None
        self.depth: CameraModel | None = None
        self.camera_frame = conf.camera_frame
        self.pose_frames: set[str] = set()
        self.counts = {"tf_messages": 0, "tf_static_transforms": 0, "pose_messages": 0}

    def image(self, reader, conn, raw) -> None:
        """A colour or depth image: its header stamp (and the camera frame, when not set)."""
        c, topic = self.c, conn.topic
        t = header_stamp_ns(raw)
        if t is None or not self.camera_frame and topic == c.image_topic:
            m = reader.deserialize(raw, conn.msgtype)
            t = msgs.stamp_to_ns(m.header.stamp)
            if topic == c.image_topic and not self.camera_frame:
                self.camera_frame = m.header.frame_id
        self.mono(topic, topic, t)
        (self.image_ns if topic == c.image_topic else self.depth_ns).append(t)

    def camera_info(self, topic: str, m) -> None:
        """A CameraInfo: the first one sets the camera, the others must agree with it."""
        self.mono(topic, topic, msgs.stamp_to_ns(m.header.stamp))
        cam = _camera_model(self.bag, topic, m)
        prev = self.color if topic == self.info_topic else self.depth
        if prev is None:
            if topic == self.info_topic:
                self.color = cam
            else:
                self.depth = cam
        elif not prev.same_as(cam):
            raise BagMapError(self.bag, topic, f"the camera info changes at {msgs.stamp_to_ns(m.header.stamp) / _NS:.6f}"
                                               " s (one map needs one calibration)")

    def pose(self, topic: str, m) -> None:
        """A PoseStamped / Odometry / PoseWithCovarianceStamped sample into the store."""
        t = msgs.stamp_to_ns(m.header.stamp)
        self.mono(topic, topic, t)
        child = m.child_frame_id if hasattr(m, "child_frame_id") else self.c.pose_frame
        self.pose_frames.add(m.header.frame_id)
        try:
            self.store.set_matrix(m.header.frame_id, child, t, msgs.pose_to_matrix(m))
        except ValueError as e:
            raise BagMapError(self.bag, topic, f"pose at {t / _NS:.6f} s: {e}") from None
        self.counts["pose_messages"] += 1

    def message(self, reader, conn, raw) -> None:
        """Dispatch one message of the bag."""
        c, topic = self.c, conn.topic
        if topic in (c.image_topic, c.depth_topic):
            self.image(reader, conn, raw)
            return
        m = reader.deserialize(raw, conn.msgtype)
        if topic in (self.info_topic, self.depth_info_topic):
            self.camera_info(topic, m)
        elif topic == c.tf_static_topic:
            for tr in m.transforms:
                self.counts["tf_static_transforms"] += int(self.store.set_transform(tr, static=True))
        elif topic == c.tf_topic:
            self.counts["tf_messages"] += 1
            for tr in m.transforms:
                key = (tr.header.frame_id, tr.child_frame_id)
                self.mono(topic, key, msgs.stamp_to_ns(tr.header.stamp), f" on {key[0]} -> {key[1]}")
                self.store.set_transform(tr)
        elif topic == c.pose_topic:
            self.pose(topic, m)

    def check_complete(self) -> None:
        """Raise :class:`BagMapError` when images or camera infos are missing."""
        c, bag = self.c, self.bag
        if not self.image_ns:
            raise BagMapError(bag, c.image_topic, "holds no message")
        if self.color is None:
            raise BagMapError(bag, self.info_topic, "holds no CameraInfo: the intrinsics are unknown")
        if c.depth_topic and self.depth is None:
            raise BagMapError(bag, self.depth_info_topic, "holds no CameraInfo: the depth intrinsics are unknown")
        if c.depth_topic and not self.depth_ns:
            raise BagMapError(bag, c.depth_topic, "holds no message")

    def check_distortion(self) -> None:
        """Raise :class:`BagMapError` for a distortion model the settings refuse or cannot undo."""
        for d, topic in ((self.color, self.info_topic), (self.depth, self.depth_info_topic)):
            if d is None:
                continue
            if self.c.distortion == "refuse" and reg.has_distortion(d.D):
                raise BagMapError(self.bag, topic,
                                  f"camera info has distortion ({d.model}, D = {d.D}) and distortion is 'refuse'; "
                                  "use distortion: undistort, or record rectified images")
            try:
                reg.check_distortion(d.model, d.D)
            except ValueError as e:
                raise BagMapError(self.bag, topic, str(e)) from None

    def map_frame(self) -> str:
        """The map frame: the settings', or the pose messages' header frame (pose topic);
        with a TUM trajectory, its poses go into the store here."""
        c = self.c
        if c.pose_source == "topic":
            if len(self.pose_frames) != 1:
                raise BagMapError(self.bag, c.pose_topic, f"poses are in several frames {sorted(self.pose_frames)}")
            return next(iter(self.pose_frames))
        if c.pose_source == "tum":
            try:
                stamps, poses = read_tum(c.trajectory)
            except ValueError as e:
                raise BagMapError(self.bag, c.trajectory, str(e)) from None
            for t, T in zip(stamps, poses):
                self.store.set_matrix(c.map_frame, c.pose_frame, t, T)
        return c.map_frame


def _read_all(reader, acc: _ScanReader, wanted: set[str], progress: bool) -> None:
    """Feed every message of the ``wanted`` topics to ``acc``; a damaged file raises
    :class:`BagMapError` naming the topic it was at."""
    conns = [x for x in reader.connections if x.topic in wanted]
    total = sum(x.msgcount for x in conns)
    topic = None
    try:
        for conn, _, raw in tqdm(reader.messages(connections=conns), total=total, desc="scan", unit="msg",
                                 disable=not progress, leave=False):
            topic = conn.topic
            acc.message(reader, conn, raw)
    except BagMapError:
        raise
    except Exception as e:  # a truncated or damaged file surfaces while reading
        raise BagMapError(acc.bag, topic, f"cannot read the bag past here ({type(e).__name__}: {e}); "
                                          "is the file truncated?") from None


def scan(bag: Path | str, conf: MapConfig, progress: bool = True) -> BagScan:
    """Stage 1: read the bag's TF, poses, camera infos and image stamps (no pixels).

    Args:
        bag: the rosbag2 folder (or one of its files).
        conf: the settings.
        progress: show a progress bar.

    Raises:
        BagMapError: unreadable bag, a missing topic, a topic of the wrong type, no
            CameraInfo, a CameraInfo that changes, non-monotonic stamps.
    """
    bag = checked_bag(bag)
    c = conf
    info_topic = c.info_topic or sibling_info(c.image_topic)
    depth_info_topic = (c.depth_info_topic or sibling_info(c.depth_topic)) if c.depth_topic else ""
    reader = open_reader(bag)
    try:
        types = {conn.topic: conn.msgtype for conn in reader.connections}
        need = _required_topics(c, info_topic, depth_info_topic)
        _check_topics(bag, types, need)
        acc = _ScanReader(bag, c, info_topic, depth_info_topic)
        wanted = set(need) | {c.tf_static_topic} | ({c.tf_topic} if c.pose_source == "tf" else set())
        _read_all(reader, acc, wanted, progress)
    finally:
        reader.close()
    acc.check_complete()
    map_frame = acc.map_frame()
    acc.check_distortion()
    return BagScan(bag=bag, conf=c, image_type=types[c.image_topic], image_ns=acc.image_ns,
                   camera_frame=acc.camera_frame, color=acc.color, depth_ns=acc.depth_ns, depth=acc.depth,
                   store=acc.store, map_frame=map_frame, counts=acc.counts)


# --------------------------------------------------------------------------- 2. poses
def _pose_source_name(s: BagScan) -> str:
    """The topic or file the poses come from (named in errors)."""
    c = s.conf
    return {"tf": c.tf_topic, "topic": c.pose_topic, "tum": c.trajectory}[c.pose_source]


def camera_poses(s: BagScan) -> list[np.ndarray | None]:
    """Stage 2: ``T_map_camera`` (4x4, the colour optical frame in the map) at each image
    stamp, or None where no pose sample is within the tolerance.

    Args:
        s: the scan.

    Raises:
        BagMapError: the pose source has no path from the map frame to the camera frame.
    """
    problem = s.store.path_problem(s.map_frame, s.camera_frame)
    if problem is not None:
        edges = "; ".join(f"{p} -> {c} ({n})" for p, c, n in s.store.edges()) or "none"
        raise BagMapError(s.bag, _pose_source_name(s), f"no transform from {s.map_frame!r} to the camera frame "
                                                       f"{s.camera_frame!r}: {problem}. Edges read: {edges}")
    out = []
    for t in s.image_ns:
        try:
            out.append(s.store.lookup(s.map_frame, s.camera_frame, t))
        except TfLookupError:
            out.append(None)
    return out


def depth_extrinsic(s: BagScan) -> np.ndarray | None:
    """``T_color_depth`` (depth camera to colour camera coordinates), the identity when both
    images share a frame; None without depth.

    Args:
        s: the scan.

    Raises:
        BagMapError: the depth is in another frame and no static transform links the two.
    """
    if s.depth is None:
        return None
    if s.depth.frame == s.camera_frame:
        return np.eye(4)
    problem = s.store.path_problem(s.camera_frame, s.depth.frame)
    T = None
    if problem is None:
        try:
            T = s.store.lookup(s.camera_frame, s.depth.frame, s.image_ns[0])
        except TfLookupError as e:
            problem = str(e)
    if T is None:
        raise BagMapError(s.bag, s.conf.depth_topic,
                          f"depth is in frame {s.depth.frame!r} and colour in {s.camera_frame!r}, and the bag has "
                          f"no extrinsic between them on {s.conf.tf_static_topic} ({problem}); depth cannot be "
                          "registered to colour")
    return T
