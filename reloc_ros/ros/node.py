"""The ROS 2 relocalization node: camera image in, absolute pose with covariance (and TF) out.

    ros2 run reloc_ros relocalization_node --ros-args --params-file config/relocalization.yaml \\
        -p model_path:=model.pt -p database_path:=db.pt -r image:=/camera/color/image_raw

Interfaces (REP-105 frames; names are parameters, topics are relative and remappable):

* subscribes ``image`` (``sensor_msgs/Image``, any common encoding) or
  ``image/compressed`` (``sensor_msgs/CompressedImage``, ``use_compressed``), with
  sensor-data QoS; optionally ``camera_info``;
* publishes ``~/pose`` (``geometry_msgs/PoseWithCovarianceStamped``, stamped with the
  image's stamp) in ``map_frame`` when TF has ``map_frame -> database_frame`` (the user's
  alignment of the visual map, e.g. a static transform; see ``python -m
  reloc_ros.tools.gravity``), otherwise in ``database_frame`` (default ``reloc_map``);
  ``/diagnostics``; TF (``tf_mode``, default off so it never fights AMCL): ``map_to_odom``
  (a global localizer that corrects odometry; it looks up odom→camera at the image stamp)
  or ``map_to_camera`` (when no odometry exists);
* optionally ``/initialpose`` (``publish_initialpose``; to seed AMCL or a SLAM system that
  lost tracking), only when ``initialpose.n_consecutive`` consecutive poses agree with the
  odometry (TF ``odom -> camera`` at the image stamps) between them
  (:mod:`reloc_ros.core.initialpose`); diagnostics say why a pose was not sent;
* service ``~/relocalize`` (``std_srvs/Trigger``): in ``on_demand`` mode the node localizes
  only after a trigger and answers with the result; in ``continuous`` mode it localizes
  every frame it can, at most ``max_rate_hz``, and a trigger waits for the next result;
* service ``~/publish_initialpose`` (``std_srvs/Trigger``): send the last published pose
  on ``/initialpose`` once, without the odometry check (an operator's decision).

The published covariance and confidence come from ``calibration_path``
(:mod:`reloc_ros.core.calibration`, fitted on held-out training sequences); without one
they are the hypotheses' spread and inlier score, which a consistently wrong retrieval
does not move, and the node says so at startup. The publish decision (the confidence
threshold) is the localizer's, so the node and ``reloc_ros.eval.evaluate`` agree.

Inference runs on a worker thread, never on the executor. Only the newest frame is kept:
older ones are dropped (and counted), so latency stays bounded when images come faster
than the model runs. A missing, corrupt or mismatched model or database stops the node at
startup with a message naming the file; malformed images are skipped with a throttled
warning; a pose that is not finite or whose consensus is weak is never published.
"""

from __future__ import annotations


def limit_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's malloc arenas (``M_ARENA_MAX``) unless ``MALLOC_ARENA_MAX`` is set.

    By default every thread that allocates (DDS, the worker, OpenMP) may get its own arena,
    up to 8 per core, and memory freed in them stays fragmented: measured with the lifecycle
    benchmark (ResNet-34), the RSS after cleanup was 43-60 MB above the RSS before configure
    and grew over cycles; with 2 arenas, 27 MB and flat, at the same latency. It must run
    before the threads exist: this module calls it first when run with ``python -m``, the
    launch file sets ``MALLOC_ARENA_MAX``, and :func:`main` calls it for the other cases."""
    import ctypes
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, int(n))  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc


if __name__ == "__main__":
    limit_malloc_arenas()

import math  # noqa: E402  (after the arena cap, which must come before any thread exists)
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
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from reloc_ros.core.calibration import CalibrationError
from reloc_ros.core.database import DatabaseError
from reloc_ros.core.fusion import FUSION_METHODS, FusionConfig
from reloc_ros.core.geometry import invert, skew
from reloc_ros.core.initialpose import GateConfig, InitialPoseGate
from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.localizer import REFINERS, Localizer, LocalizerConfig
from reloc_ros.core.model import ModelFileError
from reloc_ros.core.model._torchvision import import_torchvision
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
    "calibration_path": ("", "covariance and confidence calibration fitted for this database "
                              "(python -m reloc_ros.eval.calibrate); empty: NOT calibrated (hypothesis spread)"),
    "min_confidence": (-1.0, "publish only poses with at least this confidence; -1: the calibration's "
                             "threshold (0 without a calibration)"),
    "refiner": ("none", "refinement after fusion: none | pnp (SIFT + PnP-RANSAC against the database depth; "
                        "database built with --keypoints) | lm (feature-metric Levenberg-Marquardt; database "
                        "built with --dense) | dro (the learned recurrent optimizer; --dense and dro_path); all "
                        "need the camera's intrinsics"),
    "dro_path": ("", "DRO file for refiner dro (python -m reloc_train.dro), trained on model_path's features"),
    "refine_iterations": (-1, "iterations of the refiner: lm per pyramid level, dro per stage; -1: the "
                              "database's (lm) or the DRO file's (dro) default"),
    "camera_intrinsics": ([0.0] * 6, "fx, fy, cx, cy, width, height of the camera, for the refiner (fx 0: "
                                     "unset; camera_info, with use_camera_info, takes precedence)"),
    "use_compressed": (False, "subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image"),
    "image_reliable": (False, "subscribe to images with reliable QoS instead of sensor-data (best effort)"),
    "use_camera_info": (False, "subscribe to camera_info: the refiner's intrinsics, and diagnostics"),
    "map_frame": ("map", "REP-105 map frame: poses are published in it when TF map_frame -> database_frame exists"),
    "database_frame": ("reloc_map", "TF frame of the database's world (the visual map); poses are published in "
                                    "it while TF has no map_frame -> database_frame (equal to map_frame: no TF needed)"),
    "odom_frame": ("odom", "odometry frame, for tf_mode map_to_odom"),
    "camera_frame": ("", "camera optical frame (empty: the image header's frame_id)"),
    "robot_frame": ("", "publish the pose of this frame (e.g. base_link) instead of the camera's, via TF"),
    "tf_mode": ("none", "TF to broadcast: none | map_to_odom | map_to_camera"),
    "tf_timeout_s": (0.1, "how long to wait for odom->camera (and camera->robot) at the image stamp"),
    "publish_initialpose": (False, "also publish on initialpose_topic (seed AMCL / SLAM recovery) when "
                                   "initialpose.n_consecutive poses agree with the odometry"),
    "initialpose_topic": ("/initialpose", "topic of the initial-pose output"),
    "initialpose.n_consecutive": (3, "consecutive poses that must agree with the odometry (TF odom -> camera)"),
    "initialpose.max_t_m": (0.15, "allowed difference (m) between relocalized and odometry motion ..."),
    "initialpose.drift_per_m": (0.05, "... plus this much per metre travelled"),
    "initialpose.max_r_deg": (5.0, "allowed rotation difference (deg) between relocalized and odometry motion"),
    "initialpose.max_gap_s": (5.0, "poses further apart (image stamps) do not form a window"),
    "initialpose.min_interval_s": (10.0, "no second /initialpose within this time (image stamps)"),
    "trigger_timeout_s": (10.0, "~/relocalize waits this long for a frame to be localized"),
    "warmup_iterations": (3, "dummy queries at startup so the first real one is not slow"),
    "diagnostics_period_s": (1.0, "period of /diagnostics"),
    "warn_throttle_s": (5.0, "at most one warning of each kind per this many seconds"),
}


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, model or database). The message says why."""


#: The node's event counters (see :class:`Stats`).
COUNTERS = ("received", "processed", "dropped", "skipped", "malformed", "rejected", "published", "discarded")


@dataclass
class Stats:
    """What the node has seen since startup: ``count[event]`` for each of :data:`COUNTERS`,
    and the last localization. A frame replaced by a newer one before the worker took it is
    *dropped* when the worker was busy with another frame (the input is faster than the
    node), and *skipped* when the worker was idle by design (rate limit, on-demand mode). A
    pose is *discarded* when the node was deactivated while its frame was being localized."""

    count: Counter = field(default_factory=lambda: Counter(dict.fromkeys(COUNTERS, 0)))
    last_inliers: int = 0
    last_confidence: float = 0.0
    last_success_wall: float = 0.0
    last_reason: str = ""
    last_refinement: dict | None = None

    def copy(self) -> "Stats":
        return replace(self, count=Counter(self.count))


class _Relocalization:
    """What both nodes do (see the module docstring), in the steps of a managed node's
    lifecycle: :meth:`_setup` at construction (parameters, services, diagnostics),
    :meth:`_configure` (check the parameters, load the files, create the publishers),
    :meth:`_activate` (subscribe, start the worker), :meth:`_deactivate` and
    :meth:`_cleanup`. :class:`RelocalizationNode` runs the first three in its constructor;
    :class:`ManagedRelocalizationNode` runs each in its transition. All work beyond
    bookkeeping happens in :meth:`_worker`."""

    def _setup(self) -> None:
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        self.p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.localizer = None
        self.stats = Stats()
        self._lock = threading.Lock()
        self._new_frame = threading.Condition(self._lock)
        # Held while deciding to publish and publishing; deactivation takes it to close the
        # outputs, so no pose goes out once it has returned.
        self._out_lock = threading.Lock()
        self._active = False
        self._epoch = 0  # incremented at each deactivation: a frame of an older epoch is dropped
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
        self._last_msg = None  # the last published pose message (for ~/publish_initialpose)
        self._alignment_warned = False
        self._subs: list = []
        self._worker_thread = None
        self.pub_pose = self.pub_initial = self.tf_broadcaster = self.tf_buffer = None
        self.gate = InitialPoseGate()
        self._gate_reason = "not configured"
        self._config_error = ""
        # Diagnostics and the services exist in every state: a plain publisher reports the
        # lifecycle state (unconfigured included), and the services answer "inactive".
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # The trigger is a coroutine that awaits the worker. In the default (mutually
        # exclusive) group it would hold the group while it waits, and no image callback (and
        # no expiry) could run: a trigger in continuous mode would never be answered.
        triggers = ReentrantCallbackGroup()
        self.create_service(Trigger, "~/relocalize", self._on_trigger, callback_group=triggers)
        self.create_service(Trigger, "~/publish_initialpose", self._on_force_initialpose, callback_group=triggers)
        self._diag_timer = self.create_timer(float(self.p["diagnostics_period_s"]) if
                                             self.p["diagnostics_period_s"] > 0 else 1.0, self._publish_diagnostics)
        self.create_timer(0.1, self._expire_waiters, callback_group=triggers)
        # The worker wakes the executor through this when a trigger's result is ready.
        self._wake = self.create_guard_condition(lambda: None)

    def lifecycle_state(self) -> str:
        return "active"

    def _configure(self, make_publisher) -> None:
        """Read and check the parameters, load and cross-check the files, warm up, and create
        the publishers with ``make_publisher(type, topic, depth)``.

        Raises:
            StartupError: a bad parameter or file (the message names it); nothing is kept.
        """
        self.p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._validate_parameters()
        self._load()  # raises StartupError: nothing is published before this succeeds
        self.pub_pose = make_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.pub_initial = make_publisher(PoseWithCovarianceStamped, self.p["initialpose_topic"], 10)
        self.gate = InitialPoseGate(self._gate_config)
        self._gate_reason = "disabled (publish_initialpose false)" if not self.p["publish_initialpose"] else "no pose yet"
        self.tf_broadcaster = TfBroadcaster(self) if self.p["tf_mode"] != "none" else None
        need_tf = (self.p["tf_mode"] == "map_to_odom" or self.p["robot_frame"] or self.p["publish_initialpose"]
                   or self.p["database_frame"] != self.p["map_frame"])
        self.tf_buffer = tf_backend().buffer(self) if need_tf else None
        self._diag_timer.timer_period_ns = int(float(self.p["diagnostics_period_s"]) * 1e9)
        self._config_error = ""

    def _activate(self) -> None:
        """Subscribe to the camera and start the worker; poses go out from here on."""
        qos = qos_profile_sensor_data
        if self.p["image_reliable"]:
            # A reader history of 10 lets the executor drain bursts; the node itself keeps only
            # the newest frame (and counts the others as dropped), so latency stays bounded.
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        with self._lock:
            self._latest = None
            self._stop = False
        self._worker_thread = threading.Thread(target=self._worker, name="relocalization", daemon=True)
        self._worker_thread.start()
        with self._out_lock:
            self._active = True
        if self.p["use_compressed"]:
            self._subs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos))
        else:
            self._subs.append(self.create_subscription(Image, "image", self._on_image, qos))
        if self.p["use_camera_info"]:
            self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos))
        img_topic = self.resolve_topic_name("image/compressed" if self.p["use_compressed"] else "image")
        self.get_logger().info(
            f"ready: {self.p['mode']} mode, images from {img_topic}, pose on "
            f"{self.resolve_topic_name('~/pose')}, tf {self.p['tf_mode']}, device {self.localizer.device}, "
            f"{len(self.localizer.db)} database frames ({', '.join(self.localizer.db.scene_names)}), "
            f"top-{self.p['top_k']} {self.p['fusion.method']}; image backend {IMAGE_BACKEND}, tf backend {TF_BACKEND}")

    def _deactivate(self) -> None:
        """Stop taking frames. The frame in flight finishes but is not published; the
        newest-frame slot is cleared; waiting triggers are answered 'inactive'."""
        with self._out_lock:
            self._active = False
            self._epoch += 1
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._stop_worker()
        with self._lock:
            self._latest = None
            waiters = [f for f, _ in self._waiters]
            self._waiters, self._trigger_pending = [], 0
        for f in waiters:
            f.set_result({"ok": False, "message": "inactive: the node was deactivated"})
        if waiters:
            self._wake.trigger()

    def _stop_worker(self) -> None:
        with self._lock:
            self._stop = True
            self._new_frame.notify_all()
        if self._worker_thread is not None:
            self._worker_thread.join(timeout=10.0)
            self._worker_thread = None

    def _cleanup(self) -> None:
        """Free the model and the database, and remove the publishers."""
        for pub in (self.pub_pose, self.pub_initial):
            if pub is not None:
                self._destroy_publisher(pub)
        self.pub_pose = self.pub_initial = None
        if self.tf_broadcaster is not None:
            self.tf_broadcaster.destroy()
        if self.tf_buffer is not None:
            self.tf_buffer.destroy()
        self.tf_broadcaster = self.tf_buffer = None
        self._last_msg = None
        self._camera_info = None
        if self.localizer is not None:
            self.localizer = None
            release_memory()

    def _destroy_publisher(self, pub) -> None:
        self.destroy_publisher(pub)

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
        for k in ("max_rate_hz", "tf_timeout_s"):
            if not (p[k] >= 0 and math.isfinite(p[k])):
                bad.append(f"{k} must be a finite number >= 0 (got {p[k]})")
        if not (p["min_confidence"] == -1 or 0 <= p["min_confidence"] <= 1):
            bad.append(f"min_confidence must be -1 (the calibration's threshold) or in [0, 1] (got {p['min_confidence']})")
        if p["diagnostics_period_s"] <= 0:
            bad.append("diagnostics_period_s must be > 0")
        if p["refiner"] not in REFINERS:
            bad.append(f"refiner must be one of {', '.join(REFINERS)} (got {p['refiner']!r})")
        if p["refiner"] == "dro" and not p["dro_path"]:
            bad.append("refiner dro needs dro_path (a DRO file: python -m reloc_train.dro)")
        if p["refine_iterations"] < -1:
            bad.append(f"refine_iterations must be -1 (the default) or >= 0 (got {p['refine_iterations']})")
        ci = list(p["camera_intrinsics"])
        if len(ci) != 6 or not all(math.isfinite(v) for v in ci) or \
                (ci[0] > 0 and not (ci[1] > 0 and ci[4] >= 1 and ci[5] >= 1)):
            bad.append(f"camera_intrinsics must be [fx, fy, cx, cy, width, height] with positive fx, fy and size, "
                       f"or fx 0 for unset (got {ci})")
        try:
            self._gate_config = GateConfig(**{k.split(".", 1)[1]: p[k] for k in p if k.startswith("initialpose.")})
        except (ValueError, TypeError) as e:
            bad.append(f"initialpose: {e}")
        for k in ("map_frame", "odom_frame", "database_frame"):
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
            cfg = LocalizerConfig(top_k=p["top_k"], fusion=fusion, scene=p["scene"] or None,
                                  min_confidence=None if p["min_confidence"] == -1 else p["min_confidence"],
                                  refiner=p["refiner"],
                                  refine_iterations=None if p["refine_iterations"] == -1 else p["refine_iterations"])
            t0 = time.time()
            self.localizer = Localizer.from_files(p["model_path"], p["database_path"], cfg, p["device"],
                                                  p["calibration_path"] or None,
                                                  dro_path=(p["dro_path"] or None) if p["refiner"] == "dro" else None)
            self.localizer.warmup(max(0, int(p["warmup_iterations"])))
        except (ModelFileError, DatabaseError, CalibrationError, ValueError, RuntimeError) as e:
            raise StartupError(str(e)) from None
        cal = self.localizer.cfg.calibration
        if cal is None:
            self.get_logger().warning(
                "no calibration_path: the covariance is the hypotheses' spread and the confidence their inlier "
                "score; neither sees a consistently wrong retrieval (fit one with python -m reloc_ros.eval.calibrate)")
        else:
            self.get_logger().info(
                f"calibration {p['calibration_path']}: publish threshold {self.localizer.cfg.threshold:.3f} "
                f"(P(within {cal.target_t_m:.2f} m, {cal.target_r_deg:.0f}°)), fitted on "
                f"{cal.info.get('queries', '?')} held-out frames of {', '.join(cal.info.get('scenes', []))}")
        if p["refiner"] != "none":
            if p["camera_intrinsics"][0] <= 0 and not p["use_camera_info"]:
                self.get_logger().warning(
                    f"refiner {p['refiner']}: no camera intrinsics (set camera_intrinsics, or use_camera_info): "
                    "no pose is published until intrinsics arrive")
            else:
                self.get_logger().info(f"refiner {p['refiner']} at {self.localizer.refine_image_size}, intrinsics from "
                                       + ("camera_info" if p["use_camera_info"] else "camera_intrinsics"))
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
            if not self._active:
                return  # delivered by the executor after deactivation: never processed
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

    def _refine_K(self) -> np.ndarray | None:
        """The camera's 3x3 intrinsics at the refiner's image size: from camera_info when one
        arrived, else the camera_intrinsics parameter; None without either (or no refiner)."""
        size = self.localizer.refine_image_size
        if size is None:
            return None
        ci, p = self._camera_info, self.p["camera_intrinsics"]
        if ci is not None and ci.k[0] > 0 and ci.width > 0 and ci.height > 0:
            intr = Intrinsics(fx=ci.k[0], fy=ci.k[4], cx=ci.k[2], cy=ci.k[5], width=ci.width, height=ci.height)
        elif p[0] > 0:
            intr = Intrinsics(fx=p[0], fy=p[1], cx=p[2], cy=p[3], width=int(p[4]), height=int(p[5]))
        else:
            return None
        return intr.scaled(*size).K

    async def _on_trigger(self, request, response):
        """Ask the worker for one localization and answer with its result.

        A coroutine: the executor keeps serving images while it waits (the node runs on a
        single-threaded executor, see :func:`main`)."""
        if not self._active:
            response.success = False
            response.message = f"inactive (lifecycle state {self.lifecycle_state()}): activate the node first"
            return response
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
                epoch = self._epoch
                triggered = self._trigger_pending > 0 or bool(self._waiters)
                self._trigger_pending = 0  # one localization answers every waiting trigger
                self._busy = True
            next_time = time.time() + period
            try:
                result = self._process(msg, received, epoch)
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

    def _process(self, msg, received: float, epoch: int = 0) -> dict:
        t0 = time.time()
        try:
            rgb = msg_to_rgb(msg)
        except ImageConversionError as e:
            with self._lock:
                self.stats.count["malformed"] += 1
            self._warn("malformed", f"malformed image skipped ({e}); {self.stats.count['malformed']} so far")
            return {"ok": False, "message": f"malformed image: {e}"}
        stamp = msg.header.stamp
        res = self.localizer.localize(rgb, self._refine_K())
        with self._lock:
            self._stage_ms.append(res.timings_ms)
            self.stats.count["processed"] += 1
            self.stats.last_inliers = res.n_inliers
            self.stats.last_confidence = res.confidence
            self.stats.last_refinement = res.refinement
        pose = res.pose
        if not res.ok or pose is None or not np.all(np.isfinite(pose)) or not np.all(np.isfinite(res.covariance)):
            reason = res.reason or "non-finite pose"
            return self._reject(f"no pose: {reason}")
        camera_frame = self.p["camera_frame"] or msg.header.frame_id
        T_world, world = self._alignment(stamp)
        cam_world, cov_world = align_with_covariance(T_world, pose, res.covariance)
        T_out, cov_out, out_frame = cam_world, cov_world, camera_frame
        if self.p["robot_frame"]:
            T_cam_robot = self._lookup(camera_frame, self.p["robot_frame"], stamp)
            if T_cam_robot is None:
                return self._reject(f"no pose: no TF {camera_frame} -> {self.p['robot_frame']} at the image stamp")
            T_out, cov_out = compose_with_covariance(cam_world, cov_world, T_cam_robot)
            out_frame = self.p["robot_frame"]
        m = pose_with_covariance_stamped_msg(T_out, cov_out, stamp, world)
        with self._out_lock:
            if not self._active or epoch != self._epoch:
                with self._lock:
                    self.stats.count["discarded"] += 1
                return {"ok": False, "message": "inactive: the node was deactivated while localizing this frame"}
            self.pub_pose.publish(m)
            self._last_msg = m
            if self.p["publish_initialpose"]:
                self._offer_initialpose(m, pose, camera_frame, stamp)
            if self.tf_broadcaster is not None:
                self._publish_tf(cam_world, camera_frame, stamp, world)
        dt = time.time() - t0
        with self._lock:
            self.stats.count["published"] += 1
            self.stats.last_success_wall = time.time()
            self._proc_times.append(dt)
            self._latencies.append(time.time() - received)
        t = T_out[:3, 3]
        return {"ok": True, "message": (
            f"localized {out_frame} in {world} at ({t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}) m, "
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

    def _alignment(self, stamp) -> tuple[np.ndarray, str]:
        """(T_world_db, world frame): the database world in ``map_frame`` when TF has it
        (the user's alignment), else the identity in ``database_frame``."""
        db, mp = self.p["database_frame"], self.p["map_frame"]
        if db == mp:
            return np.eye(4), mp
        # The alignment is static: the latest value, without waiting (a missing alignment must
        # not cost every frame the TF timeout).
        T = None if self.tf_buffer is None else self.tf_buffer.lookup(mp, db, None, timeout_s=0.0)
        if T is None:
            if not self._alignment_warned:
                self._alignment_warned = True
                self.get_logger().warning(f"no TF {mp} -> {db}: publishing in {db} (publish the alignment, e.g. a "
                                          f"static transform; python -m reloc_ros.tools.gravity estimates its tilt)")
            return np.eye(4), db
        if self._alignment_warned:
            self._alignment_warned = False
            self.get_logger().info(f"TF {mp} -> {db} found: publishing in {mp}")
        return T, mp

    def _offer_initialpose(self, m, T_db_cam: np.ndarray, camera_frame: str, stamp) -> None:
        T_odom_cam = self._lookup(self.p["odom_frame"], camera_frame, stamp)
        d = self.gate.offer(stamp.sec + 1e-9 * stamp.nanosec, T_db_cam, T_odom_cam)
        with self._lock:
            self._gate_reason = ("sent: " if d.send else "not sent: ") + d.reason
        if d.send:
            self.pub_initial.publish(m)
            self.get_logger().info(f"/initialpose sent ({d.reason})")

    def _on_force_initialpose(self, request, response):
        m = self._last_msg
        if not self._active:
            response.success = False
            response.message = f"inactive (lifecycle state {self.lifecycle_state()}): activate the node first"
            return response
        if m is None:
            response.success, response.message = False, "no pose published yet: nothing to send"
            return response
        with self._out_lock:
            self.pub_initial.publish(m)
        with self._lock:
            self._gate_reason = "sent on request (~/publish_initialpose)"
            self.gate.sent += 1
        age = self.get_clock().now().nanoseconds * 1e-9 - (m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec)
        response.success = True
        response.message = (f"sent the last pose (stamp {m.header.stamp.sec}.{m.header.stamp.nanosec:09d}, "
                            f"{age:.1f} s old by this node's clock) on {self.p['initialpose_topic']}")
        return response

    def _publish_tf(self, T_world_cam: np.ndarray, camera_frame: str, stamp, world: str) -> None:
        if self.p["tf_mode"] == "map_to_camera":
            self.tf_broadcaster.send(transform_stamped_msg(T_world_cam, stamp, world, camera_frame))
            return
        T_odom_cam = self._lookup(self.p["odom_frame"], camera_frame, stamp)
        if T_odom_cam is None:
            self._warn("tf", f"no TF {self.p['odom_frame']} -> {camera_frame} at the image stamp: "
                             f"{world} -> {self.p['odom_frame']} not published")
            return
        T_world_odom = T_world_cam @ invert(T_odom_cam)
        self.tf_broadcaster.send(transform_stamped_msg(T_world_odom, stamp, world, self.p["odom_frame"]))

    def _warn(self, kind: str, message: str) -> None:
        now = time.time()
        if now - self._last_warn.get(kind, 0.0) >= self.p["warn_throttle_s"]:
            self._last_warn[kind] = now
            self.get_logger().warning(message)

    # -- diagnostics -----------------------------------------------------------------------
    def diagnostics(self) -> dict:
        state = self.lifecycle_state()
        if self.localizer is None:  # unconfigured (or configuring): only the state
            return {"lifecycle state": state, "last configure error": self._config_error or "none",
                    "max rss mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        with self._lock:
            s = self.stats.copy()
            lat = list(self._latencies)
            proc = list(self._proc_times)
            stages = list(self._stage_ms)
            gate_reason = self._gate_reason
        since = time.time() - s.last_success_wall if s.last_success_wall else float("inf")
        return {
            "lifecycle state": state, "poses discarded (deactivated)": s.count["discarded"],
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
            "calibrated": self.localizer.cfg.calibration is not None,
            "refiner": self.p["refiner"],
            "refine ms (median)": round(float(np.median([t.get("refine", 0.0) for t in stages])), 2)
            if stages and self.p["refiner"] != "none" else float("nan"),
            "refine iterations (last)": (s.last_refinement or {}).get("iterations", "n/a"),
            "refine final cost (last)": round(float((s.last_refinement or {}).get("final_cost", float("nan"))), 5),
            "confidence threshold": round(self.localizer.cfg.threshold, 3),
            "initialpose": gate_reason, "initialposes sent": self.gate.sent,
            "initialpose gate": self.gate.summary(),
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
        state = d["lifecycle state"]
        if self.localizer is None or state != "active":
            st.hardware_id = str(self.localizer.device) if self.localizer is not None else ""
            st.level = DiagnosticStatus.ERROR if self._config_error else DiagnosticStatus.OK
            st.message = state + (f" (configure failed: {self._config_error})" if self._config_error else "")
        else:
            st.hardware_id = str(self.localizer.device)
            st.level, st.message = self.diagnostic_level(now, self._diag_last)
        self._diag_last = now
        st.values = [KeyValue(key=k, value=str(v)) for k, v in d.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self.pub_diag.publish(arr)

    def shutdown(self) -> None:
        """Stop the worker (the frame in flight finishes; nothing is published after this)."""
        with self._out_lock:
            self._active = False
        self._stop_worker()
        if self.p["publish_initialpose"] and self.localizer is not None:
            self.get_logger().info(f"initialpose gate: {self.gate.summary()}")


class RelocalizationNode(_Relocalization, Node):
    """The plain node: configured and active from its constructor until it is destroyed.

    Raises:
        StartupError: a bad parameter or file; nothing was published.
    """

    def __init__(self, **kwargs):
        Node.__init__(self, "relocalization_node", **kwargs)
        self._setup()
        self._configure(self.create_publisher)
        self._activate()


class ManagedRelocalizationNode(_Relocalization, LifecycleNode):
    """The managed node (``rclpy.lifecycle``), driven by ``~/change_state`` as
    ``nav2_lifecycle_manager`` or ``ros2 lifecycle set`` do:

    * **configure** loads and cross-checks the model, database and calibration, warms up and
      creates the publishers. A bad parameter or file fails the transition with the same
      one-line message as the plain node's startup; the node stays unconfigured and can be
      configured again (parameters are read anew);
    * **activate** subscribes to the camera and starts the worker. The pose and
      ``/initialpose`` publishers are lifecycle publishers, and TF goes out only while
      active;
    * **deactivate** stops taking frames: the frame in flight is not published, the
      newest-frame slot is cleared, and triggers answer "inactive";
    * **cleanup** frees the model and the database (and returns the memory to the OS);
    * **shutdown** works from any state.

    ``/diagnostics`` (a plain publisher, from construction) reports the state.
    """

    def __init__(self, **kwargs):
        LifecycleNode.__init__(self, "relocalization_node", **kwargs)
        self._setup()
        # Code at construction, data at configure: the encoders' code (torchvision pulls in
        # about 1000 modules, 80 MB resident) is imported now, so that cleanup can hand back
        # everything configure took (Python cannot unload modules).
        import_torchvision()
        self.get_logger().info("managed: unconfigured, waiting for the configure transition")

    def lifecycle_state(self) -> str:
        return str(self._state_machine.current_state[1])

    def _destroy_publisher(self, pub) -> None:
        self.destroy_lifecycle_publisher(pub)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        t0 = time.time()
        try:
            self._configure(self.create_lifecycle_publisher)
        except StartupError as e:
            self._config_error = str(e)
            self.get_logger().error(f"cannot configure: {e}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured in {time.time() - t0:.1f} s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers
        self._activate()
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().info("deactivated")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.get_logger().info("cleaned up: model and database freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active or self._worker_thread is not None:
            self._deactivate()
        self._cleanup()
        self.get_logger().info(f"shut down from {state.label}")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in {state.label}: cleaning up")
        if self._active or self._worker_thread is not None:
            self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def release_memory() -> None:
    """Return freed memory to the OS after the model and database are dropped: collect
    cycles, empty the CUDA cache, and ``malloc_trim`` glibc's heap (else RSS stays at its peak)."""
    import ctypes
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def align_with_covariance(T_world_db: np.ndarray, T_db_cam: np.ndarray, cov_db: np.ndarray):
    """A pose and its covariance (world-axes convention) moved into another world frame:
    both the position and the small rotation about the axes rotate with R_world_db."""
    B = np.zeros((6, 6))
    B[:3, :3] = B[3:, 3:] = T_world_db[:3, :3]
    return T_world_db @ T_db_cam, B @ cov_db @ B.T


def compose_with_covariance(T_map_cam: np.ndarray, cov_cam: np.ndarray, T_cam_robot: np.ndarray):
    """Pose of a frame rigidly attached to the camera, and its covariance.

    With the covariance convention of the fusion (position perturbation δp and a small
    rotation δθ about the fixed map axes), the robot's position p_r = p_c + R_c t moves by
    δp − [R_c t]× δθ and its orientation by the same δθ: Σ_r = J Σ_c Jᵀ, J = [[I, −[R_c t]×], [0, I]].
    """
    T = T_map_cam @ T_cam_robot
    J = np.eye(6)
    J[:3, 3:] = -skew(T_map_cam[:3, :3] @ T_cam_robot[:3, 3])
    return T, J @ cov_cam @ J.T


def main(args=None, managed: bool | None = None) -> int:
    """Run the node (``--managed`` before ``--ros-args``, or ``managed=True``: the managed
    :class:`ManagedRelocalizationNode`). SIGINT/SIGTERM stop it cleanly: the worker finishes
    its frame, then the node and the context are shut down in that order (no traceback, no
    half-published pose); a managed node goes through its shutdown transition.

    The node runs on a SingleThreadedExecutor: its callbacks only do bookkeeping, and a
    multi-threaded executor was measured to starve the inference thread (GIL contention at
    100 Hz input: 1-4 localizations/s instead of about 45 on 2 cores)."""
    limit_malloc_arenas()
    argv = list(sys.argv if args is None else args)
    if managed is None:
        managed = "--managed" in argv
    argv = [a for a in argv if a != "--managed"]
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    with stop_on_signals() as stop:
        return _spin(stop, managed)


def main_managed(args=None) -> int:
    """The managed node's executable (``managed_relocalization_node``)."""
    return main(args, managed=True)


def _spin(stop: threading.Event, managed: bool = False) -> int:
    node = None
    code = 0
    try:
        node = ManagedRelocalizationNode() if managed else RelocalizationNode()
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
            if managed:
                if node.lifecycle_state() != "finalized":
                    node.trigger_shutdown()
            else:
                node.shutdown()
            node.get_logger().info("shut down")
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
