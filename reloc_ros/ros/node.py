"""The ROS 2 relocalization node: camera image in, absolute pose with covariance (and TF) out.

    ros2 run reloc_ros relocalization_node --ros-args --params-file config/relocalization.yaml \\
        -p model_path:=model.pt -p database_path:=db.pt -r image:=/camera/color/image_raw

Interfaces (REP-105 frames; names are parameters, topics are relative and remappable):

* subscribes ``image`` (``sensor_msgs/Image``, any common encoding) or
  ``image/compressed`` (``sensor_msgs/CompressedImage``, ``use_compressed``), with
  sensor-data QoS; optionally ``camera_info``;
* publishes ``~/pose`` (``geometry_msgs/PoseWithCovarianceStamped``, in ``map_frame``,
  stamped with the image's stamp), optionally the same on ``/initialpose`` (to seed AMCL or
  a SLAM system that lost tracking), ``/diagnostics``, and TF (``tf_mode``, default off so it
  never fights AMCL): ``map_to_odom`` (a global localizer that corrects odometry; it looks
  up odom→camera at the image stamp) or ``map_to_camera`` (when no odometry exists);
* service ``~/relocalize`` (``std_srvs/Trigger``): in ``on_demand`` mode the node localizes
  only after a trigger and answers with the result; in ``continuous`` mode it localizes
  every frame it can, at most ``max_rate_hz``, and a trigger waits for the next result.

Inference runs on a worker thread, never on the executor. Only the newest frame is kept:
older ones are dropped (and counted), so latency stays bounded when images come faster
than the model runs. A missing, corrupt or mismatched model or database stops the node at
startup with a message naming the file; malformed images are skipped with a throttled
warning; a pose that is not finite or whose consensus is weak is never published.
"""

from __future__ import annotations

import math
import resource
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from reloc_ros.core.database import DatabaseError
from reloc_ros.core.fusion import FUSION_METHODS, FusionConfig
from reloc_ros.core.geometry import invert
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError
from reloc_ros.ros.messages import BACKEND as IMAGE_BACKEND
from reloc_ros.ros.messages import (ImageConversionError, msg_to_rgb, pose_with_covariance_stamped_msg,
                                    transform_stamped_msg)
from reloc_ros.ros.tf import BACKEND as TF_BACKEND
from reloc_ros.ros.shutdown import stop_on_signals
from reloc_ros.ros.tf import TfBroadcaster, tf_backend

MODES = ("continuous", "on_demand")
TF_MODES = ("none", "map_to_odom", "map_to_camera")

#: name -> (default, description); types follow the defaults.
PARAMETERS = {
    "model_path": ("", "model file written by training (reloc_train); required"),
    "database_path": ("", "frame database built with that model (reloc_ros.core.database); required"),
    "device": ("auto", "inference device: auto (CUDA when available) | cpu | cuda | cuda:N"),
    "mode": ("continuous", "continuous: localize every frame it can; on_demand: only after ~/relocalize"),
    "max_rate_hz": (5.0, "continuous mode: at most this many localizations per second (0: no limit)"),
    "top_k": (5, "database frames retrieved per query (hypotheses to fuse)"),
    "scene": ("", "restrict retrieval to this scene of the database (empty: chosen by the top-1 match)"),
    "fusion.method": ("consensus", "hypothesis fusion: consensus | top1 | triangulate"),
    "fusion.inlier_t_m": (0.5, "consensus: translation inlier threshold (m)"),
    "fusion.inlier_r_deg": (15.0, "consensus: rotation inlier threshold (deg)"),
    "fusion.ray_inlier_deg": (10.0, "triangulate: ray inlier threshold (deg)"),
    "min_inliers": (2, "fewer agreeing hypotheses: no pose is published"),
    "min_confidence": (0.0, "lower fusion confidence: no pose is published"),
    "use_compressed": (False, "subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image"),
    "image_reliable": (False, "subscribe to images with reliable QoS instead of sensor-data (best effort)"),
    "use_camera_info": (False, "subscribe to camera_info and report it in diagnostics"),
    "map_frame": ("map", "frame of the published pose (REP-105 map)"),
    "odom_frame": ("odom", "odometry frame, for tf_mode map_to_odom"),
    "camera_frame": ("", "camera optical frame (empty: the image header's frame_id)"),
    "robot_frame": ("", "publish the pose of this frame (e.g. base_link) instead of the camera's, via TF"),
    "tf_mode": ("none", "TF to broadcast: none | map_to_odom | map_to_camera"),
    "tf_timeout_s": (0.1, "how long to wait for odom->camera (and camera->robot) at the image stamp"),
    "publish_initialpose": (False, "also publish the pose on initialpose_topic (seed AMCL / SLAM recovery)"),
    "initialpose_topic": ("/initialpose", "topic of the initial-pose output"),
    "trigger_timeout_s": (10.0, "~/relocalize waits this long for a frame to be localized"),
    "warmup_iterations": (3, "dummy queries at startup so the first real one is not slow"),
    "diagnostics_period_s": (1.0, "period of /diagnostics"),
    "warn_throttle_s": (5.0, "at most one warning of each kind per this many seconds"),
}


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, model or database). The message says why."""


#: The node's event counters (see :class:`Stats`).
COUNTERS = ("received", "processed", "dropped", "skipped", "malformed", "rejected", "published")


@dataclass
class Stats:
    """What the node has seen since startup: ``count[event]`` for each of :data:`COUNTERS`,
    and the last localization. A frame replaced by a newer one before the worker took it is
    *dropped* when the worker was busy with another frame (the input is faster than the
    node), and *skipped* when the worker was idle by design (rate limit, on-demand mode)."""

    count: Counter = field(default_factory=lambda: Counter(dict.fromkeys(COUNTERS, 0)))
    last_inliers: int = 0
    last_confidence: float = 0.0
    last_success_wall: float = 0.0
    last_reason: str = ""

    def copy(self) -> "Stats":
        return replace(self, count=Counter(self.count))


class RelocalizationNode(Node):
    """See the module docstring. All work beyond bookkeeping happens in :meth:`_worker`."""

    def __init__(self, **kwargs):
        super().__init__("relocalization_node", **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        self.p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._validate_parameters()
        self._load()  # raises StartupError: nothing is published before this succeeds

        self.stats = Stats()
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        self._latest = None  # (msg, receive wall time)
        self._busy = False  # the worker is processing a frame
        self._diag_last = Stats()  # counters at the previous /diagnostics message
        self._trigger_pending = 0
        self._waiters: list[tuple[Future, float]] = []  # trigger calls awaiting a result
        self._stop = False
        self._latencies = deque(maxlen=100)
        self._proc_times = deque(maxlen=100)
        self._stage_ms = deque(maxlen=100)  # localizer timings per frame
        self._last_warn: dict[str, float] = {}
        self._camera_info = None

        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.pub_initial = (self.create_publisher(PoseWithCovarianceStamped, self.p["initialpose_topic"], 10)
                            if self.p["publish_initialpose"] else None)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.tf_broadcaster = TfBroadcaster(self) if self.p["tf_mode"] != "none" else None
        self.tf_buffer = (tf_backend().buffer(self) if (self.p["tf_mode"] == "map_to_odom" or self.p["robot_frame"])
                          else None)
        qos = qos_profile_sensor_data
        if self.p["image_reliable"]:
            # A reader history of 10 lets the executor drain bursts; the node itself keeps only
            # the newest frame (and counts the others as dropped), so latency stays bounded.
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        if self.p["use_compressed"]:
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos)
        else:
            self.create_subscription(Image, "image", self._on_image, qos)
        if self.p["use_camera_info"]:
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self.create_service(Trigger, "~/relocalize", self._on_trigger)
        self.create_timer(self.p["diagnostics_period_s"], self._publish_diagnostics)
        self.create_timer(0.1, self._expire_waiters)
        # The worker wakes the executor through this when a trigger's result is ready.
        self._wake = self.create_guard_condition(lambda: None)
        self._worker_thread = threading.Thread(target=self._worker, name="relocalization", daemon=True)
        self._worker_thread.start()
        img_topic = self.resolve_topic_name("image/compressed" if self.p["use_compressed"] else "image")
        self.get_logger().info(
            f"ready: {self.p['mode']} mode, images from {img_topic}, pose on "
            f"{self.resolve_topic_name('~/pose')}, tf {self.p['tf_mode']}, device {self.localizer.device}, "
            f"{len(self.localizer.db)} database frames ({', '.join(self.localizer.db.scene_names)}), "
            f"top-{self.p['top_k']} {self.p['fusion.method']}; image backend {IMAGE_BACKEND}, tf backend {TF_BACKEND}")

    # -- startup ---------------------------------------------------------------------------
    def _validate_parameters(self) -> None:
        p, bad = self.p, []
        if not p["model_path"]:
            bad.append("model_path is required")
        if not p["database_path"]:
            bad.append("database_path is required")
        if p["device"] not in ("auto", "cpu") and p["device"] != "cuda" and not str(p["device"]).startswith("cuda:"):
            bad.append(f"device must be auto, cpu, cuda or cuda:N (got {p['device']!r})")
        if p["mode"] not in MODES:
            bad.append(f"mode must be one of {MODES} (got {p['mode']!r})")
        if p["tf_mode"] not in TF_MODES:
            bad.append(f"tf_mode must be one of {TF_MODES} (got {p['tf_mode']!r})")
        if p["fusion.method"] not in FUSION_METHODS:
            bad.append(f"fusion.method must be one of {', '.join(FUSION_METHODS)} (got {p['fusion.method']!r})")
        if p["top_k"] < 1:
            bad.append(f"top_k must be >= 1 (got {p['top_k']})")
        if p["min_inliers"] < 1 or p["min_inliers"] > p["top_k"]:
            bad.append(f"min_inliers must be in 1..top_k (got {p['min_inliers']}, top_k {p['top_k']})")
        for k in ("max_rate_hz", "tf_timeout_s", "min_confidence"):
            if not (p[k] >= 0 and math.isfinite(p[k])):
                bad.append(f"{k} must be a finite number >= 0 (got {p[k]})")
        if p["diagnostics_period_s"] <= 0:
            bad.append("diagnostics_period_s must be > 0")
        for k in ("map_frame", "odom_frame"):
            if not p[k] or p[k].startswith("/"):
                bad.append(f"{k} must be a non-empty frame id without a leading '/' (got {p[k]!r})")
        if bad:
            raise StartupError("invalid parameters: " + "; ".join(bad))

    def _load(self) -> None:
        p = self.p
        try:
            fusion = FusionConfig(method=p["fusion.method"], inlier_t_m=p["fusion.inlier_t_m"],
                                  inlier_r_deg=p["fusion.inlier_r_deg"], ray_inlier_deg=p["fusion.ray_inlier_deg"],
                                  min_inliers=p["min_inliers"])
            cfg = LocalizerConfig(top_k=p["top_k"], fusion=fusion, scene=p["scene"] or None)
            t0 = time.time()
            self.localizer = Localizer.from_files(p["model_path"], p["database_path"], cfg, p["device"])
            self.localizer.warmup(max(0, int(p["warmup_iterations"])))
        except (ModelFileError, DatabaseError, ValueError, RuntimeError) as e:
            raise StartupError(str(e)) from None
        if self.localizer.cfg.top_k < p["top_k"]:
            self.get_logger().warning(
                f"top_k {p['top_k']} is larger than the database ({len(self.localizer.db)} frames): "
                f"using top_k {self.localizer.cfg.top_k}")
        info = self.localizer.model_info
        self.get_logger().info(
            f"loaded model {p['model_path']} ({info.config.arch} {info.config.input_size[0]}x{info.config.input_size[1]}, "
            f"{info.meta.get('mtl_method', '?')}, fingerprint {info.fingerprint[:12]}) and database "
            f"{p['database_path']} in {time.time() - t0:.1f} s (warm-up included)")

    # -- callbacks (executor threads: bookkeeping only) -------------------------------------
    def _on_image(self, msg) -> None:
        with self._lock:
            self.stats.count["received"] += 1
            if self._latest is not None:
                if self._busy:
                    self.stats.count["dropped"] += 1
                else:
                    self.stats.count["skipped"] += 1
            self._latest = (msg, time.time())
            self._new_frame.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    async def _on_trigger(self, request, response):
        """Ask the worker for one localization and answer with its result.

        A coroutine: the executor keeps serving images while it waits (the node runs on a
        single-threaded executor, see :func:`main`)."""
        fut = Future()
        with self._lock:
            self._waiters.append((fut, time.time() + float(self.p["trigger_timeout_s"])))
            self._trigger_pending += 1
            self._new_frame.notify()
        result = await fut
        if result is None:
            response.success = False
            response.message = (f"no frame localized within {self.p['trigger_timeout_s']:.1f} s "
                                "(is the camera publishing?)")
        else:
            response.success = bool(result["ok"])
            response.message = result["message"]
        return response

    def _expire_waiters(self) -> None:
        now = time.time()
        with self._lock:
            expired = [f for f, deadline in self._waiters if deadline <= now]
            self._waiters = [(f, d) for f, d in self._waiters if d > now]
            self._trigger_pending = max(0, self._trigger_pending - len(expired))
        for f in expired:
            f.set_result(None)

    # -- the worker ------------------------------------------------------------------------
    def _worker(self) -> None:
        period = 1.0 / self.p["max_rate_hz"] if self.p["max_rate_hz"] > 0 else 0.0
        on_demand = self.p["mode"] == "on_demand"
        next_time = 0.0
        while True:
            with self._lock:
                self._new_frame.wait_for(
                    lambda: self._stop or (self._latest is not None and (not on_demand or self._trigger_pending > 0)))
                if self._stop:
                    return
                wait = next_time - time.time()
            if wait > 0 and not on_demand:
                time.sleep(wait)  # rate limit; frames keep arriving (and replacing) meanwhile
            with self._lock:
                if self._stop:
                    return
                msg, received = self._latest
                self._latest = None
                triggered = self._trigger_pending > 0 or bool(self._waiters)
                self._trigger_pending = 0  # one localization answers every waiting trigger
                self._busy = True
            next_time = time.time() + period
            try:
                result = self._process(msg, received)
            except Exception as e:  # never let one frame kill the worker
                self._warn("process", f"frame skipped: {type(e).__name__}: {e}")
                result = {"ok": False, "message": f"error: {e}"}
            with self._lock:
                self._busy = False
                waiters = [f for f, _ in self._waiters] if triggered else []
                if triggered:
                    self._waiters = []
            for f in waiters:
                f.set_result(result)
            if waiters:
                self._wake.trigger()

    def _process(self, msg, received: float) -> dict:
        t0 = time.time()
        try:
            rgb = msg_to_rgb(msg)
        except ImageConversionError as e:
            with self._lock:
                self.stats.count["malformed"] += 1
            self._warn("malformed", f"malformed image skipped ({e}); {self.stats.count['malformed']} so far")
            return {"ok": False, "message": f"malformed image: {e}"}
        stamp = msg.header.stamp
        res = self.localizer.localize(rgb)
        with self._lock:
            self._stage_ms.append(res.timings_ms)
            self.stats.count["processed"] += 1
            self.stats.last_inliers = res.n_inliers
            self.stats.last_confidence = res.confidence
        pose = res.pose
        if not res.ok or pose is None or not np.all(np.isfinite(pose)) or not np.all(np.isfinite(res.covariance)):
            reason = res.reason or "non-finite pose"
            return self._reject(f"no pose: {reason}")
        if res.confidence < self.p["min_confidence"]:
            return self._reject(f"no pose: confidence {res.confidence:.2f} < {self.p['min_confidence']:.2f}")
        camera_frame = self.p["camera_frame"] or msg.header.frame_id
        T_out, cov_out, out_frame = pose, res.covariance, camera_frame
        if self.p["robot_frame"]:
            T_cam_robot = self._lookup(camera_frame, self.p["robot_frame"], stamp)
            if T_cam_robot is None:
                return self._reject(f"no pose: no TF {camera_frame} -> {self.p['robot_frame']} at the image stamp")
            T_out, cov_out = compose_with_covariance(pose, res.covariance, T_cam_robot)
            out_frame = self.p["robot_frame"]
        self._publish_pose(T_out, cov_out, stamp)
        if self.tf_broadcaster is not None:
            self._publish_tf(pose, camera_frame, stamp)
        dt = time.time() - t0
        with self._lock:
            self.stats.count["published"] += 1
            self.stats.last_success_wall = time.time()
            self._proc_times.append(dt)
            self._latencies.append(time.time() - received)
        t = T_out[:3, 3]
        return {"ok": True, "message": (
            f"localized {out_frame} in {self.p['map_frame']} at ({t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}) m, "
            f"{res.n_inliers}/{len(res.hypotheses.db_index)} inliers, confidence {res.confidence:.2f}, "
            f"scene {res.scene}, {res.timings_ms['total']:.0f} ms")}

    def _reject(self, message: str) -> dict:
        with self._lock:
            self.stats.count["rejected"] += 1
            self.stats.last_reason = message
        self._warn("rejected", message)
        return {"ok": False, "message": message}

    def _lookup(self, target: str, source: str, stamp):
        if self.tf_buffer is None or not source or not target:
            return None
        return self.tf_buffer.lookup(target, source, stamp, timeout_s=self.p["tf_timeout_s"])

    def _publish_pose(self, T: np.ndarray, cov: np.ndarray, stamp) -> None:
        m = pose_with_covariance_stamped_msg(T, cov, stamp, self.p["map_frame"])
        self.pub_pose.publish(m)
        if self.pub_initial is not None:
            self.pub_initial.publish(m)

    def _publish_tf(self, T_map_cam: np.ndarray, camera_frame: str, stamp) -> None:
        if self.p["tf_mode"] == "map_to_camera":
            self.tf_broadcaster.send(transform_stamped_msg(T_map_cam, stamp, self.p["map_frame"], camera_frame))
            return
        T_odom_cam = self._lookup(self.p["odom_frame"], camera_frame, stamp)
        if T_odom_cam is None:
            self._warn("tf", f"no TF {self.p['odom_frame']} -> {camera_frame} at the image stamp: "
                             f"map -> {self.p['odom_frame']} not published")
            return
        T_map_odom = T_map_cam @ invert(T_odom_cam)
        self.tf_broadcaster.send(transform_stamped_msg(T_map_odom, stamp, self.p["map_frame"], self.p["odom_frame"]))

    def _warn(self, kind: str, message: str) -> None:
        now = time.time()
        if now - self._last_warn.get(kind, 0.0) >= self.p["warn_throttle_s"]:
            self._last_warn[kind] = now
            self.get_logger().warning(message)

    # -- diagnostics -----------------------------------------------------------------------
    def diagnostics(self) -> dict:
        with self._lock:
            s = self.stats.copy()
            lat = list(self._latencies)
            proc = list(self._proc_times)
            stages = list(self._stage_ms)
        since = time.time() - s.last_success_wall if s.last_success_wall else float("inf")
        return {
            "frames received": s.count["received"], "frames processed": s.count["processed"],
            "frames dropped": s.count["dropped"], "frames skipped (rate limit / on demand)": s.count["skipped"],
            "frames malformed": s.count["malformed"], "poses rejected": s.count["rejected"],
            "poses published": s.count["published"],
            "latency ms (median of last 100)": round(1e3 * float(np.median(lat)), 1) if lat else float("nan"),
            "latency ms (max of last 100)": round(1e3 * float(np.max(lat)), 1) if lat else float("nan"),
            "processing rate hz": round(1.0 / float(np.mean(proc)), 2) if proc else 0.0,
            "model ms (median: encode + heads)": round(float(np.median(
                [t["encode"] + t["heads"] for t in stages])), 2) if stages else float("nan"),
            "localize ms (median)": round(float(np.median([t["total"] for t in stages])), 2) if stages else float("nan"),
            "last inliers": s.last_inliers, "last confidence": round(s.last_confidence, 3),
            "seconds since last success": round(since, 1) if math.isfinite(since) else "never",
            "last rejection": s.last_reason, "device": str(self.localizer.device), "mode": self.p["mode"],
            "max rss mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "camera info": "none" if self._camera_info is None else
            f"{self._camera_info.width}x{self._camera_info.height} fx {self._camera_info.k[0]:.1f}",
        }

    def diagnostic_level(self, now: Stats, before: Stats) -> tuple[int, str]:
        """(DiagnosticStatus level, message) from the counters now and at the last report.

        WARN while input is malformed or dropped (in the last period, with the counts), when
        no image came yet, and while no pose has been published; OK otherwise.
        """
        problems = []
        new = now.count - before.count  # what happened since the last report
        if now.count["received"] == 0:
            problems.append("no image received")
        if new["malformed"]:
            problems.append(f"{new['malformed']} malformed frame(s) skipped ({now.count['malformed']} in all)")
        if new["dropped"]:
            problems.append(f"{new['dropped']} frame(s) dropped: input faster than processing "
                            f"({now.count['dropped']} in all)")
        if now.count["published"] == 0 and now.count["processed"] > 0:
            problems.append("no pose published yet" + (f" (last: {now.last_reason})" if now.last_reason else ""))
        if problems:
            return DiagnosticStatus.WARN, "; ".join(problems)
        return DiagnosticStatus.OK, "localizing"

    def _publish_diagnostics(self) -> None:
        d = self.diagnostics()
        with self._lock:
            now = self.stats.copy()
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: relocalization"
        st.hardware_id = str(self.localizer.device)
        st.level, st.message = self.diagnostic_level(now, self._diag_last)
        self._diag_last = now
        st.values = [KeyValue(key=k, value=str(v)) for k, v in d.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self.pub_diag.publish(arr)

    def shutdown(self) -> None:
        with self._lock:
            self._stop = True
            self._new_frame.notify_all()
        self._worker_thread.join(timeout=10.0)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def compose_with_covariance(T_map_cam: np.ndarray, cov_cam: np.ndarray, T_cam_robot: np.ndarray):
    """Pose of a frame rigidly attached to the camera, and its covariance.

    With the covariance convention of the fusion (position perturbation δp and a small
    rotation δθ about the fixed map axes), the robot's position p_r = p_c + R_c t moves by
    δp − [R_c t]× δθ and its orientation by the same δθ: Σ_r = J Σ_c Jᵀ, J = [[I, −[R_c t]×], [0, I]].
    """
    T = T_map_cam @ T_cam_robot
    J = np.eye(6)
    J[:3, 3:] = -_skew(T_map_cam[:3, :3] @ T_cam_robot[:3, 3])
    return T, J @ cov_cam @ J.T


def main(args=None) -> int:
    """Run the node. SIGINT/SIGTERM stop it cleanly: the worker finishes its frame, then the
    node and the context are shut down in that order (no traceback, no half-published pose).

    The node runs on a SingleThreadedExecutor: its callbacks only do bookkeeping, and a
    multi-threaded executor was measured to starve the inference thread (GIL contention at
    100 Hz input: 1-4 localizations/s instead of about 45 on 2 cores)."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    with stop_on_signals() as stop:
        return _spin(stop)


def _spin(stop: threading.Event) -> int:
    node = None
    code = 0
    try:
        node = RelocalizationNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        executor.remove_node(node)
        executor.shutdown()
    except StartupError as e:
        rclpy.logging.get_logger("relocalization_node").fatal(f"cannot start: {e}")
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.get_logger().info("shut down")
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
