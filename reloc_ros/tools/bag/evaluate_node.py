"""Online evaluation, the ROS side: the node that listens to the relocalizer while a bag replays.

:class:`OnlineEvaluator` subscribes to the pose topic (and ``/initialpose``) and feeds an
:class:`~reloc_ros.tools.bag.evaluate_metrics.EvalState`; :func:`run_evaluator` spins it in a
private rclpy context until it should stop, then writes the report
(:func:`~reloc_ros.tools.bag.evaluate_report.write_report`). When it stops and what the
report holds: :mod:`reloc_ros.tools.bag.evaluate`.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from reloc_ros.eval.report import write_json
from reloc_ros.ros import messages as msgs
from reloc_ros.ros.shutdown import run_bounded
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.evaluate_metrics import EvalState, EvaluatorError, GroundTruth, TimelineReader, \
    load_ground_truth
from reloc_ros.tools.bag.evaluate_report import progress_line, write_report
from reloc_ros.tools.bag.topics import BagTopics

__all__ = ["DEFAULT_POSE_TOPIC", "DEFAULT_INITIALPOSE_TOPIC", "OnlineEvaluator", "run_evaluator"]

DEFAULT_POSE_TOPIC = "/relocalization_node/pose"
DEFAULT_INITIALPOSE_TOPIC = "/initialpose"
#: With ``until_idle``: once the replay's last frame has its pose, stop after this much quiet
#: (an ``/initialpose`` sent with that pose still arrives) instead of the whole idle time.
ANSWERED_SETTLE_S = 0.5


def _pose_qos(kind: str) -> QoSProfile:
    """The pose subscription's QoS: 'reliable' or 'best_effort', depth 100."""
    if kind not in ("reliable", "best_effort"):
        raise EvaluatorError(f"pose QoS must be 'reliable' or 'best_effort', got {kind!r}")
    rel = ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=100, reliability=rel)


class OnlineEvaluator(Node):
    """Subscribes to the pose topic and feeds an :class:`~reloc_ros.tools.bag.evaluate_metrics.EvalState`.

    Args:
        gt: the bag's ground truth.
        pose_topic: the ``PoseWithCovarianceStamped`` topic of the estimates.
        initialpose_topic: a topic of ``/initialpose`` poses to check too ('' for none).
        timeline: the replay's timeline file, or None.
        pose_qos: 'reliable' or 'best_effort'.
        progress_s: a progress line every this many seconds (0: none).
        map_frame: the frame estimates must be in.
        log: ``log(str)`` for progress lines (default: print).
        context: the rclpy context.
        node_name: the node's name.
    """

    def __init__(self, gt: GroundTruth, pose_topic: str = DEFAULT_POSE_TOPIC, *,
                 initialpose_topic: str = DEFAULT_INITIALPOSE_TOPIC,
                 timeline: Path | str | None = None, pose_qos: str = "reliable", progress_s: float = 5.0,
                 map_frame: str = tp.FRAME_MAP, log=None, context=None, node_name="reloc_online_evaluator"):
        super().__init__(node_name, context=context, start_parameter_services=False)
        self.t_start = time.time()
        self.pose_topic = pose_topic
        self.log = log or (lambda s: print(s, flush=True))
        tl = TimelineReader(timeline, not_before=self.t_start) if timeline is not None else None
        self.state = EvalState(gt, map_frame=map_frame, timeline=tl)
        self._lock = threading.Lock()
        self.sub = self.create_subscription(PoseWithCovarianceStamped, pose_topic, self._on_pose,
                                            _pose_qos(pose_qos))
        self.initialpose_topic = initialpose_topic
        self.sub_initial = self.create_subscription(PoseWithCovarianceStamped, initialpose_topic,
                                                    self._on_initialpose, 10) if initialpose_topic else None
        if tl is not None:
            self.create_timer(0.2, tl.poll)
        if progress_s and progress_s > 0:
            self.create_timer(progress_s, self._progress)

    def _on_pose(self, msg) -> None:
        recv = time.time()
        T = msgs.pose_to_matrix(msg.pose.pose)
        with self._lock:
            self.state.add_pose(msgs.stamp_to_ns(msg.header.stamp), msg.header.frame_id, T,
                                list(msg.pose.covariance), recv)

    def _on_initialpose(self, msg) -> None:
        T = msgs.pose_to_matrix(msg.pose.pose)
        with self._lock:
            rec = self.state.add_initialpose(msgs.stamp_to_ns(msg.header.stamp), msg.header.frame_id, T)
        self.log(f"evaluator: /initialpose received, {rec['t_err_m']:.3f} m / {rec['r_err_deg']:.2f}° from the "
                 "ground truth" if rec["matched"] else "evaluator: /initialpose received, no ground truth at its stamp")

    def _progress(self) -> None:
        with self._lock:
            s = self.state.summary(final=False)
        self.log(progress_line(s))

    def idle_for(self, now: float | None = None) -> float | None:
        """Seconds since the last pose (or since the replay ended, when later); None while
        the replay runs (timeline) or before any pose (no timeline).

        Args:
            now: ``time.time()`` (default: now).
        """
        now = time.time() if now is None else now
        st = self.state
        if st.timeline is not None:
            if not st.timeline.ended:
                return None
            ref = float(st.timeline.end["wall"])
            if st.last_pose_wall is not None:
                ref = max(ref, st.last_pose_wall)
            return now - ref
        return None if st.last_pose_wall is None else now - st.last_pose_wall

    def last_frame_answered(self) -> bool:
        """The replay ended (timeline) and a pose for its last image arrived: a relocalizer
        that answers its frames in order (as this package's node does) has nothing left to say."""
        tl = self.state.timeline
        return tl is not None and tl.ended and bool(tl.order) and tl.order[-1] in self.state.estimates

    def stop_listening(self) -> None:
        """Destroy the subscriptions (no pose changes the report any more)."""
        self.destroy_subscription(self.sub)
        if self.sub_initial is not None:
            self.destroy_subscription(self.sub_initial)

    def write_report(self, out: Path | str, title: str = "") -> dict:
        """Write the report into ``out`` (``title``: the table's heading); returns the summary."""
        with self._lock:
            return write_report(self.state, out, title, {"pose_topic": self.pose_topic,
                                                        "initialpose_topic": self.initialpose_topic,
                                                        "bag": self.state.gt.bag,
                                                        "wall_s": time.time() - self.t_start})


def _spin_until_done(executor, node: OnlineEvaluator, stop: threading.Event, duration: float | None,
                     until_idle: float | None, timeline) -> str:
    """Spin until stopped, ``duration`` elapsed or ``until_idle`` reached; returns why it stopped.

    Args:
        executor: the executor holding ``node``.
        node: the evaluator.
        stop: set it to stop.
        duration: seconds to run at most (None: no limit).
        until_idle: stop when no pose arrived for this many seconds (see :meth:`OnlineEvaluator.idle_for`),
            or :data:`ANSWERED_SETTLE_S` after the replay's last frame got its pose.
        timeline: the timeline file, or None (for the message only).
    """
    while True:
        executor.spin_once(timeout_sec=0.1)
        if stop.is_set():
            return "interrupted"
        if duration is not None and time.time() - node.t_start >= duration:
            return f"{duration:g} s elapsed"
        if until_idle is not None:
            idle = node.idle_for()
            if idle is not None and idle >= until_idle:
                return f"no pose for {until_idle:g} s" + (" after the replay ended" if timeline else "")
            if idle is not None and idle >= min(until_idle, ANSWERED_SETTLE_S) and node.last_frame_answered():
                return "the last frame answered, after the replay ended"


def _check_durations(duration: float | None, until_idle: float | None) -> None:
    """Raise :class:`EvaluatorError` unless each given limit is a positive number of seconds."""
    for name, v in (("duration", duration), ("until_idle", until_idle)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise EvaluatorError(f"{name} must be a positive number of seconds, got {v!r}")


def run_evaluator(
    bag: Path | str,
    out: Path | str,
    pose_topic: str = DEFAULT_POSE_TOPIC,
    *,
    initialpose_topic: str = DEFAULT_INITIALPOSE_TOPIC,
    duration: float | None = None,
    until_idle: float | None = None,
    timeline: Path | str | None = None,
    pose_qos: str = "reliable",
    names: BagTopics | None = None,
    progress_s: float = 5.0,
    stop_event: threading.Event | None = None,
    log=None,
    teardown_timeout_s: float | None = None,
    domain_id: int | None = None,
) -> dict:
    """Evaluate the poses on ``pose_topic`` against the bag's ground truth in a private rclpy
    context, until ``duration`` / ``until_idle`` / ``stop_event``; write the report to
    ``out`` and return its summary.

    Args:
        bag: the bag being replayed (the ground truth).
        out: the report folder.
        pose_topic, initialpose_topic, timeline, pose_qos, progress_s: see :class:`OnlineEvaluator`.
        duration: stop after this many seconds (None: no limit).
        until_idle: stop when no pose arrived for this many seconds after the replay ended.
        names: the bag's topic and frame names.
        stop_event: set it to stop (a signal handler).
        log: ``log(str)`` for progress lines (default: print).
        teardown_timeout_s: give up on a hung DDS teardown after this many seconds
            (:func:`reloc_ros.ros.shutdown.run_bounded`; None: wait).
        domain_id: the ROS domain (default ``$ROS_DOMAIN_ID``).

    Raises:
        EvaluatorError: a bad bag or option.
    """
    _check_durations(duration, until_idle)
    names = names or BagTopics()
    log = log or (lambda s: print(s, flush=True))
    gt = load_ground_truth(bag, names)
    stop = stop_event or threading.Event()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    try:
        node = OnlineEvaluator(gt, pose_topic, initialpose_topic=initialpose_topic, timeline=timeline,
                               pose_qos=pose_qos, progress_s=progress_s, map_frame=names.map_frame, log=log,
                               context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        log(f"evaluating {pose_topic} against {len(gt)} ground-truth frames of {gt.bag} ({gt.source})"
            + (f", timeline {timeline}" if timeline else ""))
        reason = _spin_until_done(executor, node, stop, duration, until_idle, timeline)
        node.stop_listening()
        s = node.write_report(out, f"Online evaluation of {pose_topic} on {Path(gt.bag).name}")
        s["stopped_because"] = reason
        write_json(Path(out) / "summary.json", s)
        log(progress_line(s).replace("evaluator:", f"evaluator done ({reason}):", 1))
        log(f"report written to {out}/ (per_frame.csv, summary.md, summary.json, trajectory.png, "
            "errors_over_time.png, cdf.png)")
    finally:

        def teardown() -> None:
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)
            if node is not None:
                node.destroy_node()
            if ctx.ok():
                rclpy.shutdown(context=ctx)

        teardown_ok = run_bounded(teardown, teardown_timeout_s, "DDS teardown", log)
    s["teardown_ok"] = teardown_ok
    return s
