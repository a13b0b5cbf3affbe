"""The ROS message layer of reloc_ros: ONE encoding table, ONE image codec, message <-> matrix
conversions, and the builders of every message the project sends or records.

Used alike by the node (:mod:`reloc_ros.ros.node`), the TF layer (:mod:`reloc_ros.ros.tf`),
the 7-Scenes bag converter, the replay and the online evaluator
(:mod:`reloc_ros.tools.bag`). Nothing here imports rclpy at module level, so the bag
converter runs without a ROS installation.

**Message classes** (:class:`MessageTypes`): every builder takes ``types=``, the source of
the message classes: :func:`rclpy_types` (the default; ``sensor_msgs.msg.Image`` and so on,
for publishing) or :func:`rosbags_types` (the dataclasses of a rosbags type store, for
writing bags). The readers (``image_to_rgb``, ``transform_to_matrix``, ...) take either
kind, or any object with the same fields.

**Stamps** (:func:`stamp_to_ns`): a ``builtin_interfaces/Time`` (either kind), an
``rclpy.time.Time``, a float number of **seconds**, or an int number of **nanoseconds**.

The image codec lives in :mod:`reloc_ros.ros.images` and the message classes and stamps in
:mod:`reloc_ros.ros.msgtypes`; both are re-exported here, so ``messages`` stays the one
import for the whole layer.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.distortion import check_distortion, has_distortion
from reloc_ros.core.geometry import is_rigid, make_pose, matrix_to_quat, normalize_quat, quat_from_ros, quat_to_ros, \
    rigidity_error

from reloc_ros.ros.images import (BACKEND, BACKEND_NOTE, ENCODINGS, MAX_COMPRESSED_BYTES, MAX_PIXELS,  # noqa: F401
                                  SUPPORTED_ENCODINGS, ImageConversionError, compressed_format,
                                  compressed_image_msg, compressed_to_rgb, encode_compressed, image_msg,
                                  image_to_array, image_to_rgb, msg_to_rgb, rgb_to_compressed_msg,
                                  rgb_to_image_msg, rgb_to_pixels)
from reloc_ros.ros.msgtypes import (MessageTypes, _types, header_msg, rclpy_types, rosbags_types,  # noqa: F401
                                    stamp_to_ns, time_msg)

__all__ = [
    # message classes and stamps
    "MessageTypes", "rclpy_types", "rosbags_types", "stamp_to_ns", "time_msg", "header_msg",
    # images
    "ImageConversionError", "ENCODINGS", "SUPPORTED_ENCODINGS", "MAX_PIXELS", "MAX_COMPRESSED_BYTES",
    "BACKEND", "BACKEND_NOTE", "image_to_array", "image_to_rgb", "compressed_to_rgb", "msg_to_rgb",
    "rgb_to_pixels", "image_msg", "rgb_to_image_msg", "encode_compressed", "compressed_format",
    "compressed_image_msg", "rgb_to_compressed_msg",
    # camera info, transforms, poses, strings
    "camera_info_msg", "camera_info_to_intrinsics", "CameraCalibration", "camera_info_to_calibration",
    "transform_stamped_msg", "tf_message",
    "transform_to_matrix", "pose_msg", "pose_stamped_msg", "pose_with_covariance_stamped_msg",
    "pose_to_matrix", "covariance_of", "string_msg", "check_frame_id",
]


# --------------------------------------------------------------------------- camera info
def camera_info_msg(intrinsics: Intrinsics, stamp, frame_id: str, types: MessageTypes | None = None):
    """``sensor_msgs/msg/CameraInfo`` of pinhole intrinsics: K, P = [K | 0], R = I,
    plumb_bob with D = 0 (5 zeros: the images are treated as undistorted)."""
    K = intrinsics.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    t = _types(types)
    return t("sensor_msgs/msg/CameraInfo")(
        header=header_msg(stamp, frame_id, t), height=int(intrinsics.height), width=int(intrinsics.width),
        distortion_model="plumb_bob", d=t.float_list(np.zeros(5)), k=K.reshape(-1).astype(np.float64),
        r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def camera_info_to_intrinsics(msg) -> Intrinsics:
    """:class:`~reloc_ros.core.camera.Intrinsics` of a ``CameraInfo`` (from K).

    Raises:
        ValueError: a zero or non-finite focal length, or a zero image size.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    intr = Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(msg.width),
                      int(msg.height))
    if not (np.isfinite(k).all() and intr.fx > 0 and intr.fy > 0 and intr.width > 0 and intr.height > 0):
        raise ValueError(f"CameraInfo without usable intrinsics (K = {k.reshape(-1).tolist()}, "
                         f"{intr.width}x{intr.height})")
    return intr


class CameraCalibration(NamedTuple):
    """What a ``CameraInfo`` says about its images: pinhole intrinsics (from K) and the lens
    distortion (``distortion_model`` and D; see :mod:`reloc_ros.core.distortion`). Equal
    when every value is equal, so a stream's repeated CameraInfo compares equal."""

    intrinsics: Intrinsics
    model: str
    D: tuple[float, ...]

    @property
    def distorted(self) -> bool:
        """Whether the images need undistorting (a non-zero D)."""
        return has_distortion(self.D)

    def describe(self) -> str:
        """One line for a log: ``fx 525.0 fy 525.0 cx 319.5 cy 239.5 (640x480), plumb_bob distortion``."""
        i = self.intrinsics
        dist = f"{self.model} distortion" if self.distorted else "no distortion"
        return f"fx {i.fx:.1f} fy {i.fy:.1f} cx {i.cx:.1f} cy {i.cy:.1f} ({i.width}x{i.height}), {dist}"


def camera_info_to_calibration(msg) -> CameraCalibration:
    """The :class:`CameraCalibration` of a ``CameraInfo``: K as in
    :func:`camera_info_to_intrinsics`, and its distortion model and D.

    Raises:
        ValueError: bad intrinsics (as :func:`camera_info_to_intrinsics`), or a distortion
            that cannot be undone: an unsupported model, a wrong number of coefficients, a
            non-finite one (the message names which).
    """
    intr = camera_info_to_intrinsics(msg)
    model = str(msg.distortion_model or "")
    try:
        D = tuple(float(d) for d in msg.d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"CameraInfo with unreadable distortion coefficients ({e})") from None
    try:
        check_distortion(model, D)
    except ValueError as e:
        raise ValueError(f"CameraInfo with a distortion that cannot be undone: {e} (D = {list(D)})") from None
    return CameraCalibration(intr, model or "plumb_bob", D)


# --------------------------------------------------------------------------- transforms
def check_frame_id(name, what: str) -> str:
    """``name`` when it is a valid tf2 frame id (non-empty, no leading slash); else ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} frame id must be a non-empty string, got {name!r}")
    if name.startswith("/"):
        raise ValueError(f"{what} frame id {name!r} must not start with '/' (tf2 rejects it)")
    return name


def _rigid_tq(T) -> tuple[np.ndarray, np.ndarray]:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"T must be a finite 4x4 matrix, got shape {T.shape}")
    if not is_rigid(T):
        raise ValueError(f"T is not a rigid transform (rigidity error {rigidity_error(T):.2e})")
    return T[:3, 3].copy(), matrix_to_quat(T[:3, :3])


def _quaternion(q_wxyz, t: MessageTypes):
    x, y, z, w = quat_to_ros(q_wxyz)
    return t("geometry_msgs/msg/Quaternion")(x=x, y=y, z=z, w=w)


def transform_stamped_msg(T, stamp, parent: str, child: str, *, q_wxyz: Sequence[float] | None = None,
                          types: MessageTypes | None = None):
    """``geometry_msgs/msg/TransformStamped`` holding the rigid transform ``T``.

    Args:
        T: 4x4 rigid transform ``T_parent_child`` (the pose of ``child`` in ``parent``; maps
            points from child to parent coordinates; for a camera: camera-to-world).
            Checked with :func:`reloc_ros.core.geometry.is_rigid` (tolerance 1e-3).
        stamp: header time (see :func:`stamp_to_ns`).
        parent: ``header.frame_id``, e.g. ``"map"``.
        child: ``child_frame_id``, e.g. ``"odom"``.
        q_wxyz: an exact w-first quaternion to write instead of the rotation of ``T``.
        types: message classes (default rclpy).

    Raises:
        ValueError: ``T`` not a finite rigid 4x4 transform, bad or equal frame ids, bad time.
    """
    tr, q = _rigid_tq(T)
    if q_wxyz is not None:
        q = normalize_quat(np.asarray(q_wxyz, dtype=np.float64))
    check_frame_id(parent, "parent")
    check_frame_id(child, "child")
    if parent == child:
        raise ValueError(f"parent and child frame are both {parent!r}")
    t = _types(types)
    return t("geometry_msgs/msg/TransformStamped")(
        header=header_msg(stamp, parent, t), child_frame_id=child,
        transform=t("geometry_msgs/msg/Transform")(
            translation=t("geometry_msgs/msg/Vector3")(x=float(tr[0]), y=float(tr[1]), z=float(tr[2])),
            rotation=_quaternion(q, t)))


def tf_message(transforms, types: MessageTypes | None = None):
    """``tf2_msgs/msg/TFMessage`` of a list of ``TransformStamped`` (or a single one)."""
    lst = [transforms] if hasattr(transforms, "child_frame_id") else list(transforms)
    return _types(types)("tf2_msgs/msg/TFMessage")(transforms=lst)


def transform_to_matrix(msg) -> np.ndarray:
    """4x4 matrix of a ``geometry_msgs/TransformStamped`` or ``geometry_msgs/Transform``.

    For a ``TransformStamped`` the result is ``T_parent_child`` (``parent = header.frame_id``,
    ``child = child_frame_id``). The quaternion is normalised.

    Raises:
        ValueError: non-finite values or a zero quaternion.
    """
    tr = msg.transform if hasattr(msg, "transform") else msg
    return _matrix(tr.translation, tr.rotation, "transform")


def _matrix(position, orientation, what: str) -> np.ndarray:
    t = (position.x, position.y, position.z)
    q = quat_from_ros(orientation.x, orientation.y, orientation.z, orientation.w)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
        raise ValueError(f"{what} holds non-finite values")
    return make_pose(t, q)


# --------------------------------------------------------------------------- poses
def pose_msg(T, types: MessageTypes | None = None):
    """``geometry_msgs/msg/Pose`` of a 4x4 rigid pose."""
    tr, q = _rigid_tq(T)
    t = _types(types)
    return t("geometry_msgs/msg/Pose")(
        position=t("geometry_msgs/msg/Point")(x=float(tr[0]), y=float(tr[1]), z=float(tr[2])),
        orientation=_quaternion(q, t))


def pose_stamped_msg(T, stamp, frame_id: str, types: MessageTypes | None = None):
    """``geometry_msgs/msg/PoseStamped`` of a 4x4 pose expressed in ``frame_id``."""
    t = _types(types)
    return t("geometry_msgs/msg/PoseStamped")(header=header_msg(stamp, frame_id, t), pose=pose_msg(T, t))


def pose_with_covariance_stamped_msg(T, covariance, stamp, frame_id: str, types: MessageTypes | None = None):
    """``geometry_msgs/msg/PoseWithCovarianceStamped`` of a pose and its 6x6 covariance.

    Args:
        T: 4x4 pose in ``frame_id``.
        covariance: 6x6 (or 36) in ROS order (x, y, z, rot_x, rot_y, rot_z), m² and rad²,
            rotations about the fixed axes of ``frame_id``.
    """
    cov = np.asarray(covariance, dtype=np.float64).reshape(-1)
    if cov.shape != (36,) or not np.all(np.isfinite(cov)):
        raise ValueError(f"covariance must be 36 finite numbers, got shape {np.shape(covariance)}")
    t = _types(types)
    return t("geometry_msgs/msg/PoseWithCovarianceStamped")(
        header=header_msg(stamp, frame_id, t),
        pose=t("geometry_msgs/msg/PoseWithCovariance")(pose=pose_msg(T, t), covariance=cov.copy()))


def pose_to_matrix(msg) -> np.ndarray:
    """4x4 matrix of a ``Pose``, ``PoseStamped``, ``PoseWithCovariance`` or
    ``PoseWithCovarianceStamped`` (the pose, without its header or covariance)."""
    p = msg
    while not hasattr(p, "position"):
        p = p.pose
    return _matrix(p.position, p.orientation, "pose")


def covariance_of(msg) -> np.ndarray:
    """The 6x6 covariance of a ``PoseWithCovariance(Stamped)``."""
    p = msg.pose if hasattr(msg, "header") else msg
    return np.asarray(p.covariance, dtype=np.float64).reshape(6, 6)


def string_msg(text: str, types: MessageTypes | None = None):
    """``std_msgs/msg/String``."""
    return _types(types)("std_msgs/msg/String")(data=str(text))
