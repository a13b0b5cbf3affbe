"""What a reloc_ros bag holds: topic and frame names, message types and recorded QoS (no rclpy).

The 7-Scenes converter (:mod:`reloc_ros.tools.bag.convert`) writes these topics; the replay
tool and the evaluator read them back with the same names (reading a bag folder:
:mod:`reloc_ros.tools.bag.reading`). The messages themselves are
built and read by :mod:`reloc_ros.ros.messages` (with :func:`~reloc_ros.ros.messages.rosbags_types`).

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
:func:`reloc_ros.core.geometry.quat_to_ros` (and read back by ``quat_from_ros``). Stamps are
integer nanoseconds.

Messages are the dataclasses of a rosbags type store (ROS 2 Kilted by default; the types
used here have the same definitions and RIHS01 hashes in Jazzy).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from reloc_ros.ros import messages as msg
from reloc_ros.ros.messages import MessageTypes

__all__ = [
    "TOPIC_COLOR_IMAGE", "TOPIC_COLOR_INFO", "TOPIC_DEPTH_IMAGE", "TOPIC_DEPTH_INFO", "TOPIC_TF",
    "TOPIC_TF_STATIC", "TOPIC_GT_POSE", "TOPIC_FRAME_ID", "COMPRESSED_SUFFIX", "FRAME_MAP", "FRAME_GT",
    "FRAME_CAMERA", "FRAME_ODOM", "FRAME_COLOR_OPTICAL", "FRAME_DEPTH_OPTICAL", "IMAGE", "COMPRESSED_IMAGE",
    "CAMERA_INFO", "TF_MESSAGE", "POSE_STAMPED", "STRING", "DISTROS", "DEFAULT_DISTRO", "OPTICAL_Q_WXYZ",
    "OPTICAL_ROTATION", "QOS_SENSOR", "QOS_TF", "QOS_TF_STATIC", "BagTopics", "optical_links_msg",
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
FRAME_ODOM = "odom"
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
    """Raise ValueError unless ``value`` (the field ``name``) is an absolute topic name."""
    if not isinstance(value, str) or not value.startswith("/") or value.endswith("/") or " " in value:
        raise ValueError(f"{name}: topic names must be absolute ('/a/b'), got {value!r}")


def _check_frame(name: str, value: str) -> None:
    """Raise ValueError unless ``value`` (the field ``name``) is a TF frame id."""
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
    odom_frame: str = FRAME_ODOM
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
        """The names of the fields (topics and frames), in order."""
        return [f.name for f in fields(cls)]

    def with_overrides(self, overrides: Mapping[str, str] | Iterable[str]) -> "BagTopics":
        """A copy with some names replaced.

        Args:
            overrides: a mapping field -> name, or ``"field=value"`` strings.

        Raises:
            ValueError: an unknown field, a malformed item or a bad name.
        """
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
        """Field -> name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------- QoS
def _qos(depth: int, transient_local: bool) -> Qos:
    """A reliable offered QoS, as rosbag2 records it.

    Args:
        depth: the keep-last history depth.
        transient_local: transient local (late subscribers get the history) or volatile.
    """
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


def optical_links_msg(links: Sequence[tuple], stamp_ns: int, types: MessageTypes):
    """``tf2_msgs/msg/TFMessage`` of optical links: each (body, optical) pair gets a zero
    translation and the REP-103 optical rotation, quaternion (x, y, z, w) = (-0.5, 0.5, -0.5, 0.5).
    A (body, optical, T) triple puts the optical frame at ``T`` (4x4, metres) in the body's
    first optical frame: the depth camera of an unregistered RGB-D scene at its calibrated
    depth-to-colour pose.

    Args:
        links: (body frame, optical frame) pairs or (body frame, optical frame, T) triples.
        stamp_ns: the stamp of every transform (integer ns).
        types: the rosbags message types to build with.
    """
    T = np.eye(4)
    T[:3, :3] = OPTICAL_ROTATION
    out = []
    for link in links:
        parent, child = link[:2]
        if len(link) > 2:
            out.append(msg.transform_stamped_msg(T @ np.asarray(link[2]), stamp_ns, parent, child, types=types))
        else:
            out.append(msg.transform_stamped_msg(T, stamp_ns, parent, child, q_wxyz=OPTICAL_Q_WXYZ, types=types))
    return msg.tf_message(out, types)
