"""The relocalization node's outputs: the pose (``~/pose``), ``/initialpose`` and TF.

:class:`Outputs` exists from configure to cleanup. For each localized frame the node's
worker calls :meth:`Outputs.locate` (the pose in the output world and frame, with its
covariance: through the TF alignment ``map_frame -> database_frame`` and, with
``robot_frame``, the camera-to-robot transform) and then :meth:`Outputs.publish` (the pose,
``/initialpose`` when the odometry gate agrees, and TF per ``tf_mode``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped

from reloc_ros.core.geometry import align_with_covariance, compose_with_covariance, invert
from reloc_ros.core.initialpose import GateConfig, InitialPoseGate
from reloc_ros.ros.messages import pose_with_covariance_stamped_msg, transform_stamped_msg
from reloc_ros.ros.tf import TfBroadcaster, tf_backend

__all__ = ["Located", "Outputs"]


@dataclass(frozen=True)
class Located:
    """A pose ready to publish.

    Attributes:
        msg: the ``PoseWithCovarianceStamped`` (in ``world``, of ``frame``).
        T_world_cam: (4, 4) the camera's pose in ``world`` (for TF).
        T_out: (4, 4) the published frame's pose in ``world``.
        world: the frame the pose is expressed in (``map_frame`` or ``database_frame``).
        frame: the frame whose pose it is (the camera's or ``robot_frame``).
    """

    msg: Any
    T_world_cam: np.ndarray
    T_out: np.ndarray
    world: str
    frame: str


class Outputs:
    """Publishers, TF broadcaster and buffer, and the /initialpose gate of one configuration.

    Args:
        node: the node (logger, clock, TF subscriptions).
        values: the node's validated parameters (:func:`reloc_ros.ros.parameters.validate`).
        gate: the /initialpose gate's settings.
        make_publisher: ``make_publisher(type, topic, depth)`` (lifecycle publishers for the
            managed node).
        warn: ``warn(kind, message)``: the node's throttled warning.
        withhold_initialpose: why no pose may seed a localizer (no calibration, or one that
            missed its target); empty: the gate decides. ``~/publish_initialpose`` still works.
    """

    def __init__(self, node, values: Mapping[str, Any], gate: GateConfig, make_publisher,
                 warn: Callable[[str, str], None], withhold_initialpose: str = ""):
        self.node, self.p, self._warn = node, values, warn
        self.withhold = withhold_initialpose
        self._lock = threading.Lock()
        self.pub_pose = make_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.pub_initial = make_publisher(PoseWithCovarianceStamped, values["initialpose_topic"], 10)
        self.gate = InitialPoseGate(gate)
        self.gate_reason = ("disabled (publish_initialpose false)" if not values["publish_initialpose"] else
                            f"withheld: {withhold_initialpose}" if withhold_initialpose else "no pose yet")
        self.tf_broadcaster = TfBroadcaster(node) if values["tf_mode"] != "none" else None
        need_tf = (values["tf_mode"] == "map_to_odom" or values["robot_frame"] or values["publish_initialpose"]
                   or values["database_frame"] != values["map_frame"])
        self.tf_buffer = tf_backend().buffer(node) if need_tf else None
        self.last_msg = None  # the last published pose (for ~/publish_initialpose)
        self._alignment_warned = False

    def destroy(self, destroy_publisher) -> None:
        """Remove the publishers (with ``destroy_publisher(pub)``) and the TF objects."""
        for pub in (self.pub_pose, self.pub_initial):
            destroy_publisher(pub)
        if self.tf_broadcaster is not None:
            self.tf_broadcaster.destroy()
        if self.tf_buffer is not None:
            self.tf_buffer.destroy()
        self.tf_broadcaster = self.tf_buffer = self.last_msg = None

    # -- where the pose goes -----------------------------------------------------------------
    def locate(self, T_db_cam: np.ndarray, cov_db: np.ndarray, camera_frame: str, stamp) -> Located | str:
        """The pose to publish for a localized frame, or why there is none.

        Args:
            T_db_cam: (4, 4) the camera's pose in the database's world.
            cov_db: (6, 6) its covariance (:func:`reloc_ros.core.geometry.align_with_covariance`).
            camera_frame: the camera's TF frame.
            stamp: the image's stamp.

        Returns:
            a :class:`Located`, or a one-line reason (a TF ``camera -> robot_frame`` is missing).
        """
        T_world, world = self._alignment()
        cam_world, cov_world = align_with_covariance(T_world, T_db_cam, cov_db)
        T_out, cov_out, frame = cam_world, cov_world, camera_frame
        robot = self.p["robot_frame"]
        if robot:
            T_cam_robot = self._lookup(camera_frame, robot, stamp)
            if T_cam_robot is None:
                return f"no pose: no TF {camera_frame} -> {robot} at the image stamp"
            T_out, cov_out = compose_with_covariance(cam_world, cov_world, T_cam_robot)
            frame = robot
        msg = pose_with_covariance_stamped_msg(T_out, cov_out, stamp, world)
        return Located(msg, cam_world, T_out, world, frame)

    def _lookup(self, target: str, source: str, stamp):
        if self.tf_buffer is None or not source or not target:
            return None
        return self.tf_buffer.lookup(target, source, stamp, timeout_s=self.p["tf_timeout_s"])

    def _alignment(self) -> tuple[np.ndarray, str]:
        """(T_world_db, world frame): the database world in ``map_frame`` when TF has it
        (the user's alignment), else the identity in ``database_frame``."""
        db, mp = self.p["database_frame"], self.p["map_frame"]
        if db == mp:
            return np.eye(4), mp
        # The alignment is static: the latest value, without waiting (a missing alignment must
        # not cost every frame the TF timeout).
        T = None if self.tf_buffer is None else self.tf_buffer.lookup(mp, db, None, timeout_s=0.0)
        log = self.node.get_logger()
        if T is None:
            if not self._alignment_warned:
                self._alignment_warned = True
                log.warning(f"no TF {mp} -> {db}: publishing in {db} (publish the alignment, e.g. a static "
                            "transform; python -m reloc_ros.tools.gravity estimates its tilt)")
            return np.eye(4), db
        if self._alignment_warned:
            self._alignment_warned = False
            log.info(f"TF {mp} -> {db} found: publishing in {mp}")
        return T, mp

    # -- publishing (the caller holds the node's output lock) ----------------------------------
    def publish(self, pose: Located, T_db_cam: np.ndarray, camera_frame: str, stamp) -> None:
        """Publish the pose, offer it to the /initialpose gate (``publish_initialpose``), and
        broadcast TF (``tf_mode``).

        Args:
            pose: from :meth:`locate`.
            T_db_cam: (4, 4) the camera's pose in the database's world (the gate compares
                its motion with the odometry's).
            camera_frame: the camera's TF frame.
            stamp: the image's stamp.
        """
        self.pub_pose.publish(pose.msg)
        self.last_msg = pose.msg
        if self.p["publish_initialpose"] and not self.withhold:
            self._offer_initialpose(pose.msg, T_db_cam, camera_frame, stamp)
        if self.tf_broadcaster is not None:
            self._publish_tf(pose.T_world_cam, camera_frame, stamp, pose.world)

    def _offer_initialpose(self, msg, T_db_cam: np.ndarray, camera_frame: str, stamp) -> None:
        T_odom_cam = self._lookup(self.p["odom_frame"], camera_frame, stamp)
        d = self.gate.offer(stamp.sec + 1e-9 * stamp.nanosec, T_db_cam, T_odom_cam)
        with self._lock:
            self.gate_reason = ("sent: " if d.send else "not sent: ") + d.reason
        if d.send:
            self.pub_initial.publish(msg)
            self.node.get_logger().info(f"/initialpose sent ({d.reason})")

    def _publish_tf(self, T_world_cam: np.ndarray, camera_frame: str, stamp, world: str) -> None:
        if self.p["tf_mode"] == "map_to_camera":
            self.tf_broadcaster.send(transform_stamped_msg(T_world_cam, stamp, world, camera_frame))
            return
        odom = self.p["odom_frame"]
        T_odom_cam = self._lookup(odom, camera_frame, stamp)
        if T_odom_cam is None:
            self._warn("tf", f"no TF {odom} -> {camera_frame} at the image stamp: {world} -> {odom} not published")
            return
        self.tf_broadcaster.send(transform_stamped_msg(T_world_cam @ invert(T_odom_cam), stamp, world, odom))

    def force_initialpose(self) -> tuple[bool, str]:
        """Send the last published pose on /initialpose now, without the odometry check (the
        caller holds the node's output lock): (sent, message)."""
        m = self.last_msg
        if m is None:
            return False, "no pose published yet: nothing to send"
        self.pub_initial.publish(m)
        with self._lock:
            self.gate_reason = "sent on request (~/publish_initialpose)"
            self.gate.sent += 1
        age = self.node.get_clock().now().nanoseconds * 1e-9 - (m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec)
        return True, (f"sent the last pose (stamp {m.header.stamp.sec}.{m.header.stamp.nanosec:09d}, "
                      f"{age:.1f} s old by this node's clock) on {self.p['initialpose_topic']}")

    def gate_state(self) -> tuple[str, int, str]:
        """(the gate's last decision, poses sent, its summary)."""
        with self._lock:
            return self.gate_reason, self.gate.sent, self.gate.summary()
