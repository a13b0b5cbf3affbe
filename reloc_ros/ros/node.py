"""The ROS 2 relocalization node: camera image in, absolute pose with covariance (and TF) out.

    ros2 run reloc_ros relocalization_node --ros-args --params-file config/relocalization.yaml \\
        -p model_path:=model.pt -p database_path:=db.pt -r image:=/camera/color/image_raw

Interfaces (REP-105 frames; names are parameters, topics are relative and remappable):

* subscribes ``image`` (``sensor_msgs/Image``, any common encoding) or
  ``image/compressed`` (``sensor_msgs/CompressedImage``, ``use_compressed``), with
  sensor-data QoS; optionally ``camera_info`` (the refiner's intrinsics, and the lens
  distortion, which is undone before localizing), on two subscriptions so that best-effort,
  reliable and latched publishers all match;
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

The parameters are declared once, in :mod:`reloc_ros.ros.parameters` (types, ranges,
descriptions; ``config/relocalization.yaml`` is generated from it); a wrong or bad one stops
the node at startup (the managed node: fails configure) with one line naming each. The
``plugins`` parameter names modules imported at configure, before the localizer is built,
so that units they register (a refiner, ...) can be named by the other parameters. This
module holds the lifecycle and the worker; configuring (parameters, plugins, files) is in
:mod:`reloc_ros.ros.startup`, the outputs in :mod:`reloc_ros.ros.outputs`, ``/diagnostics``
in :mod:`reloc_ros.ros.diagnostics`.

The published covariance and confidence come from ``calibration_path``
(:mod:`reloc_ros.core.calibration`, fitted on held-out training sequences); without one
they are the hypotheses' spread and inlier score, which a consistently wrong retrieval
does not move, and the node says so at startup. The publish decision (the confidence
threshold) is the localizer's, so the node and ``reloc_ros.eval.evaluate`` agree.

Inference runs on a worker thread, never on the executor. Only the newest frame is kept:
older ones are dropped (and counted), so latency stays bounded when images come faster
than the model runs. A missing, unreadable, corrupt or mismatched model or database stops
the node at startup with a message naming the file; malformed images are skipped with a throttled
warning; a pose that is not finite or whose consensus is weak is never published.
"""

from __future__ import annotations

import ctypes
import os


def limit_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's malloc arenas (``M_ARENA_MAX``) unless ``MALLOC_ARENA_MAX`` is set.

    By default every thread that allocates (DDS, the worker, OpenMP) may get its own arena,
    up to 8 per core, and memory freed in them stays fragmented: measured with the lifecycle
    benchmark (ResNet-34), the RSS after cleanup was 43-60 MB above the RSS before configure
    and grew over cycles; with 2 arenas, 27 MB and flat, at the same latency. It must run
    before the threads exist: this module calls it first when run with ``python -m``, the
    launch file sets ``MALLOC_ARENA_MAX``, and :func:`main` calls it for the other cases."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, int(n))  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc


if __name__ == "__main__":
    limit_malloc_arenas()


import math  # noqa: E402  (after the arena cap, which must come before any thread exists)
import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from reloc_ros.core.distortion import UndistortCache
from reloc_ros.core.model._torchvision import import_torchvision
from reloc_ros.ros import parameters
from reloc_ros.ros.diagnostics import POSE_OUTCOMES, Snapshot, Stats, status
from reloc_ros.ros.images import BACKEND as IMAGE_BACKEND
from reloc_ros.ros.images import ImageConversionError, msg_to_rgb
from reloc_ros.ros.messages import CameraCalibration, camera_info_to_calibration
from reloc_ros.ros.outputs import Outputs
from reloc_ros.ros.shutdown import stop_on_signals
from reloc_ros.ros.startup import (StartupError, checked_parameters, covariance_source, initialpose_withheld,
                                  load_localizer, release_memory)
from reloc_ros.ros.tf import BACKEND as TF_BACKEND

__all__ = ["RelocalizationNode", "ManagedRelocalizationNode", "StartupError", "main", "main_managed",
           "limit_malloc_arenas", "CAMERA_INFO_LATCHED_QOS"]

#: The second camera_info subscription's QoS: reliable and transient local with a history of
#: one, which receives the last message of a latched publisher (one that published once,
#: before the node subscribed). The first subscription is sensor-data QoS (best effort,
#: volatile), which matches every volatile publisher, best effort or reliable. Neither alone
#: matches all three: a transient-local reader is incompatible with a volatile writer, and a
#: best-effort reader does not get a writer's history.
CAMERA_INFO_LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class _Relocalization:
    """What both nodes do (see the module docstring), in the steps of a managed node's
    lifecycle: :meth:`_setup` at construction (parameters, services, diagnostics),
    :meth:`_configure` (check the parameters, load the plugins and the files, create the
    outputs), :meth:`_activate` (subscribe, start the worker), :meth:`_deactivate` and
    :meth:`_cleanup`. :class:`RelocalizationNode` runs the first three in its constructor;
    :class:`ManagedRelocalizationNode` runs each in its transition. All work beyond
    bookkeeping happens in :meth:`_worker`."""

    def _setup(self) -> None:
        parameters.declare(self)
        self.p = parameters.read(self)  # unchecked until configure
        self.localizer = None
        self.outputs: Outputs | None = None
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
        self._calibration: CameraCalibration | None = None  # from camera_info (the callback replaces it whole)
        self._intrinsics = None  # Intrinsics from the camera_intrinsics parameter
        self._undistort = UndistortCache()  # the worker's: remap tables rebuilt when camera_info changes
        self._said_parameter = False  # "using the camera_intrinsics parameter until camera_info arrives"
        self._cal_logged: CameraCalibration | None = None  # the camera_info calibration last logged
        self._subs: list = []
        self._worker_thread = None
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
        period = self.p["diagnostics_period_s"]
        self._diag_timer = self.create_timer(period if isinstance(period, float) and period > 0 else 1.0,
                                             self._publish_diagnostics)
        self.create_timer(0.1, self._expire_waiters, callback_group=triggers)
        # The worker wakes the executor through this when a trigger's result is ready.
        self._wake = self.create_guard_condition(lambda: None)

    def lifecycle_state(self) -> str:
        return "active"

    def _configure(self, make_publisher) -> None:
        """Read and check the parameters, import the plugins, load and cross-check the files,
        warm up, and create the outputs with ``make_publisher(type, topic, depth)``.

        Raises:
            StartupError: a bad parameter, plugin or file (one line naming it); nothing is kept.
        """
        self.p = checked_parameters(self)
        self._intrinsics = parameters.camera_intrinsics(self.p)
        self._said_parameter, self._cal_logged = False, None
        # nothing is published before this succeeds
        self.localizer = load_localizer(self.p, self.get_logger())
        self.outputs = Outputs(self, self.p, parameters.gate_config(self.p), make_publisher, self._warn,
                               withhold_initialpose=initialpose_withheld(self.localizer))
        if self.p["publish_initialpose"] and self.outputs.withhold:
            self.get_logger().warning(f"no /initialpose will be sent: {self.outputs.withhold} "
                                      "(~/publish_initialpose still sends on request)")
        self._diag_timer.timer_period_ns = int(self.p["diagnostics_period_s"] * 1e9)
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
            # Two readers into one callback (see CAMERA_INFO_LATCHED_QOS). The latched reader's
            # incompatible-QoS event, raised by every volatile publisher (which the other reader
            # matches), is not a problem: silenced instead of rclpy's default warning.
            self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                       qos_profile_sensor_data))
            self._subs.append(self.create_subscription(
                CameraInfo, "camera_info", self._on_camera_info, CAMERA_INFO_LATCHED_QOS,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda _event: None)))
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
            if self._latest is not None:
                self.stats.count["cleared"] += 1
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
        """Free the model and the database, and remove the outputs."""
        if self.outputs is not None:
            self.outputs.destroy(self._destroy_publisher)
            self.outputs = None
        self._calibration = None
        self._undistort = UndistortCache()
        if self.localizer is not None:
            self.localizer = None
            release_memory()

    def _destroy_publisher(self, pub) -> None:
        self.destroy_publisher(pub)

    # -- callbacks (executor thread: bookkeeping only) --------------------------------------
    def _on_image(self, msg) -> None:
        with self._lock:
            if not self._active:
                return  # delivered by the executor after deactivation: never processed
            self.stats.count["received"] += 1
            if self._latest is not None:
                self.stats.count["dropped" if self._busy else "skipped"] += 1
            self._latest = (msg, time.time())
            self._new_frame.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the newest usable camera_info (parsing it is cheap; the remap tables are built
        by the worker). An unusable one drops the last: the camera_intrinsics parameter, if
        set, is used until a usable one comes, else frames needing intrinsics are held back."""
        try:
            cal = camera_info_to_calibration(msg)
        except ValueError as e:
            with self._lock:
                self.stats.count["camera_info_ignored"] += 1
                self._calibration = None
            fallback = "the camera_intrinsics parameter is used" if self._intrinsics is not None else \
                "no intrinsics"
            self._warn("camera_info", f"camera_info ignored: {e}; {fallback} until a usable one arrives")
            return
        with self._lock:
            self.stats.count["camera_info"] += 1
            self._calibration = cal
        if cal != self._cal_logged:  # say what is used now: the first at once, a change throttled
            if self._cal_logged is None:
                self._last_warn.pop("camera_info_used", None)
            if self._warn("camera_info_used", f"camera_info: now using {cal.describe()}"
                          + (": images are undistorted before localizing" if cal.distorted else ""), info=True):
                self._cal_logged = cal

    def _refine_K(self, cal: CameraCalibration | None) -> np.ndarray | None:
        """The camera's 3x3 intrinsics at the refiner's image size: from camera_info (``cal``)
        when one arrived, else the camera_intrinsics parameter; None without either (or no
        refiner)."""
        size = self.localizer.refine_image_size
        intr = cal.intrinsics if cal is not None else self._intrinsics
        return None if size is None or intr is None else intr.scaled(*size).K

    def _inactive_answer(self, response):
        response.success = False
        response.message = f"inactive (lifecycle state {self.lifecycle_state()}): activate the node first"
        return response

    async def _on_trigger(self, request, response):
        """Ask the worker for one localization and answer with its result.

        A coroutine: the executor keeps serving images while it waits (the node runs on a
        single-threaded executor, see :func:`main`)."""
        if not self._active:
            return self._inactive_answer(response)
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

    def _on_force_initialpose(self, request, response):
        if not self._active or self.outputs is None:
            return self._inactive_answer(response)
        with self._out_lock:
            response.success, response.message = self.outputs.force_initialpose()
        return response

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
                outcome, result = self._process(msg, received, epoch)
            except Exception as e:  # never let one frame kill the worker
                self._warn("process", f"frame skipped: {type(e).__name__}: {e}")
                outcome, result = "failed", {"ok": False, "message": f"error: {e}"}
            with self._lock:  # the frame's outcome and the end of its flight, at once
                self._busy = False
                self.stats.count[outcome] += 1
                if outcome in POSE_OUTCOMES:
                    self.stats.count["processed"] += 1
                waiters = [f for f, _ in self._waiters] if triggered else []
                if triggered:
                    self._waiters = []
            for f in waiters:
                f.set_result(result)
            if waiters:
                self._wake.trigger()

    def _process(self, msg, received: float, epoch: int = 0) -> tuple[str, dict]:
        """Localize one frame and publish its pose: (outcome, trigger answer), the outcome one
        of :data:`reloc_ros.ros.diagnostics.FRAME_OUTCOMES` but ``failed``."""
        t0 = time.time()
        try:
            rgb = msg_to_rgb(msg)
        except ImageConversionError as e:
            with self._lock:
                n = self.stats.count["malformed"] + 1
            self._warn("malformed", f"malformed image skipped ({e}); {n} so far")
            return "malformed", {"ok": False, "message": f"malformed image: {e}"}
        cal = self._calibration  # one camera_info for the whole frame
        K = self._refine_K(cal)
        if K is None and self.localizer.refine_image_size is not None:
            return self._no_intrinsics()
        if cal is None and K is not None and self.p["use_camera_info"] and not self._said_parameter:
            self._said_parameter = True
            self.get_logger().info("using the camera_intrinsics parameter until camera_info arrives")
        if cal is not None and cal.distorted:
            h, w = rgb.shape[:2]
            rgb = self._undistort(rgb, cal.intrinsics.scaled(w, h).K, cal.D, cal.model)
        stamp = msg.header.stamp
        res = self.localizer.localize(rgb, K)
        with self._lock:
            self._stage_ms.append(res.timings_ms)
            self.stats.last_inliers = res.n_inliers
            self.stats.last_confidence = res.confidence
            self.stats.last_refinement = res.refinement
        if not res.ok or res.pose is None or not np.all(np.isfinite(res.pose)) \
                or not np.all(np.isfinite(res.covariance)):
            return self._reject(f"no pose: {res.reason or 'non-finite pose'}")
        camera_frame = self.p["camera_frame"] or msg.header.frame_id
        out = self.outputs.locate(res.pose, res.covariance, camera_frame, stamp)
        if isinstance(out, str):
            return self._reject(out)
        with self._out_lock:
            if not self._active or epoch != self._epoch:
                return "discarded", {"ok": False, "message": "inactive: the node was deactivated while localizing "
                                                             "this frame"}
            self.outputs.publish(out, res.pose, camera_frame, stamp)
        now = time.time()
        with self._lock:
            self.stats.last_success_wall = now
            self._proc_times.append(now - t0)
            self._latencies.append(now - received)
        t = out.T_out[:3, 3]
        return "published", {"ok": True, "message": (
            f"localized {out.frame} in {out.world} at ({t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}) m, "
            f"{res.n_inliers}/{len(res.hypotheses.db_index)} inliers, confidence {res.confidence:.2f}, "
            f"scene {res.scene}, {res.timings_ms['total']:.0f} ms")}

    def _no_intrinsics(self) -> tuple[str, dict]:
        """A frame the refiner cannot use: no camera_info yet and no camera_intrinsics parameter."""
        with self._lock:
            n = self.stats.count["no_intrinsics"] + 1
        where = "waiting for camera_info" if self.p["use_camera_info"] else \
            "set camera_intrinsics or use_camera_info"
        message = f"no camera intrinsics for the refiner ({where}): frame not localized"
        self._warn("no_intrinsics", f"{message}; {n} so far")
        return "no_intrinsics", {"ok": False, "message": message}

    def _reject(self, message: str) -> tuple[str, dict]:
        with self._lock:
            self.stats.last_reason = message
        self._warn("rejected", message)
        return "rejected", {"ok": False, "message": message}

    def _warn(self, kind: str, message: str, info: bool = False) -> bool:
        """Log ``message`` (a warning, or ``info``) unless one of this ``kind`` went out within
        ``warn_throttle_s``; whether it was logged."""
        now = time.time()
        throttle = self.p["warn_throttle_s"]
        if now - self._last_warn.get(kind, 0.0) >= (throttle if isinstance(throttle, float) else 5.0):
            self._last_warn[kind] = now
            # two call sites: rclpy's logger keys its settings by the caller's line and refuses
            # another severity from the same one
            if info:
                self.get_logger().info(message)
            else:
                self.get_logger().warning(message)
            return True
        return False

    # -- diagnostics -----------------------------------------------------------------------
    def _snapshot(self) -> Snapshot:
        """The node's state for /diagnostics (:mod:`reloc_ros.ros.diagnostics`)."""
        state, loc, out = self.lifecycle_state(), self.localizer, self.outputs
        with self._lock:
            snap = Snapshot(state=state, config_error=self._config_error, stats=self.stats.copy(),
                            queued=int(self._latest is not None), in_flight=int(self._busy),
                            latencies_s=list(self._latencies), processing_s=list(self._proc_times),
                            stage_ms=list(self._stage_ms))
        if loc is None or out is None:
            return snap
        snap.configured, snap.device, snap.mode = True, str(loc.device), self.p["mode"]
        snap.calibrated, snap.threshold = loc.cfg.calibration is not None, loc.cfg.threshold
        snap.covariance = covariance_source(loc)
        snap.refiner, snap.refines = self.p["refiner"], loc.refine_image_size is not None
        snap.gate_reason, snap.gate_sent, snap.gate_summary = out.gate_state()
        cal = self._calibration
        if cal is not None:
            snap.camera, snap.distortion = cal.intrinsics, cal.model if cal.distorted else "none"
        snap.undistort_builds = self._undistort.builds
        last = snap.stats.last_success_wall
        snap.seconds_since_success = time.time() - last if last else math.inf
        return snap

    def _publish_diagnostics(self) -> None:
        snap = self._snapshot()
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status(f"{self.get_name()}: relocalization", snap, self._diag_last)]
        self._diag_last = snap.stats
        self.pub_diag.publish(arr)

    def shutdown(self) -> None:
        """Stop the worker (the frame in flight finishes; nothing is published after this)."""
        with self._out_lock:
            self._active = False
        self._stop_worker()
        if self.p["publish_initialpose"] and self.outputs is not None:
            self.get_logger().info(f"initialpose gate: {self.outputs.gate_state()[2]}")


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
