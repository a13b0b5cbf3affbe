"""Bring your own map: a robot's rosbag2 to a scene in the 7-Scenes layout, or to a database.

Command line::

    python -m reloc_ros.tools.bag.to_map BAG --out SCENE_DIR [--config config/bag_to_map.yaml]
        [--image-topic /camera/color/image_raw[/compressed]] [--depth-topic /camera/depth/image_rect_raw]
        [--pose-source tf|topic|tum] [--map-frame map] [--pose-topic /slam/pose] [--trajectory traj.tum]
        [--no-keyframes] [--keyframe-m 0.05] [--keyframe-deg 5] [--max-frames N] [--overwrite] ...
    python -m reloc_ros.tools.bag.to_map BAG --database map.db.pt --model model.pt [--dense] [--keypoints]

``main(conf, inputs)`` runs the stages in order; each is a function here:

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
6. With ``--database``: :func:`reloc_ros.mapping.database.build_database` on the written scene.

Every problem with the bag raises :class:`BagMapError`, whose message names the bag, the
topic and the problem.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import yaml

from reloc_ros import __version__
from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import make_pose, pose_errors, quat_from_ros
from reloc_ros.data import registration as reg
from reloc_ros.data.coverage import coverage
from reloc_ros.data.sevenscenes import INTRINSICS_FILE, SPLIT_FILES, format_pose_text, format_split_text
from reloc_ros.ros import messages as msgs
from reloc_ros.ros.tf_store import TfLookupError, TransformStore
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.replay import header_stamp_ns

__all__ = ["BagMapError", "MapConfig", "BagScan", "scan", "camera_poses", "select_frames", "split_blocks",
           "write_scene", "read_tum", "main", "cli"]

_NS = 1_000_000_000
_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED = "sensor_msgs/msg/CompressedImage"
_INFO = "sensor_msgs/msg/CameraInfo"
_POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "nav_msgs/msg/Odometry",
               "geometry_msgs/msg/PoseWithCovarianceStamped")


class BagMapError(RuntimeError):
    """A bag that cannot become a map. ``str(err)`` names the bag, the topic and the problem."""

    def __init__(self, bag: Path | str, topic: str | None, problem: str):
        self.bag, self.topic, self.problem = str(bag), topic, problem
        super().__init__(f"{bag}: {topic}: {problem}" if topic else f"{bag}: {problem}")


@dataclass(frozen=True)
class MapConfig:
    """Settings of the conversion (YAML: ``config/bag_to_map.yaml``; every field is also a
    command-line flag, ``image_topic`` -> ``--image-topic``).

    Topics ('' = not used, or derived as said):
        image_topic: colour, ``sensor_msgs/Image`` or ``CompressedImage``.
        info_topic: its CameraInfo ('' : ``camera_info`` beside the image topic).
        depth_topic: depth (16UC1 mm or 32FC1 m; '' : no depth).
        depth_info_topic: its CameraInfo ('' : ``camera_info`` beside the depth topic).
        tf_topic, tf_static_topic: the TF topics.
    Poses:
        pose_source: 'tf', 'topic' or 'tum'.
        map_frame: the map (world) frame of the scene ('tf' and 'tum'; 'topic' takes the
            pose messages' header frame and checks it against this when given).
        camera_frame: the colour optical frame ('' : the images' ``header.frame_id``).
        pose_topic: PoseStamped / Odometry / PoseWithCovarianceStamped topic ('topic').
        pose_frame: the frame a PoseStamped / TUM pose is the pose of (Odometry: its
            ``child_frame_id``).
        trajectory: the TUM file ('tum').
        pose_tolerance_s: the farthest a pose sample may be from an image stamp.
    Frames:
        keyframes, keyframe_m, keyframe_deg: motion-based keyframes.
        max_frames: cap on the frames kept (0: none).
        blur_ratio, blur_window_s: the sharpness filter (ratio 0: off).
        depth_tolerance_s: the farthest a depth image's stamp may be from the colour one.
        distortion: 'undistort' or 'refuse' images whose CameraInfo has distortion.
    Splits:
        test_block_s, test_every, guard_s: held-out time blocks (test_every 0: no test split).
    """

    image_topic: str = "/camera/color/image_raw"
    info_topic: str = ""
    depth_topic: str = ""
    depth_info_topic: str = ""
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    pose_source: str = "tf"
    map_frame: str = "map"
    camera_frame: str = ""
    pose_topic: str = ""
    pose_frame: str = "base_link"
    trajectory: str = ""
    pose_tolerance_s: float = 0.1
    keyframes: bool = True
    keyframe_m: float = 0.05
    keyframe_deg: float = 5.0
    max_frames: int = 0
    blur_ratio: float = 0.35
    blur_window_s: float = 2.0
    depth_tolerance_s: float = 0.02
    distortion: str = "undistort"
    test_block_s: float = 10.0
    test_every: int = 5
    guard_s: float = 2.0

    def __post_init__(self) -> None:
        if self.pose_source not in ("tf", "topic", "tum"):
            raise ValueError(f"pose_source must be tf, topic or tum, got {self.pose_source!r}")
        if self.pose_source == "topic" and not self.pose_topic:
            raise ValueError("pose_source 'topic' needs pose_topic")
        if self.pose_source == "tum" and not self.trajectory:
            raise ValueError("pose_source 'tum' needs trajectory (a TUM file)")
        if self.distortion not in ("undistort", "refuse"):
            raise ValueError(f"distortion must be undistort or refuse, got {self.distortion!r}")
        for name in ("pose_tolerance_s", "keyframe_m", "keyframe_deg", "blur_ratio", "blur_window_s",
                     "depth_tolerance_s", "guard_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if not self.test_block_s > 0:
            raise ValueError(f"test_block_s must be > 0, got {self.test_block_s}")
        if self.test_every < 0 or self.test_every == 1 or self.max_frames < 0:
            raise ValueError("test_every must be 0 (no test split) or >= 2, and max_frames >= 0")

    @classmethod
    def from_dict(cls, d: dict) -> "MapConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(**d)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sibling_info(topic: str) -> str:
    base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
    return base.rsplit("/", 1)[0] + "/camera_info"


# --------------------------------------------------------------------------- 1. scan
@dataclass
class CameraModel:
    """A camera as its CameraInfo describes it."""

    intrinsics: Intrinsics
    frame: str
    model: str
    D: list[float]


@dataclass
class BagScan:
    """What :func:`scan` read. Stamps are integer ns; image lists are in bag order."""

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


def _open(bag: Path):
    from rosbags.highlevel import AnyReader

    reader = AnyReader([bag], default_typestore=msgs.rosbags_types().store)
    try:
        reader.open()
    except Exception as e:  # rosbags raises its own errors on a damaged bag
        raise BagMapError(bag, None, f"cannot open the bag ({type(e).__name__}: {e})") from None
    return reader


def _bag_dir(bag: Path | str) -> Path:
    try:
        return tp.bag_folder(bag)
    except tp.BagFolderError as e:
        raise BagMapError(e.path, None, e.problem) from None


def _camera_model(bag, topic, m) -> CameraModel:
    try:
        intr = msgs.camera_info_to_intrinsics(m)
    except ValueError as e:
        raise BagMapError(bag, topic, str(e)) from None
    return CameraModel(intr, m.header.frame_id, str(m.distortion_model or "plumb_bob"),
                       [float(x) for x in m.d])


def _same_camera(a: CameraModel, b: CameraModel) -> bool:
    return (a.intrinsics == b.intrinsics and a.frame == b.frame and a.model == b.model
            and np.allclose(a.D, b.D, rtol=0, atol=0))


class _Monotonic:
    """Checks that header stamps never go backwards within a key (a topic, or a TF edge)."""

    def __init__(self, bag):
        self.bag, self.last = bag, {}

    def __call__(self, topic: str, key, stamp: int, what: str = "") -> None:
        prev = self.last.get(key)
        if prev is not None and stamp < prev:
            raise BagMapError(self.bag, topic, f"header stamps go backwards{what}: {prev / _NS:.9f} s, then "
                                               f"{stamp / _NS:.9f} s (non-monotonic stamps; was the bag "
                                               "merged or recorded from two sources?)")
        self.last[key] = stamp


def read_tum(path: Path | str) -> tuple[list[int], list[np.ndarray]]:
    """Stamps (ns) and 4x4 poses of a TUM trajectory file (``stamp tx ty tz qx qy qz qw``;
    '#' comments). Raises ValueError naming the file and the line."""
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


def scan(bag: Path | str, conf: MapConfig, progress: bool = True) -> BagScan:
    """Stage 1: read the bag's TF, poses, camera infos and image stamps (no pixels).

    Raises:
        BagMapError: unreadable bag, a missing topic, a topic of the wrong type, no
            CameraInfo, a CameraInfo that changes, non-monotonic stamps.
    """
    from tqdm import tqdm

    bag = _bag_dir(bag)
    c = conf
    info_topic = c.info_topic or _sibling_info(c.image_topic)
    depth_info_topic = (c.depth_info_topic or _sibling_info(c.depth_topic)) if c.depth_topic else ""
    reader = _open(bag)
    try:
        types = {conn.topic: conn.msgtype for conn in reader.connections}
        need = {c.image_topic: (_IMAGE, _COMPRESSED), info_topic: (_INFO,)}
        if c.depth_topic:
            need[c.depth_topic] = (_IMAGE,)
            need[depth_info_topic] = (_INFO,)
        if c.pose_source == "tf":
            need[c.tf_topic] = ("tf2_msgs/msg/TFMessage",)
        if c.pose_source == "topic":
            need[c.pose_topic] = _POSE_TYPES
        for topic, ok in need.items():
            if topic not in types:
                have = ", ".join(f"{t} ({m.split('/')[-1]})" for t, m in sorted(types.items()))
                raise BagMapError(bag, topic, f"topic is not in the bag (it has: {have})")
            if types[topic] not in ok:
                raise BagMapError(bag, topic, f"has type {types[topic]}, expected {' or '.join(ok)}")
        store = TransformStore(cache_time_s=1e7, extrapolation_tolerance_s=c.pose_tolerance_s, max_samples=10**9,
                               sample_tolerance_s=c.pose_tolerance_s)
        mono = _Monotonic(bag)
        image_ns, depth_ns = [], []
        color = depth = None
        camera_frame = c.camera_frame
        pose_frames: set[str] = set()
        counts = {"tf_messages": 0, "tf_static_transforms": 0, "pose_messages": 0}
        wanted = set(need) | {c.tf_static_topic} | ({c.tf_topic} if c.pose_source == "tf" else set())
        conns = [x for x in reader.connections if x.topic in wanted]
        total = sum(x.msgcount for x in conns)
        topic = None
        try:
            for conn, _, raw in tqdm(reader.messages(connections=conns), total=total, desc="scan", unit="msg",
                                     disable=not progress, leave=False):
                topic = conn.topic
                if topic in (c.image_topic, c.depth_topic):
                    t = header_stamp_ns(raw)
                    if t is None or not camera_frame and topic == c.image_topic:
                        m = reader.deserialize(raw, conn.msgtype)
                        t = msgs.stamp_to_ns(m.header.stamp)
                        if topic == c.image_topic and not camera_frame:
                            camera_frame = m.header.frame_id
                    mono(topic, topic, t)
                    (image_ns if topic == c.image_topic else depth_ns).append(t)
                    continue
                m = reader.deserialize(raw, conn.msgtype)
                if topic in (info_topic, depth_info_topic):
                    mono(topic, topic, msgs.stamp_to_ns(m.header.stamp))
                    cam = _camera_model(bag, topic, m)
                    prev = color if topic == info_topic else depth
                    if prev is None:
                        if topic == info_topic:
                            color = cam
                        else:
                            depth = cam
                    elif not _same_camera(prev, cam):
                        raise BagMapError(bag, topic, f"the camera info changes at {msgs.stamp_to_ns(m.header.stamp) / _NS:.6f}"
                                                      " s (one map needs one calibration)")
                elif topic == c.tf_static_topic:
                    for tr in m.transforms:
                        counts["tf_static_transforms"] += int(store.set_transform(tr, static=True))
                elif topic == c.tf_topic:
                    counts["tf_messages"] += 1
                    for tr in m.transforms:
                        key = (tr.header.frame_id, tr.child_frame_id)
                        mono(topic, key, msgs.stamp_to_ns(tr.header.stamp), f" on {key[0]} -> {key[1]}")
                        store.set_transform(tr)
                elif topic == c.pose_topic:
                    t = msgs.stamp_to_ns(m.header.stamp)
                    mono(topic, topic, t)
                    child = m.child_frame_id if hasattr(m, "child_frame_id") else c.pose_frame
                    pose_frames.add(m.header.frame_id)
                    try:
                        store.set_matrix(m.header.frame_id, child, t, msgs.pose_to_matrix(m))
                    except ValueError as e:
                        raise BagMapError(bag, topic, f"pose at {t / _NS:.6f} s: {e}") from None
                    counts["pose_messages"] += 1
        except BagMapError:
            raise
        except Exception as e:  # a truncated or damaged file surfaces while reading
            raise BagMapError(bag, topic, f"cannot read the bag past here ({type(e).__name__}: {e}); "
                                          "is the file truncated?") from None
    finally:
        reader.close()
    if not image_ns:
        raise BagMapError(bag, c.image_topic, "holds no message")
    if color is None:
        raise BagMapError(bag, info_topic, "holds no CameraInfo: the intrinsics are unknown")
    if c.depth_topic and depth is None:
        raise BagMapError(bag, depth_info_topic, "holds no CameraInfo: the depth intrinsics are unknown")
    if c.depth_topic and not depth_ns:
        raise BagMapError(bag, c.depth_topic, "holds no message")
    map_frame = c.map_frame
    if c.pose_source == "topic":
        if len(pose_frames) != 1:
            raise BagMapError(bag, c.pose_topic, f"poses are in several frames {sorted(pose_frames)}")
        map_frame = pose_frames.pop()
    if c.pose_source == "tum":
        try:
            stamps, poses = read_tum(c.trajectory)
        except ValueError as e:
            raise BagMapError(bag, c.trajectory, str(e)) from None
        for t, T in zip(stamps, poses):
            store.set_matrix(map_frame, c.pose_frame, t, T)
    for d in (color, depth):
        if d is not None and c.distortion == "refuse" and reg.has_distortion(d.D):
            raise BagMapError(bag, info_topic if d is color else depth_info_topic,
                              f"camera info has distortion ({d.model}, D = {d.D}) and distortion is 'refuse'; "
                              "use distortion: undistort, or record rectified images")
        if d is not None:
            try:
                reg.check_distortion(d.model, d.D)
            except ValueError as e:
                raise BagMapError(bag, info_topic if d is color else depth_info_topic, str(e)) from None
    return BagScan(bag=bag, conf=c, image_type=types[c.image_topic], image_ns=image_ns, camera_frame=camera_frame,
                   color=color, depth_ns=depth_ns, depth=depth, store=store, map_frame=map_frame, counts=counts)


# --------------------------------------------------------------------------- 2. poses
def _pose_topic_name(s: BagScan) -> str:
    c = s.conf
    return {"tf": c.tf_topic, "topic": c.pose_topic, "tum": c.trajectory}[c.pose_source]


def camera_poses(s: BagScan) -> list[np.ndarray | None]:
    """Stage 2: ``T_map_camera`` (4x4, the colour optical frame in the map) at each image
    stamp, or None where no pose sample is within the tolerance.

    Raises:
        BagMapError: the pose source has no path from the map frame to the camera frame.
    """
    src = _pose_topic_name(s)
    problem = s.store.path_problem(s.map_frame, s.camera_frame)
    if problem is not None:
        edges = "; ".join(f"{p} -> {c} ({n})" for p, c, n in s.store.edges()) or "none"
        raise BagMapError(s.bag, src, f"no transform from {s.map_frame!r} to the camera frame {s.camera_frame!r}: "
                                      f"{problem}. Edges read: {edges}")
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


# --------------------------------------------------------------------------- 3. frames
def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (OpenCV): low for blurred images."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def _decode_color(bag, topic, m) -> np.ndarray:
    try:
        return msgs.msg_to_rgb(m)
    except msgs.ImageConversionError as e:
        raise BagMapError(bag, topic, f"image at {msgs.stamp_to_ns(m.header.stamp) / _NS:.6f} s: {e}") from None


def measure_sharpness(s: BagScan, poses: Sequence, progress: bool = True) -> list[float | None]:
    """Sharpness of every image that has a pose (None for the others)."""
    from tqdm import tqdm

    out: list[float | None] = [None] * len(s.image_ns)
    if s.conf.blur_ratio <= 0:
        return out
    reader = _open(s.bag)
    try:
        conns = [x for x in reader.connections if x.topic == s.conf.image_topic]
        k = -1
        for conn, _, raw in tqdm(reader.messages(connections=conns), total=len(s.image_ns), desc="sharpness",
                                 unit="img", disable=not progress, leave=False):
            k += 1
            if poses[k] is not None:
                out[k] = sharpness(_decode_color(s.bag, conn.topic, reader.deserialize(raw, conn.msgtype)))
    finally:
        reader.close()
    return out


@dataclass
class Selection:
    """The frames kept (indices into the image list), their depth image (index or None),
    and what was skipped, by reason."""

    kept: list[int]
    depth_index: dict[int, int]
    skipped: dict[str, int]
    path_m: float


def select_frames(s: BagScan, poses: Sequence, sharp: Sequence) -> Selection:
    """Stage 3: drop images without pose, blurred ones and ones without depth; keyframes; cap."""
    c = s.conf
    skipped = {"no pose": 0, "blurred": 0, "no depth": 0, "not a keyframe": 0, "over the cap": 0}
    posed = [k for k, T in enumerate(poses) if T is not None]
    skipped["no pose"] = len(s.image_ns) - len(posed)
    path = sum(float(np.linalg.norm(poses[a][:3, 3] - poses[b][:3, 3])) for a, b in zip(posed, posed[1:]))
    cand = posed
    if c.blur_ratio > 0 and posed:
        t = np.array([s.image_ns[k] for k in posed])
        v = np.array([sharp[k] for k in posed], dtype=np.float64)
        half = int(c.blur_window_s * _NS / 2)
        lo, hi = np.searchsorted(t, t - half, "left"), np.searchsorted(t, t + half, "right")
        ok = [v[i] >= c.blur_ratio * float(np.median(v[lo[i]:hi[i]])) for i in range(len(posed))]
        cand = [k for k, good in zip(posed, ok) if good]
        skipped["blurred"] = len(posed) - len(cand)
    depth_index: dict[int, int] = {}
    if s.depth is not None:
        tol = int(c.depth_tolerance_s * _NS)
        kept = []
        for k in cand:
            t = s.image_ns[k]
            j = bisect.bisect_left(s.depth_ns, t)
            best = min((i for i in (j - 1, j) if 0 <= i < len(s.depth_ns)), key=lambda i: abs(s.depth_ns[i] - t))
            if abs(s.depth_ns[best] - t) <= tol:
                depth_index[k] = best
                kept.append(k)
        skipped["no depth"] = len(cand) - len(kept)
        cand = kept
    if c.keyframes and cand:
        kf = [cand[0]]
        for k in cand[1:]:
            d, r = pose_errors(poses[k][None], poses[kf[-1]][None])
            if d[0] >= c.keyframe_m or r[0] >= c.keyframe_deg:
                kf.append(k)
        skipped["not a keyframe"] = len(cand) - len(kf)
        cand = kf
    if c.max_frames and len(cand) > c.max_frames:
        idx = np.unique(np.round(np.linspace(0, len(cand) - 1, c.max_frames)).astype(int))
        skipped["over the cap"] = len(cand) - len(idx)
        cand = [cand[i] for i in idx]
    return Selection(kept=cand, depth_index={k: depth_index[k] for k in cand if k in depth_index},
                     skipped=skipped, path_m=path)


# --------------------------------------------------------------------------- 4. splits
def split_blocks(stamps_ns: Sequence[int], block_s: float, every: int, guard_s: float) -> list[str]:
    """Role of each stamp: 'test' in every ``every``-th block of ``block_s`` seconds (blocks
    ``every - 1``, ``2 every - 1``, ... counted from the first stamp), 'guard' for the
    others within ``guard_s`` of a test block, 'train' for the rest. ``every`` 0: all train."""
    if not len(stamps_ns) or every == 0:
        return ["train"] * len(stamps_ns)
    t = (np.asarray(stamps_ns, dtype=np.int64) - int(stamps_ns[0])) / _NS
    block = np.floor(t / block_s).astype(int)
    test = (block % every) == every - 1
    starts = np.arange(every - 1, block.max() + 1, every) * block_s  # test block [start, start + block)
    roles = []
    for ti, is_test in zip(t, test):
        if is_test:
            roles.append("test")
        elif np.any((ti > starts - guard_s) & (ti < starts + block_s + guard_s)):
            roles.append("guard")
        else:
            roles.append("train")
    return roles


def _sequences(roles: Sequence[str]) -> list[int]:
    """Sequence number of each frame: a new one whenever the role changes (guards dropped)."""
    seq, last, out = 0, None, []
    for r in roles:
        if r == "guard":
            out.append(0)
            continue
        if r != last:
            seq, last = seq + 1, r
        out.append(seq)
    return out


# --------------------------------------------------------------------------- 5. write
def _store_color(bag, topic, m, cam: CameraModel) -> tuple[bytes, str]:
    """(file bytes, suffix) of a colour message: a JPEG as it is, anything else as RGB PNG;
    undistorted (and then always PNG) when the camera info has distortion."""
    data = bytes(m.data) if hasattr(m, "format") else None
    if data is not None and data[:3] == b"\xff\xd8\xff" and not reg.has_distortion(cam.D):
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:  # the header only
                size = im.size
        except OSError as e:
            raise BagMapError(bag, topic, f"unreadable JPEG ({e})") from None
        if size != (cam.intrinsics.width, cam.intrinsics.height):
            raise BagMapError(bag, topic, f"image is {size[0]}x{size[1]}, its camera info says "
                                          f"{cam.intrinsics.width}x{cam.intrinsics.height}")
        return data, ".color.jpg"
    rgb = _decode_color(bag, topic, m)
    if (rgb.shape[1], rgb.shape[0]) != (cam.intrinsics.width, cam.intrinsics.height):
        raise BagMapError(bag, topic, f"image is {rgb.shape[1]}x{rgb.shape[0]}, its camera info says "
                                      f"{cam.intrinsics.width}x{cam.intrinsics.height}")
    rgb = reg.undistort_color(rgb, cam.intrinsics.K, cam.D, cam.model)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return buf.tobytes(), ".color.png"


def _register_depth(bag, topic, m, s: BagScan, T_color_depth: np.ndarray) -> np.ndarray:
    try:
        raw = msgs.image_to_array(m)
    except msgs.ImageConversionError as e:
        raise BagMapError(bag, topic, f"depth image: {e}") from None
    if raw.ndim != 2:
        raise BagMapError(bag, topic, f"depth image has {raw.shape[2]} channels; expected 16UC1 or 32FC1")
    d, cam = s.depth, s.color
    if (raw.shape[1], raw.shape[0]) != (d.intrinsics.width, d.intrinsics.height):
        raise BagMapError(bag, topic, f"depth image is {raw.shape[1]}x{raw.shape[0]}, its camera info says "
                                      f"{d.intrinsics.width}x{d.intrinsics.height}")
    mm = reg.undistort_depth(reg.depth_to_mm(raw), d.intrinsics.K, d.D, d.model)
    size = (cam.intrinsics.width, cam.intrinsics.height)
    if d.frame == s.camera_frame and np.allclose(T_color_depth, np.eye(4)):
        if d.intrinsics == cam.intrinsics:
            return mm
        return reg.resample_depth(mm, d.intrinsics.K, cam.intrinsics.K, size)
    return reg.reproject_depth(mm, d.intrinsics.K, cam.intrinsics.K, size, T_color_depth)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def write_scene(s: BagScan, poses: Sequence, sel: Selection, roles: Sequence[str], out: Path | str, *,
                overwrite: bool = False, progress: bool = True, extra: dict | None = None) -> dict:
    """Stage 5: write the scene folder ``out`` (complete, or absent on any failure)."""
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if out.exists() and not (out / "conversion.json").is_file():
        raise FileExistsError(f"{out}: exists and was not written by this converter (no conversion.json); "
                              "not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    c = s.conf
    T_color_depth = depth_extrinsic(s)
    seqs = _sequences(roles)
    frame_of: dict[int, tuple[int, int]] = {}
    n_in_seq: dict[int, int] = {}
    for k, r, q in zip(sel.kept, roles, seqs):
        if r == "guard":
            continue
        frame_of[k] = (q, n_in_seq.get(q, 0))
        n_in_seq[q] = n_in_seq.get(q, 0) + 1
    depth_wanted = {sel.depth_index[k]: k for k in frame_of if k in sel.depth_index}
    rows = []
    try:
        for q in n_in_seq:
            (tmp / f"seq-{q:02d}").mkdir()
        reader = _open(s.bag)
        topic = None
        try:
            conns = [x for x in reader.connections if x.topic in (c.image_topic, c.depth_topic)]
            ki = kd = -1
            pending_depth: dict[int, np.ndarray] = {}
            waiting: dict[int, Path] = {}  # image index -> frame stem, waiting for its depth
            total = len(s.image_ns) + len(s.depth_ns)
            for conn, _, raw in tqdm(reader.messages(connections=conns), total=total, desc="write", unit="msg",
                                     disable=not progress, leave=False):
                topic = conn.topic
                if topic == c.image_topic:
                    ki += 1
                    if ki not in frame_of:
                        continue
                    q, i = frame_of[ki]
                    stem = tmp / f"seq-{q:02d}" / f"frame-{i:06d}"
                    data, suffix = _store_color(s.bag, topic, reader.deserialize(raw, conn.msgtype), s.color)
                    _write_bytes(stem.with_name(stem.name + suffix), data)
                    _write_bytes(stem.with_name(stem.name + ".pose.txt"), format_pose_text(poses[ki]).encode())
                    if ki in sel.depth_index:
                        waiting[ki] = stem
                else:
                    kd += 1
                    if kd not in depth_wanted:
                        continue
                    pending_depth[depth_wanted[kd]] = _register_depth(
                        s.bag, topic, reader.deserialize(raw, conn.msgtype), s, T_color_depth)
                for k in [k for k in waiting if k in pending_depth]:
                    stem = waiting.pop(k)
                    ok, buf = cv2.imencode(".png", pending_depth.pop(k))
                    _write_bytes(stem.with_name(stem.name + ".depth.png"), buf.tobytes())
            if waiting:
                raise BagMapError(s.bag, c.depth_topic, f"{len(waiting)} depth image(s) were not found on the second "
                                                        "read (the bag changed?)")
        except (BagMapError, OSError):
            raise
        except Exception as e:
            raise BagMapError(s.bag, topic, f"cannot read the bag past here ({type(e).__name__}: {e}); "
                                            "is the file truncated?") from None
        finally:
            reader.close()
        train = sorted({frame_of[k][0] for k, r in zip(sel.kept, roles) if r == "train"})
        test = sorted({frame_of[k][0] for k, r in zip(sel.kept, roles) if r == "test"})
        (tmp / SPLIT_FILES["train"]).write_bytes(format_split_text(train).encode())
        (tmp / SPLIT_FILES["test"]).write_bytes(format_split_text(test).encode())
        intr = s.color.intrinsics.as_dict()
        (tmp / INTRINSICS_FILE).write_text(yaml.safe_dump(
            {"color": intr, "depth": dict(intr), "depth_registered": True}, sort_keys=False))
        for k, r in zip(sel.kept, roles):
            q, i = frame_of.get(k, (0, -1))
            rows.append({"stamp_ns": s.image_ns[k], "role": r, "seq": q if r != "guard" else "",
                         "frame": i if r != "guard" else ""})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["stamp_ns", "role", "seq", "frame"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (tmp / "frames.csv").write_text(buf.getvalue())
        summary = {"bag": str(s.bag), "converter": f"reloc_ros.tools.bag.to_map {__version__}",
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": c.as_dict(),
                   "camera_frame": s.camera_frame, "map_frame": s.map_frame, "image_type": s.image_type,
                   "train_sequences": train, "test_sequences": test, **(extra or {})}
        (tmp / "conversion.json").write_text(json.dumps(summary, indent=1) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


# --------------------------------------------------------------------------- pipeline
def main(conf: MapConfig, bag: Path | str, out: Path | str, *, overwrite: bool = False,
         progress: bool = True, log=print) -> dict:
    """Convert ``bag`` into the scene folder ``out`` (stages 1-5). Returns the summary that
    ``conversion.json`` holds (counts, skipped by reason, path length, coverage)."""
    t0 = time.time()
    s = scan(bag, conf, progress)
    poses = camera_poses(s)
    depth_extrinsic(s)  # fail before reading any pixel
    sharp = measure_sharpness(s, poses, progress)
    sel = select_frames(s, poses, sharp)
    roles = split_blocks([s.image_ns[k] for k in sel.kept], conf.test_block_s, conf.test_every, conf.guard_s)
    skipped = dict(sel.skipped, **{"in a guard gap": sum(r == "guard" for r in roles)})
    kept = [k for k, r in zip(sel.kept, roles) if r != "guard"]
    if not kept:
        raise BagMapError(s.bag, conf.image_topic, f"no frame left to map (skipped: {skipped})")
    T_train = np.stack([poses[k] for k, r in zip(sel.kept, roles) if r == "train"] or [np.eye(4)])
    test_T = [poses[k] for k, r in zip(sel.kept, roles) if r == "test"]
    cov = coverage(T_train, np.stack(test_T), "test blocks vs train blocks").as_dict() if test_T else None
    span = (s.image_ns[-1] - s.image_ns[0]) / _NS
    extra = {"images_read": len(s.image_ns), "frames_kept": len(kept),
             "train_frames": sum(r == "train" for r in roles), "test_frames": sum(r == "test" for r in roles),
             "skipped": skipped, "path_m": round(sel.path_m, 4), "duration_s": round(span, 3),
             "coverage": cov, "tf": s.counts, "depth": s.depth is not None,
             "undistorted": reg.has_distortion(s.color.D)}
    summary = write_scene(s, poses, sel, roles, out, overwrite=overwrite, progress=progress, extra=extra)
    summary["seconds"] = round(time.time() - t0, 2)
    if log:
        log(summary_text(summary, out))
    return summary


def summary_text(s: dict, out) -> str:
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


def _load_conf(path: Path | None, overrides: dict) -> MapConfig:
    d: dict = {}
    if path is not None:
        try:
            d = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read the config ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
    d.update({k: v for k, v in overrides.items() if v is not None})
    return MapConfig.from_dict(d)


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Convert a robot's rosbag2 into a 7-Scenes-layout scene, or a database")
    ap.add_argument("bag", type=Path, help="the rosbag2 folder (mcap or sqlite3)")
    ap.add_argument("--out", type=Path, help="the scene folder to write")
    ap.add_argument("--config", type=Path, help="YAML settings (config/bag_to_map.yaml); flags override them")
    ap.add_argument("--overwrite", action="store_true", help="replace an --out written by this converter")
    ap.add_argument("--database", type=Path, help="also (or only) build a database of the scene's train split")
    ap.add_argument("--model", type=Path, help="the model file, for --database")
    ap.add_argument("--db-split", default="train", help="split the database maps (train | all | fit)")
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
    a = ap.parse_args(argv)
    if a.out is None and a.database is None:
        ap.error("give --out (a scene), --database (with --model), or both")
    if a.database is not None and a.model is None:
        ap.error("--database needs --model")
    try:
        conf = _load_conf(a.config, {f.name: getattr(a, f.name) for f in dataclasses.fields(MapConfig)})
        with tempfile.TemporaryDirectory(prefix="bag_to_map_") as td:
            out = a.out or Path(td) / Path(a.bag).name
            main(conf, a.bag, out, overwrite=a.overwrite, progress=not a.quiet)
            if a.database is not None:
                _build_database(out, a)
    except (BagMapError, ValueError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _build_database(scene_dir: Path, a) -> None:
    from reloc_ros.core.device import resolve_device
    from reloc_ros.core.featuremetric import DenseConfig
    from reloc_ros.core.model import load_model
    from reloc_ros.core.pnp import PnPConfig
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.mapping.database import build_database

    dev = resolve_device(a.device)
    model, info = load_model(a.model, dev)
    db = build_database(model, info, [Scene(scene_dir)], a.db_split, dev, progress=not a.quiet,
                        keypoints=PnPConfig() if a.keypoints else None, dense=DenseConfig() if a.dense else None)
    db.save(a.database)
    print(f"database {a.database}: {len(db)} frames, {db.bytes_per_frame():.0f} B/frame")


if __name__ == "__main__":
    sys.exit(cli())
