"""The relocalization node's /diagnostics: its counters, and the status built from them.

The node keeps a :class:`Stats` of what it has seen, takes a :class:`Snapshot` of it (and
of its timings and state) under its lock once per period, and publishes
:func:`status` of that snapshot. Every frame the node receives is accounted for, at every
snapshot::

    received = processed + malformed + no_intrinsics + failed + dropped + skipped + cleared
               + queued + in flight
    processed = published + rejected + discarded

(the counters are defined in :class:`Stats`).
"""

from __future__ import annotations

import math
import resource
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from reloc_ros.core.camera import Intrinsics

__all__ = ["COUNTERS", "FRAME_OUTCOMES", "POSE_OUTCOMES", "Stats", "Snapshot", "report", "diagnostic_level",
           "status"]

#: The node's event counters (see :class:`Stats`).
COUNTERS = ("received", "processed", "malformed", "no_intrinsics", "failed", "dropped", "skipped", "cleared",
            "rejected", "published", "discarded", "camera_info", "camera_info_ignored")
#: What becomes of a frame the worker takes: one of these, counted when the worker is done with it.
FRAME_OUTCOMES = ("malformed", "no_intrinsics", "failed", "rejected", "published", "discarded")
#: The outcomes of a frame that was localized (counted as ``processed`` too).
POSE_OUTCOMES = ("rejected", "published", "discarded")


@dataclass
class Stats:
    """What the node has seen since startup: ``count[event]`` for each of :data:`COUNTERS`,
    and the last localization.

    A frame is *received* while the node is active. A frame replaced by a newer one before
    the worker took it is *dropped* when the worker was busy with another frame (the input
    is faster than the node), and *skipped* when the worker was idle by design (rate limit,
    on-demand mode); one still waiting at deactivation is *cleared*. A frame the worker took
    is *malformed* (not an image), *no_intrinsics* (a refiner needs the camera's intrinsics
    and neither camera_info nor the camera_intrinsics parameter gave them yet: not
    localized), *failed* (an error while localizing it) or *processed* (localized); a
    processed frame's pose is *published*, *rejected* (no pose, weak consensus, low
    confidence, a missing TF) or *discarded* (the node was deactivated while it was being
    localized).

    Not frames: *camera_info* counts the usable CameraInfo messages received (a reliable,
    transient-local publisher's arrive twice, once on each of the node's two
    subscriptions), *camera_info_ignored* the unusable ones."""

    count: Counter = field(default_factory=lambda: Counter(dict.fromkeys(COUNTERS, 0)))
    last_inliers: int = 0
    last_confidence: float = 0.0
    last_success_wall: float = 0.0
    last_reason: str = ""
    last_refinement: dict | None = None

    def copy(self) -> "Stats":
        return replace(self, count=Counter(self.count))


@dataclass
class Snapshot:
    """The node's state at one instant, taken under its lock (see :func:`report`).

    Attributes:
        state: the lifecycle state (``"active"`` for the plain node).
        config_error: the last configure failure ("" when none).
        configured: whether a localizer is loaded (otherwise only the state is reported).
        stats: a copy of the node's :class:`Stats`.
        queued: frames waiting for the worker (0 or 1: only the newest is kept).
        in_flight: frames the worker is localizing (0 or 1).
        latencies_s: receive-to-publish times of the last poses (seconds).
        processing_s: processing times of the last poses (seconds).
        stage_ms: the localizer's timings of the last frames (dicts of milliseconds).
        device: the inference device.
        mode: the ``mode`` parameter.
        calibrated: whether a calibration gives the covariance and confidence.
        covariance: where the published covariance comes from (:func:`reloc_ros.ros.startup.covariance_source`).
        threshold: the confidence a pose needs to be published.
        refiner: the ``refiner`` parameter; ``refines``: whether a refiner runs.
        gate_reason, gate_sent, gate_summary: the /initialpose gate's last decision, the
            number sent and its summary.
        camera: the intrinsics from camera_info, or None.
        distortion: camera_info's distortion model, "none" without distortion ("" without
            camera_info).
        undistort_builds: how many times the undistortion tables were built (once per
            distorted camera_info calibration and image size).
        seconds_since_success: since the last published pose (infinite: none yet).
    """

    state: str
    config_error: str = ""
    configured: bool = False
    stats: Stats = field(default_factory=Stats)
    queued: int = 0
    in_flight: int = 0
    latencies_s: list = field(default_factory=list)
    processing_s: list = field(default_factory=list)
    stage_ms: list = field(default_factory=list)
    device: str = ""
    mode: str = ""
    calibrated: bool = False
    covariance: str = ""
    threshold: float = 0.0
    refiner: str = "none"
    refines: bool = False
    gate_reason: str = ""
    gate_sent: int = 0
    gate_summary: str = ""
    camera: Intrinsics | None = None
    distortion: str = ""
    undistort_builds: int = 0
    seconds_since_success: float = math.inf


def _ms(values_s: list, fn) -> float:
    return round(1e3 * float(fn(values_s)), 1) if values_s else float("nan")


def report(s: Snapshot) -> dict:
    """The key/value pairs of /diagnostics for a snapshot (only the state and the last
    configure error while nothing is loaded)."""
    rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if not s.configured:
        return {"lifecycle state": s.state, "last configure error": s.config_error or "none", "max rss mb": rss_mb}
    c, stages = s.stats.count, s.stage_ms
    since = s.seconds_since_success
    last = s.stats.last_refinement or {}
    return {
        "lifecycle state": s.state, "poses discarded (deactivated)": c["discarded"],
        "frames received": c["received"], "frames processed": c["processed"],
        "frames dropped": c["dropped"], "frames skipped (rate limit / on demand)": c["skipped"],
        "frames malformed": c["malformed"], "frames without intrinsics": c["no_intrinsics"],
        "frames failed": c["failed"],
        "frames cleared (deactivated)": c["cleared"], "frames queued": s.queued, "frames in flight": s.in_flight,
        "poses rejected": c["rejected"], "poses published": c["published"],
        "latency ms (median of last 100)": _ms(s.latencies_s, np.median),
        "latency ms (max of last 100)": _ms(s.latencies_s, np.max),
        "processing ms (max of last 100)": _ms(s.processing_s, np.max),
        "processing rate hz": round(1.0 / float(np.mean(s.processing_s)), 2) if s.processing_s else 0.0,
        "model ms (median: encode + heads)": round(float(np.median(
            [t["encode"] + t["heads"] for t in stages])), 2) if stages else float("nan"),
        "localize ms (median)": round(float(np.median([t["total"] for t in stages])), 2) if stages else float("nan"),
        "last inliers": s.stats.last_inliers, "last confidence": round(s.stats.last_confidence, 3),
        "seconds since last success": round(since, 1) if math.isfinite(since) else "never",
        "last rejection": s.stats.last_reason, "device": s.device, "mode": s.mode,
        "calibrated": s.calibrated, "covariance": s.covariance, "refiner": s.refiner,
        "refine ms (median)": round(float(np.median([t.get("refine", 0.0) for t in stages])), 2)
        if stages and s.refines else float("nan"),
        "refine iterations (last)": last.get("iterations", "n/a"),
        "refine final cost (last)": round(float(last.get("final_cost", float("nan"))), 5),
        "confidence threshold": round(s.threshold, 3),
        "initialpose": s.gate_reason, "initialposes sent": s.gate_sent, "initialpose gate": s.gate_summary,
        "max rss mb": rss_mb,
        "camera info": "none" if s.camera is None else
        f"{s.camera.width}x{s.camera.height} fx {s.camera.fx:.1f}, distortion {s.distortion or 'none'}",
        "camera info messages": c["camera_info"], "camera info ignored": c["camera_info_ignored"],
        "undistortion tables built": s.undistort_builds,
    }


def diagnostic_level(now: Stats, before: Stats) -> tuple[int, str]:
    """(DiagnosticStatus level, message) from the counters now and at the last report.

    WARN while input is malformed, dropped, fails or has no intrinsics (in the last period,
    with the counts), when no image came yet, and while no pose has been published; OK
    otherwise.
    """
    problems = []
    new = now.count - before.count  # what happened since the last report
    if now.count["received"] == 0:
        problems.append("no image received")
    if new["malformed"]:
        problems.append(f"{new['malformed']} malformed frame(s) skipped ({now.count['malformed']} in all)")
    if new["no_intrinsics"]:
        problems.append(f"{new['no_intrinsics']} frame(s) not localized: no camera intrinsics yet "
                        f"({now.count['no_intrinsics']} in all)")
    if new["failed"]:
        problems.append(f"{new['failed']} frame(s) failed ({now.count['failed']} in all)")
    if new["dropped"]:
        problems.append(f"{new['dropped']} frame(s) dropped: input faster than processing "
                        f"({now.count['dropped']} in all)")
    if now.count["published"] == 0 and now.count["processed"] > 0:
        problems.append("no pose published yet" + (f" (last: {now.last_reason})" if now.last_reason else ""))
    if problems:
        return DiagnosticStatus.WARN, "; ".join(problems)
    return DiagnosticStatus.OK, "localizing"


def status(name: str, s: Snapshot, before: Stats) -> DiagnosticStatus:
    """The ``DiagnosticStatus`` of a snapshot.

    Args:
        name: the status name (``"<node>: relocalization"``).
        s: the snapshot.
        before: the counters at the previous report (for what happened since).
    """
    st = DiagnosticStatus()
    st.name = name
    st.hardware_id = s.device
    if not s.configured or s.state != "active":
        st.level = DiagnosticStatus.ERROR if s.config_error else DiagnosticStatus.OK
        st.message = s.state + (f" (configure failed: {s.config_error})" if s.config_error else "")
    else:
        st.level, st.message = diagnostic_level(s.stats, before)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in report(s).items()]
    return st
