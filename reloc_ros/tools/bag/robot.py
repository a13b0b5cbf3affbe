"""Write a bag that looks like a robot's, from a scene (real or synthetic 7-Scenes layout).

Command line::

    python -m reloc_ros.tools.bag.robot SCENE --out BAG [--sequences 1,2] [--storage mcap|sqlite3]
        [--rate 30] [--depth] [--depth-frame color|separate] [--depth-offset 0.025] [--depth-size W H]
        [--depth-encoding 16UC1|32FC1] [--tum FILE] [--blur 5,9] [--overwrite]

It is what the bag-to-map converter (:mod:`reloc_ros.tools.bag.to_map`) is tested on: the
recording a robot team makes while driving with SLAM running. The frames of the chosen
sequences are played one after the other, at ``--rate``, as one run.

What goes in:

* ``/tf``, at two rates, as separate publishers make it:
  ``map -> odom`` at 5 Hz (a slow SLAM correction: a constant-velocity screw) and
  ``odom -> base_link`` at 100 Hz (wheel odometry);
* ``/tf_static`` (transient local), once: ``base_link -> camera_link`` (0.15 m forward,
  0.40 m up, pitched 10° down), ``camera_link -> camera_color_optical_frame`` and
  ``camera_link -> camera_depth_optical_frame`` (with ``--depth-frame separate``: offset by
  ``--depth-offset`` along ``camera_link``'s y, as a RealSense's depth module sits beside
  its colour one);
* ``/camera/color/image_raw`` (rgb8) **and** ``/camera/color/image_raw/compressed`` (jpeg),
  as image_transport publishes both, and ``/camera/color/camera_info``;
* with ``--depth``: ``/camera/depth/image_rect_raw`` (16UC1 mm, or 32FC1 m with NaN for no
  return) and ``/camera/depth/camera_info``. With ``--depth-frame color`` it is the scene's
  depth in the colour optical frame (at ``--depth-size``, resampled, when given); with
  ``separate`` it is that depth re-rendered into the depth camera (forward projection with
  a z-buffer: the holes a real offset camera has);
* ``/odom`` (``nav_msgs/Odometry``, odom -> base_link, 100 Hz) and ``/slam/pose``
  (``geometry_msgs/PoseStamped``, map -> base_link, 100 Hz), the two pose topics a
  converter may take instead of TF; with ``--tum FILE`` the same map -> base_link poses
  as a TUM trajectory (``stamp tx ty tz qx qy qz qw``), an optimised trajectory's format.

Stamps: image ``i`` at ``t0 + i / rate``; the 100 Hz poses 3 ms after the hundredths and the
5 Hz ones 7 ms after the fifths, so no pose shares an image's stamp. The bag's receive
times are the header stamps plus 1 ms.

Exactness: the converter interpolates between pose samples (lerp and slerp, as tf2). So that
the camera pose it finds at an image stamp can be compared with the source to 1e-9, the two
100 Hz samples around each image stamp both hold that image's pose (the robot pauses for
10 ms at each frame; between them it moves along the geodesic to the next frame), and
``map -> odom`` is a constant-rate screw, which slerp reproduces exactly.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import invert, matrix_to_quat, quat_to_ros
from reloc_ros.data.registration import reproject_depth
from reloc_ros.data.sevenscenes import Scene, read_color, read_depth_raw, read_pose
from reloc_ros.ros import messages as msgs
from reloc_ros.ros.tf_store import interpolate_pose
from reloc_ros.tools.bag import topics as tp

__all__ = ["RobotBagOptions", "write_robot_bag", "tum_lines", "main", "T_BASE_CAMERA", "TOPICS"]

_NS = 1_000_000_000
_MS = 1_000_000

#: Topics of a robot bag.
TOPICS = {
    "tf": "/tf", "tf_static": "/tf_static",
    "color_image": "/camera/color/image_raw", "color_compressed": "/camera/color/image_raw/compressed",
    "color_info": "/camera/color/camera_info",
    "depth_image": "/camera/depth/image_rect_raw", "depth_info": "/camera/depth/camera_info",
    "odom": "/odom", "slam_pose": "/slam/pose",
}
FRAMES = {"map": "map", "odom": "odom", "base": "base_link", "camera": "camera_link",
          "color": "camera_color_optical_frame", "depth": "camera_depth_optical_frame"}


def _rot_y(a: float) -> np.ndarray:
    """Rotation by ``a`` rad about y."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    """Rotation by ``a`` rad about z."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


#: base_link -> camera_link: 0.15 m forward, 0.40 m up, pitched 10° down (REP-103 axes).
T_BASE_CAMERA = np.eye(4)
T_BASE_CAMERA[:3, :3] = _rot_y(math.radians(10.0))
T_BASE_CAMERA[:3, 3] = (0.15, 0.0, 0.40)

_T_LINK_OPTICAL = np.eye(4)
_T_LINK_OPTICAL[:3, :3] = tp.OPTICAL_ROTATION


def map_to_odom(t_s: float) -> np.ndarray:
    """``map -> odom`` at ``t_s`` seconds into the run: a constant-velocity screw about z
    (0.004 rad/s, 1 cm/s and 0.5 cm/s), the slow correction a SLAM back end publishes."""
    T = np.eye(4)
    T[:3, :3] = _rot_z(0.5 + 0.004 * t_s)
    T[:3, 3] = (0.3 + 0.01 * t_s, -0.2 + 0.005 * t_s, 0.0)
    return T


class RobotBagOptions:
    """Options of :func:`write_robot_bag` (see the module docstring).

    Args:
        sequences: the scene's sequences to play, in order (default: the training split).
        storage: 'mcap' or 'sqlite3'.
        rate_hz: the camera rate.
        depth: write depth and its camera info.
        depth_frame: 'color' (depth registered to the colour camera) or 'separate'.
        depth_offset_m: with 'separate', the depth camera's offset along camera_link's y.
        depth_size: (W, H) of the depth image; None for the colour size.
        depth_encoding: '16UC1' (mm, 0 = no return) or '32FC1' (m, NaN = no return).
        tum: also write the map -> base_link poses to this TUM trajectory file.
        blur: frame indices (in play order) whose colour is Gaussian-blurred (sigma 3 px),
            as motion blur would, to test the converter's sharpness filter.
        distortion: plumb_bob (k1, k2, p1, p2, k3) to distort the colour images with, and to
            write into their CameraInfo; None for undistorted images and D = 0.
        jpeg_quality: of the compressed colour.
    """

    def __init__(self, sequences: Sequence[int] | None = None, storage: str = "mcap", rate_hz: float = 30.0,
                 depth: bool = False, depth_frame: str = "color", depth_offset_m: float = 0.025,
                 depth_size: tuple[int, int] | None = None, depth_encoding: str = "16UC1",
                 tum: Path | str | None = None, blur: Sequence[int] = (),
                 distortion: Sequence[float] | None = None, jpeg_quality: int = 95):
        if storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
        if not (rate_hz > 0 and rate_hz < 50):
            raise ValueError(f"rate_hz must be in (0, 50) (the 100 Hz poses bracket each frame), got {rate_hz}")
        if depth_frame not in ("color", "separate"):
            raise ValueError(f"depth_frame must be color or separate, got {depth_frame!r}")
        if depth_encoding not in ("16UC1", "32FC1"):
            raise ValueError(f"depth_encoding must be 16UC1 or 32FC1, got {depth_encoding!r}")
        if distortion is not None and len(distortion) != 5:
            raise ValueError("distortion takes the 5 plumb_bob coefficients k1 k2 p1 p2 k3")
        self.sequences = None if sequences is None else [int(s) for s in sequences]
        self.storage, self.rate_hz, self.depth = storage, float(rate_hz), bool(depth)
        self.depth_frame, self.depth_offset_m = depth_frame, float(depth_offset_m)
        self.depth_size = None if depth_size is None else (int(depth_size[0]), int(depth_size[1]))
        self.depth_encoding = depth_encoding
        self.tum = None if tum is None else Path(tum)
        self.blur = {int(b) for b in blur}
        self.distortion = None if distortion is None else [float(d) for d in distortion]
        self.jpeg_quality = int(jpeg_quality)


# --------------------------------------------------------------------------- image helpers
def distort_image(rgb: np.ndarray, intr: Intrinsics, D: Sequence[float]) -> np.ndarray:
    """The image a camera with plumb_bob distortion ``D`` would take of the pinhole image
    ``rgb``: each distorted pixel samples the pinhole image where its undistorted ray lands
    (OpenCV's ``undistortPoints``; bilinear)."""
    h, w = rgb.shape[:2]
    K = intr.K
    uv = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), -1).reshape(-1, 1, 2)
    und = cv2.undistortPoints(uv, K, np.asarray(D, np.float64), P=K).reshape(h, w, 2).astype(np.float32)
    return cv2.remap(rgb, und[..., 0], und[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def tum_lines(stamps_ns: Sequence[int], poses: Sequence[np.ndarray]) -> list[str]:
    """TUM trajectory lines ``stamp tx ty tz qx qy qz qw`` (stamp in seconds, 9 decimals)."""
    out = []
    for t, T in zip(stamps_ns, poses):
        x, y, z, w = quat_to_ros(matrix_to_quat(T[:3, :3]))
        sec, ns = divmod(int(t), _NS)
        out.append(f"{sec}.{ns:09d} " + " ".join(f"{v:.17g}" for v in (*T[:3, 3], x, y, z, w)))
    return out


# --------------------------------------------------------------------------- the run
def _samples(image_ns: list[int], T_odom_base: list[np.ndarray], first_ns: int, last_ns: int,
             period_ns: int, phase_ns: int) -> tuple[list[int], list[np.ndarray]]:
    """Pose samples every ``period_ns`` (at ``phase_ns`` past each period): the two samples
    that bracket an image stamp hold that image's pose; the others are interpolated along
    the geodesic between the frames around them."""
    stamps = list(range(first_ns - first_ns % period_ns + phase_ns, last_ns + 1, period_ns))
    stamps = [s for s in stamps if s >= first_ns]
    held: dict[int, np.ndarray] = {}
    for t, T in zip(image_ns, T_odom_base):
        j = max(0, np.searchsorted(stamps, t) - 1)
        for k in (j, j + 1):
            if k in held:
                raise ValueError("two frames share a pose sample: the camera rate is too high for 100 Hz poses")
            held[k] = T
    out = []
    for k, s in enumerate(stamps):
        if k in held:
            out.append(held[k])
            continue
        i = int(np.searchsorted(image_ns, s))
        if i == 0:
            out.append(T_odom_base[0])
        elif i == len(image_ns):
            out.append(T_odom_base[-1])
        else:
            a = (s - image_ns[i - 1]) / (image_ns[i] - image_ns[i - 1])
            out.append(interpolate_pose(T_odom_base[i - 1], T_odom_base[i], a))
    return stamps, out


def _odometry_msg(T, stamp, parent, child, types):
    """``nav_msgs/Odometry``: pose ``T`` of ``child`` in ``parent`` at ``stamp`` (ns), zero twist."""
    t = types
    cov = np.zeros(36)
    return t("nav_msgs/msg/Odometry")(
        header=msgs.header_msg(stamp, parent, t), child_frame_id=child,
        pose=t("geometry_msgs/msg/PoseWithCovariance")(pose=msgs.pose_msg(T, t), covariance=cov.copy()),
        twist=t("geometry_msgs/msg/TwistWithCovariance")(
            twist=t("geometry_msgs/msg/Twist")(linear=t("geometry_msgs/msg/Vector3")(x=0.0, y=0.0, z=0.0),
                                               angular=t("geometry_msgs/msg/Vector3")(x=0.0, y=0.0, z=0.0)),
            covariance=cov.copy()))


def _camera_info(intr: Intrinsics, stamp, frame: str, D, types):
    """CameraInfo of ``intr`` in ``frame`` at ``stamp``, with distortion ``D`` (None: zero)."""
    m = msgs.camera_info_msg(intr, stamp, frame, types)
    if D is not None:
        m.d = np.asarray(D, np.float64)
    return m


class _RobotRun:
    """The run a robot bag records: every stamp and pose, and the message streams in time order.

    Args:
        scene: the source scene.
        frames: its frames, in play order.
        o: the options.
        start_ns: the stamp of the first image.
        types: the rosbags message types.
    """

    def __init__(self, scene: Scene, frames: list, o: RobotBagOptions, start_ns: int, types):
        self.scene, self.frames, self.o, self.types = scene, frames, o, types
        self.cintr = scene.color_intrinsics
        self.dsize = o.depth_size or (self.cintr.width, self.cintr.height)
        self.dintr = self.cintr.scaled(*self.dsize) if o.depth_size else self.cintr
        self.depth_frame = FRAMES["depth"] if o.depth_frame == "separate" else FRAMES["color"]
        self.T_link_depth = _T_LINK_OPTICAL.copy()
        if o.depth_frame == "separate":
            self.T_link_depth[:3, 3] = (0.0, o.depth_offset_m, 0.0)
        self.T_color_depth = invert(_T_LINK_OPTICAL) @ self.T_link_depth
        self.T_base_color = T_BASE_CAMERA @ _T_LINK_OPTICAL
        period = int(round(_NS / o.rate_hz))
        self.start_ns = start_ns
        self.image_ns = [start_ns + i * period for i in range(len(frames))]
        self.T_map_color = [read_pose(f.pose_path) for f in frames]
        T_map_base = [T @ invert(self.T_base_color) for T in self.T_map_color]
        T_odom_base = [invert(map_to_odom((t - start_ns) / _NS)) @ T for t, T in zip(self.image_ns, T_map_base)]
        self.first, last = start_ns - 500 * _MS, self.image_ns[-1] + 500 * _MS
        self.fast_ns, self.fast_T = _samples(self.image_ns, T_odom_base, self.first, last, 10 * _MS, 3 * _MS)
        # /slam/pose: map -> base_link at the same 100 Hz stamps, holding the exact poses around images
        _, self.slam_T = _samples(self.image_ns, T_map_base, self.first, last, 10 * _MS, 3 * _MS)
        self.slow_ns = [s for s in range(self.first - self.first % (200 * _MS) + 7 * _MS, last + 1, 200 * _MS)
                        if s >= self.first]

    def connections(self) -> list[tuple[str, str, object]]:
        """(topic, type, offered QoS) of every connection of the bag."""
        specs = [(TOPICS["tf_static"], tp.TF_MESSAGE, tp.QOS_TF_STATIC), (TOPICS["tf"], tp.TF_MESSAGE, tp.QOS_TF),
                 (TOPICS["odom"], "nav_msgs/msg/Odometry", tp.QOS_SENSOR),
                 (TOPICS["slam_pose"], tp.POSE_STAMPED, tp.QOS_SENSOR),
                 (TOPICS["color_info"], tp.CAMERA_INFO, tp.QOS_SENSOR),
                 (TOPICS["color_image"], tp.IMAGE, tp.QOS_SENSOR),
                 (TOPICS["color_compressed"], tp.COMPRESSED_IMAGE, tp.QOS_SENSOR)]
        if self.o.depth:
            specs += [(TOPICS["depth_info"], tp.CAMERA_INFO, tp.QOS_SENSOR),
                      (TOPICS["depth_image"], tp.IMAGE, tp.QOS_SENSOR)]
        return specs

    def stream_static(self) -> Iterator:
        """/tf_static, once: base_link -> camera_link -> the optical frames."""
        F, types = FRAMES, self.types
        links = [(F["base"], F["camera"], T_BASE_CAMERA), (F["camera"], F["color"], _T_LINK_OPTICAL)]
        if self.o.depth and self.o.depth_frame == "separate":
            links.append((F["camera"], F["depth"], self.T_link_depth))
        m = msgs.tf_message([msgs.transform_stamped_msg(T, self.first, p, c, types=types) for p, c, T in links],
                            types)
        yield self.first, TOPICS["tf_static"], m, tp.TF_MESSAGE

    def stream_slow(self) -> Iterator:
        """map -> odom on /tf at 5 Hz."""
        F, types = FRAMES, self.types
        for s in self.slow_ns:
            T = map_to_odom((s - self.start_ns) / _NS)
            yield s, TOPICS["tf"], msgs.tf_message(
                [msgs.transform_stamped_msg(T, s, F["map"], F["odom"], types=types)], types), tp.TF_MESSAGE

    def stream_fast(self) -> Iterator:
        """odom -> base_link on /tf, /odom and /slam/pose, at 100 Hz."""
        F, types = FRAMES, self.types
        for s, T, P in zip(self.fast_ns, self.fast_T, self.slam_T):
            yield s, TOPICS["tf"], msgs.tf_message(
                [msgs.transform_stamped_msg(T, s, F["odom"], F["base"], types=types)], types), tp.TF_MESSAGE
            yield s, TOPICS["odom"], _odometry_msg(T, s, F["odom"], F["base"], types), "nav_msgs/msg/Odometry"
            yield s, TOPICS["slam_pose"], msgs.pose_stamped_msg(P, s, F["map"], types), tp.POSE_STAMPED

    def _depth_messages(self, f, s: int) -> Iterator:
        """The depth camera info and image of frame ``f`` at stamp ``s``."""
        o, types = self.o, self.types
        raw = read_depth_raw(f.depth_path)
        dep = reproject_depth(raw, self.scene.depth_intrinsics.K, self.dintr.K, self.dsize,
                              invert(self.T_color_depth)) if (o.depth_frame == "separate" or o.depth_size) else raw
        if o.depth_encoding == "32FC1":
            m = np.where((dep > 0) & (dep < 65535), dep.astype(np.float32) / 1000.0, np.nan)
            img = msgs.image_msg(m.astype(np.float32), s, self.depth_frame, "32FC1", types)
        else:
            img = msgs.image_msg(dep, s, self.depth_frame, "16UC1", types)
        yield s, TOPICS["depth_info"], msgs.camera_info_msg(self.dintr, s, self.depth_frame, types), tp.CAMERA_INFO
        yield s, TOPICS["depth_image"], img, tp.IMAGE

    def stream_images(self) -> Iterator:
        """Colour (raw and compressed) with its camera info, and depth, at every image stamp."""
        o, types, color = self.o, self.types, FRAMES["color"]
        for i, (f, s) in enumerate(zip(self.frames, self.image_ns)):
            rgb = read_color(f.color_path)
            if o.distortion is not None:
                rgb = distort_image(rgb, self.cintr, o.distortion)
            if i in o.blur:
                rgb = cv2.GaussianBlur(rgb, (0, 0), 3.0)
            yield s, TOPICS["color_info"], _camera_info(self.cintr, s, color, o.distortion, types), tp.CAMERA_INFO
            yield s, TOPICS["color_image"], msgs.image_msg(rgb, s, color, "rgb8", types), tp.IMAGE
            yield s, TOPICS["color_compressed"], msgs.rgb_to_compressed_msg(
                rgb, s, color, "jpeg", o.jpeg_quality, types), tp.COMPRESSED_IMAGE
            if o.depth:
                yield from self._depth_messages(f, s)

    def messages(self) -> Iterator:
        """(stamp, topic, message, type) of every message, in stamp order."""
        return heapq.merge(self.stream_static(), self.stream_slow(), self.stream_fast(), self.stream_images(),
                           key=lambda x: x[0])


def _write(out: Path, run: _RobotRun, storage: str) -> dict[str, int]:
    """Write the run's messages into the bag folder ``out`` (removed on failure); returns the
    count per topic. Receive times are the stamps plus 1 ms."""
    store = run.types.store
    specs = run.connections()
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    counts = {topic: 0 for topic, _, _ in specs}
    try:
        writer.open()
        conns = {topic: writer.add_connection(topic, mt, typestore=store, serialization_format="cdr",
                                              offered_qos_profiles=[q]) for topic, mt, q in specs}
        for s, topic, m, mt in run.messages():
            writer.write(conns[topic], s + _MS, store.serialize_cdr(m, mt))
            counts[topic] += 1
        writer.close()
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    return counts


def write_robot_bag(scene_dir: Path | str, out: Path | str, options: RobotBagOptions | None = None, *,
                    overwrite: bool = False, start_ns: int = 1_700_000_000 * _NS) -> dict:
    """Write the robot-like bag (see the module docstring).

    Args:
        scene_dir: the source scene (7-Scenes layout).
        out: the bag folder to create.
        options: :class:`RobotBagOptions` (default: all defaults).
        overwrite: replace an existing ``out``.
        start_ns: the stamp of the first image.

    Returns:
        A summary with the ground truth: ``stamps_ns`` and ``T_map_color`` (camera-to-map of
        the colour optical frame) of every image, ``frame_ids``, the colour and depth
        intrinsics, and counts.
    """
    o = options or RobotBagOptions()
    scene = Scene(Path(scene_dir))
    seqs = o.sequences if o.sequences is not None else scene.sequences("train")
    frames = scene.frames(seqs)
    if not frames:
        raise ValueError(f"{scene_dir}: no frames in sequences {seqs}")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass overwrite=True (--overwrite)")
        shutil.rmtree(out)
    run = _RobotRun(scene, frames, o, start_ns, msgs.rosbags_types("kilted"))
    counts = _write(out, run, o.storage)
    if o.tum is not None:
        o.tum.write_text("# stamp tx ty tz qx qy qz qw (map -> base_link)\n"
                         + "\n".join(tum_lines(run.fast_ns, run.slam_T)) + "\n")
    return {"bag": str(out), "frames": len(frames), "frame_ids": [f.id for f in frames], "stamps_ns": run.image_ns,
            "T_map_color": np.stack(run.T_map_color), "color_intrinsics": run.cintr,
            "depth_intrinsics": run.dintr, "depth_frame": run.depth_frame, "T_color_depth": run.T_color_depth,
            "counts": counts, "T_base_color": run.T_base_color}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.robot SCENE --out BAG ...``; 0, or 2 with one
    ``error:`` line on stderr."""
    ap = argparse.ArgumentParser(prog="python -m reloc_ros.tools.bag.robot", description="Write a robot-like rosbag2 (multi-rate TF chain, pose topics, raw "
                                             "and compressed images) from a 7-Scenes-layout scene")
    ap.add_argument("scene", type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sequences", help="comma-separated sequences to play in order (default: the train split)")
    ap.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz)")
    ap.add_argument("--depth", action="store_true")
    ap.add_argument("--depth-frame", default="color", choices=("color", "separate"))
    ap.add_argument("--depth-offset", type=float, default=0.025, help="m, with --depth-frame separate")
    ap.add_argument("--depth-size", type=int, nargs=2, metavar=("W", "H"))
    ap.add_argument("--depth-encoding", default="16UC1", choices=("16UC1", "32FC1"))
    ap.add_argument("--tum", type=Path, help="also write the map -> base_link trajectory here (TUM format)")
    ap.add_argument("--blur", default="", help="comma-separated frame indices to blur")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    try:
        opts = RobotBagOptions(
            sequences=[int(s) for s in a.sequences.split(",")] if a.sequences else None, storage=a.storage,
            rate_hz=a.rate, depth=a.depth, depth_frame=a.depth_frame, depth_offset_m=a.depth_offset,
            depth_size=a.depth_size, depth_encoding=a.depth_encoding, tum=a.tum,
            blur=[int(b) for b in a.blur.split(",") if b.strip()])
        s = write_robot_bag(a.scene, a.out, opts, overwrite=a.overwrite)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {s['frames']} frames to {s['bag']}: " + json.dumps(s["counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
