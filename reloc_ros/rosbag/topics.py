"""Topic and frame names of reloc_ros bags, and builders for their messages (no rclpy).

The 7-Scenes converter (:mod:`reloc_ros.rosbag.convert`) writes these topics; the replay
tool and the evaluator read them back with the same names and helpers.

Topics (defaults; type; content):

* ``/camera/color/image_raw``: ``sensor_msgs/msg/Image``, rgb8 colour image;
* ``/camera/color/image_raw/compressed``: ``sensor_msgs/msg/CompressedImage``, jpeg or png
  colour image (instead of the raw one);
* ``/camera/color/camera_info``: ``sensor_msgs/msg/CameraInfo``, colour intrinsics, plumb_bob, D = 0;
* ``/camera/depth/image_raw``: ``sensor_msgs/msg/Image``, 16UC1 millimetres (optional);
* ``/camera/depth/camera_info``: ``sensor_msgs/msg/CameraInfo``, depth intrinsics (optional);
* ``/tf``: ``tf2_msgs/msg/TFMessage``, ``map`` -> ``camera_gt`` (ground truth);
* ``/tf_static``: ``tf2_msgs/msg/TFMessage``, ``camera_link`` -> optical frames, once;
* ``/camera_gt/pose``: ``geometry_msgs/msg/PoseStamped``, ground truth in ``map``;
* ``/reloc/frame_id``: ``std_msgs/msg/String``, the 7-Scenes frame, "seq-01/frame-000000".

Frames: ``map`` (the 7-Scenes world frame), ``camera_gt`` (the ground-truth camera, optical
convention: x right, y down, z forward), ``camera_link`` (camera body, REP-103: x forward,
y left, z up), ``camera_color_optical_frame`` and ``camera_depth_optical_frame`` (optical
convention, the frames of the images). ``camera_gt`` is *not* linked to ``camera_link``:
the ground truth stays on its own TF pair so that a relocalizer may publish the camera
pose in the same tree without a conflict.

Conventions: poses are 4x4 camera-to-world matrices and quaternions are w-first inside
the project; the ROS (x, y, z, w) order is produced only by
:func:`reloc_ros.geometry.quat_to_ros` (and read back by ``quat_from_ros``). Stamps are
integer nanoseconds.

Messages are built as the dataclasses of a rosbags type store (ROS 2 Kilted by default;
the types used here have the same definitions and RIHS01 hashes in Jazzy).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

import numpy as np

from reloc_ros.data.sevenscenes import Intrinsics
from reloc_ros.geometry import matrix_to_quat, normalize_quat, quat_from_ros, quat_to_matrix, quat_to_ros

__all__ = [
    "TOPIC_COLOR_IMAGE",
    "TOPIC_COLOR_INFO",
    "TOPIC_DEPTH_IMAGE",
    "TOPIC_DEPTH_INFO",
    "TOPIC_TF",
    "TOPIC_TF_STATIC",
    "TOPIC_GT_POSE",
    "TOPIC_FRAME_ID",
    "COMPRESSED_SUFFIX",
    "FRAME_MAP",
    "FRAME_GT",
    "FRAME_CAMERA",
    "FRAME_COLOR_OPTICAL",
    "FRAME_DEPTH_OPTICAL",
    "IMAGE",
    "COMPRESSED_IMAGE",
    "CAMERA_INFO",
    "TF_MESSAGE",
    "POSE_STAMPED",
    "STRING",
    "DISTROS",
    "DEFAULT_DISTRO",
    "OPTICAL_Q_WXYZ",
    "OPTICAL_ROTATION",
    "QOS_SENSOR",
    "QOS_TF",
    "QOS_TF_STATIC",
    "BagTopics",
    "get_typestore",
    "ns_to_time",
    "time_to_ns",
    "header",
    "image_msg",
    "image_to_array",
    "encode_compressed",
    "compressed_format",
    "compressed_image_msg",
    "decode_compressed",
    "camera_info_msg",
    "camera_info_to_intrinsics",
    "transform_stamped_msg",
    "tf_msg",
    "static_tf_msg",
    "transform_to_matrix",
    "pose_stamped_msg",
    "pose_to_matrix",
    "string_msg",
]

# --------------------------------------------------------------------------- names
TOPIC_COLOR_IMAGE = "/camera/color/image_raw"
TOPIC_COLOR_INFO = "/camera/color/camera_info"
TOPIC_DEPTH_IMAGE = "/camera/depth/image_raw"
TOPIC_DEPTH_INFO = "/camera/depth/camera_info"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"
TOPIC_GT_POSE = "/camera_gt/pose"
TOPIC_FRAME_ID = "/reloc/frame_id"
#: image_transport's 'compressed' transport publishes on ``<base topic>/compressed``.
COMPRESSED_SUFFIX = "/compressed"

FRAME_MAP = "map"
FRAME_GT = "camera_gt"
FRAME_CAMERA = "camera_link"
FRAME_COLOR_OPTICAL = "camera_color_optical_frame"
FRAME_DEPTH_OPTICAL = "camera_depth_optical_frame"

# --------------------------------------------------------------------------- message types
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
STRING = "std_msgs/msg/String"

#: ROS 2 distributions whose type definitions may be written (the rosbags type stores).
DISTROS = ("kilted", "jazzy")
DEFAULT_DISTRO = "kilted"

# --------------------------------------------------------------------------- optical frame
#: Rotation of an optical frame (x right, y down, z forward) in its body frame (REP-103:
#: x forward, y left, z up). Its columns are the optical axes in body coordinates.
OPTICAL_ROTATION = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
#: The same rotation as a w-first quaternion; in ROS order (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5).
OPTICAL_Q_WXYZ = np.array([0.5, -0.5, 0.5, -0.5])


# --------------------------------------------------------------------------- topic set
def _check_topic(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/") or value.endswith("/") or " " in value:
        raise ValueError(f"{name}: topic names must be absolute ('/a/b'), got {value!r}")


def _check_frame(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or value.startswith("/") or " " in value:
        raise ValueError(f"{name}: frame ids are non-empty and have no leading '/', got {value!r}")


@dataclass(frozen=True)
class BagTopics:
    """The topic and frame names of a reloc_ros bag (defaults: the module constants).

    Fields ending in ``_frame`` are TF frame ids, the others topic names. Override with
    :meth:`with_overrides` (the converter's ``--remap FIELD=VALUE``).
    """

    color_image: str = TOPIC_COLOR_IMAGE
    color_info: str = TOPIC_COLOR_INFO
    depth_image: str = TOPIC_DEPTH_IMAGE
    depth_info: str = TOPIC_DEPTH_INFO
    tf: str = TOPIC_TF
    tf_static: str = TOPIC_TF_STATIC
    gt_pose: str = TOPIC_GT_POSE
    frame_id: str = TOPIC_FRAME_ID
    map_frame: str = FRAME_MAP
    gt_frame: str = FRAME_GT
    camera_frame: str = FRAME_CAMERA
    color_optical_frame: str = FRAME_COLOR_OPTICAL
    depth_optical_frame: str = FRAME_DEPTH_OPTICAL

    def __post_init__(self) -> None:
        for f in fields(self):
            check = _check_frame if f.name.endswith("_frame") else _check_topic
            check(f.name, getattr(self, f.name))
        topics = [getattr(self, f.name) for f in fields(self) if not f.name.endswith("_frame")]
        topics.append(self.color_compressed)
        dup = sorted({t for t in topics if topics.count(t) > 1})
        if dup:
            raise ValueError(f"BagTopics: topic used twice: {', '.join(dup)}")

    @property
    def color_compressed(self) -> str:
        """The compressed colour topic, as image_transport names it."""
        return self.color_image + COMPRESSED_SUFFIX

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_overrides(self, overrides: Mapping[str, str] | Iterable[str]) -> "BagTopics":
        """A copy with some names replaced: a mapping, or ``"field=value"`` strings."""
        if not isinstance(overrides, Mapping):
            d: dict[str, str] = {}
            for item in overrides:
                key, sep, value = str(item).partition("=")
                if not sep:
                    raise ValueError(f"expected FIELD=VALUE, got {item!r}")
                d[key.strip()] = value.strip()
            overrides = d
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"unknown topic/frame field(s) {', '.join(unknown)}; known: {', '.join(self.field_names())}"
            )
        return replace(self, **dict(overrides))

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------- QoS
def _qos(depth: int, transient_local: bool):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(9223372036, 854775807)  # RMW_DURATION_INFINITE, as rosbag2 records it
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=infinite,
        lifespan=infinite,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=infinite,
        avoid_ros_namespace_conventions=False,
    )


#: Offered QoS written for sensor topics (images, camera info, poses): reliable, volatile.
QOS_SENSOR = _qos(10, False)
#: /tf as tf2_ros.TransformBroadcaster offers it: reliable, volatile, depth 100.
QOS_TF = _qos(100, False)
#: /tf_static as tf2_ros.StaticTransformBroadcaster offers it: reliable, transient local, depth 1.
QOS_TF_STATIC = _qos(1, True)


# --------------------------------------------------------------------------- type store
@lru_cache(maxsize=None)
def get_typestore(distro: str = DEFAULT_DISTRO):
    """The rosbags type store of a ROS 2 distribution ('kilted' or 'jazzy'), cached."""
    from rosbags.typesys import Stores
    from rosbags.typesys import get_typestore as _get

    stores = {"kilted": Stores.ROS2_KILTED, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f"unknown ROS 2 distribution {distro!r}: use one of {', '.join(DISTROS)}")
    return _get(stores[distro])


def _types(typestore=None):
    return (typestore or get_typestore()).types


# --------------------------------------------------------------------------- stamps
def ns_to_time(stamp_ns: int, typestore=None):
    """``builtin_interfaces/msg/Time`` of an integer time in nanoseconds (>= 0)."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"stamps must be >= 0, got {stamp_ns} ns")
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    if sec >= 2**31:
        raise ValueError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return _types(typestore)["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)


def time_to_ns(t) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/msg/Time`` (or a message's header.stamp)."""
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def header(stamp_ns: int, frame_id: str, typestore=None):
    """``std_msgs/msg/Header``."""
    return _types(typestore)["std_msgs/msg/Header"](stamp=ns_to_time(stamp_ns, typestore), frame_id=frame_id)


# --------------------------------------------------------------------------- images
#: numpy layout -> ROS encoding (little-endian data, is_bigendian = 0).
_ENCODINGS = {
    ("uint8", 3): "rgb8",
    ("uint8", 1): "mono8",
    ("uint16", 1): "16UC1",
    ("float32", 1): "32FC1",
}
_ENCODING_LAYOUT = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "16UC1": (np.uint16, 1),
    "mono16": (np.uint16, 1),
    "32FC1": (np.float32, 1),
}


def image_msg(img: np.ndarray, stamp_ns: int, frame_id: str, encoding: str | None = None, typestore=None):
    """``sensor_msgs/msg/Image`` of an array: (H, W, 3) uint8 -> rgb8, (H, W) uint16 -> 16UC1,
    (H, W) uint8 -> mono8, (H, W) float32 -> 32FC1. Rows are packed (step = W x pixel size),
    little-endian."""
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {img.shape}")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if encoding is None:
        encoding = _ENCODINGS.get((img.dtype.name, channels))
        if encoding is None:
            raise ValueError(f"no ROS encoding for {img.dtype} images with {channels} channel(s)")
    elif encoding in _ENCODING_LAYOUT:
        dt, ch = _ENCODING_LAYOUT[encoding]
        if img.dtype != dt or ch != channels:
            raise ValueError(
                f"encoding {encoding} needs {np.dtype(dt).name} x {ch}, got {img.dtype} x {channels}"
            )
    h, w = img.shape[:2]
    little = np.ascontiguousarray(img, dtype=img.dtype.newbyteorder("<"))
    data = little.reshape(-1).view(np.uint8)
    return _types(typestore)[IMAGE](
        header=header(stamp_ns, frame_id, typestore),
        height=int(h),
        width=int(w),
        encoding=encoding,
        is_bigendian=0,
        step=int(w * channels * img.dtype.itemsize),
        data=data,
    )


def image_to_array(msg) -> np.ndarray:
    """The pixels of a ``sensor_msgs/msg/Image`` (encodings of :func:`image_msg`, bgr8, mono16)
    as (H, W) or (H, W, C) in the message's channel order; honours ``step`` and endianness."""
    if msg.encoding not in _ENCODING_LAYOUT:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}")
    dt, ch = _ENCODING_LAYOUT[msg.encoding]
    dt = np.dtype(dt).newbyteorder(">" if msg.is_bigendian else "<")
    row = msg.width * ch * dt.itemsize
    raw = np.asarray(msg.data, dtype=np.uint8)
    if msg.step < row or raw.size < msg.step * msg.height:
        raise ValueError(
            f"image data too short: step {msg.step}, {raw.size} bytes for {msg.width}x{msg.height}"
        )
    rows = raw[: msg.step * msg.height].reshape(msg.height, msg.step)[:, :row]
    arr = np.ascontiguousarray(rows).view(dt).astype(dt.newbyteorder("="))
    return arr.reshape(msg.height, msg.width) if ch == 1 else arr.reshape(msg.height, msg.width, ch)


def compressed_format(fmt: str, encoding: str = "rgb8") -> str:
    """The ``format`` string compressed_image_transport writes for a colour image:
    ``"rgb8; jpeg compressed bgr8"`` / ``"rgb8; png compressed bgr8"``."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    return f"{encoding}; {fmt} compressed bgr8"


def encode_compressed(rgb: np.ndarray, fmt: str, jpeg_quality: int = 95, png_level: int = 3) -> bytes:
    """JPEG or PNG file bytes of an (H, W, 3) uint8 RGB image (a normal file: decoders such as
    cv2.imdecode return the right colours, in bgr8)."""
    from PIL import Image as PILImage

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    buf = io.BytesIO()
    im = PILImage.fromarray(rgb, "RGB")
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=int(jpeg_quality))
    elif fmt == "png":
        im.save(buf, format="PNG", compress_level=int(png_level))
    else:
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    return buf.getvalue()


def compressed_image_msg(data: bytes, fmt: str, stamp_ns: int, frame_id: str, typestore=None):
    """``sensor_msgs/msg/CompressedImage`` holding the file bytes ``data`` of a colour
    image compressed as ``fmt`` ('jpeg' or 'png')."""
    return _types(typestore)[COMPRESSED_IMAGE](
        header=header(stamp_ns, frame_id, typestore),
        format=compressed_format(fmt),
        data=np.frombuffer(bytes(data), dtype=np.uint8),
    )


def decode_compressed(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a colour ``CompressedImage`` (jpeg or png)."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(np.asarray(msg.data, dtype=np.uint8).tobytes())) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- camera info
def camera_info_msg(intrinsics: Intrinsics, stamp_ns: int, frame_id: str, typestore=None):
    """``sensor_msgs/msg/CameraInfo`` of pinhole intrinsics: K, P = [K | 0], R = I,
    plumb_bob with D = 0 (5 zeros: 7-Scenes images are treated as undistorted)."""
    K = intrinsics.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    types = _types(typestore)
    return types[CAMERA_INFO](
        header=header(stamp_ns, frame_id, typestore),
        height=int(intrinsics.height),
        width=int(intrinsics.width),
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=K.reshape(-1).astype(np.float64),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def camera_info_to_intrinsics(msg) -> Intrinsics:
    """:class:`Intrinsics` of a ``CameraInfo`` (from K)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    return Intrinsics(
        float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(msg.width), int(msg.height)
    )


# --------------------------------------------------------------------------- transforms
def _t_and_q(T: np.ndarray, q_wxyz: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"expected a finite 4x4 pose, got shape {T.shape}")
    q = matrix_to_quat(T[:3, :3]) if q_wxyz is None else normalize_quat(np.asarray(q_wxyz, dtype=np.float64))
    return T[:3, 3].copy(), q


def transform_stamped_msg(
    T: np.ndarray,
    stamp_ns: int,
    parent: str,
    child: str,
    q_wxyz: Sequence[float] | None = None,
    typestore=None,
):
    """``geometry_msgs/msg/TransformStamped`` parent -> child: ``T`` is the pose of ``child``
    in ``parent`` (for a camera: camera-to-world). ``q_wxyz`` overrides the rotation of ``T``
    (to write an exact quaternion)."""
    t, q = _t_and_q(T, q_wxyz)
    x, y, z, w = quat_to_ros(q)
    types = _types(typestore)
    return types["geometry_msgs/msg/TransformStamped"](
        header=header(stamp_ns, parent, typestore),
        child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
            rotation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
        ),
    )


def tf_msg(T: np.ndarray, stamp_ns: int, parent: str, child: str, typestore=None):
    """``tf2_msgs/msg/TFMessage`` with the single transform parent -> child (see
    :func:`transform_stamped_msg`)."""
    return _types(typestore)[TF_MESSAGE](
        transforms=[transform_stamped_msg(T, stamp_ns, parent, child, typestore=typestore)]
    )


def static_tf_msg(links: Sequence[tuple[str, str]], stamp_ns: int, typestore=None):
    """``tf2_msgs/msg/TFMessage`` of optical links: each (body, optical) pair gets a zero
    translation and the REP-103 optical rotation, quaternion (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5)."""
    T = np.eye(4)
    T[:3, :3] = OPTICAL_ROTATION
    return _types(typestore)[TF_MESSAGE](
        transforms=[
            transform_stamped_msg(T, stamp_ns, parent, child, q_wxyz=OPTICAL_Q_WXYZ, typestore=typestore)
            for parent, child in links
        ]
    )


def transform_to_matrix(transform) -> np.ndarray:
    """4x4 matrix of a ``geometry_msgs/msg/Transform`` (or a TransformStamped)."""
    tr = getattr(transform, "transform", transform)
    q = tr.rotation
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(quat_from_ros(q.x, q.y, q.z, q.w))
    T[:3, 3] = (tr.translation.x, tr.translation.y, tr.translation.z)
    return T


def pose_stamped_msg(T: np.ndarray, stamp_ns: int, frame_id: str, typestore=None):
    """``geometry_msgs/msg/PoseStamped`` of a 4x4 pose expressed in ``frame_id``."""
    t, q = _t_and_q(T, None)
    x, y, z, w = quat_to_ros(q)
    types = _types(typestore)
    return types[POSE_STAMPED](
        header=header(stamp_ns, frame_id, typestore),
        pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
            orientation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
        ),
    )


def pose_to_matrix(pose) -> np.ndarray:
    """4x4 matrix of a ``geometry_msgs/msg/Pose`` (or a PoseStamped)."""
    p = getattr(pose, "pose", pose)
    q = p.orientation
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(quat_from_ros(q.x, q.y, q.z, q.w))
    T[:3, 3] = (p.position.x, p.position.y, p.position.z)
    return T


def string_msg(text: str, typestore=None):
    """``std_msgs/msg/String``."""
    return _types(typestore)[STRING](data=str(text))
