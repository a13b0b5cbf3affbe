"""Online evaluation of the relocalization node against the ground truth of a bag.

Command line::

    python -m reloc_ros.tools.bag.evaluate --bag BAG --out REPORT_DIR
        [--pose-topic /relocalization_node/pose] [--initialpose-topic /initialpose]
        [--duration S] [--until-idle S]
        [--timeline FILE] [--pose-qos reliable|best_effort] [--remap FIELD=VALUE ...]
        [--progress S] [--json] [--quiet]

A typical run, three processes on one machine::

    python -m reloc_ros.tools.bag.evaluate --bag chess_test --out eval/online --timeline run.jsonl --until-idle 3 &
    ros2 run reloc_ros relocalization_node --ros-args ... -r image:=/camera/color/image_raw &
    python -m reloc_ros.tools.bag.replay chess_test --wait-subscribers 1 --timeline run.jsonl

What it does. :class:`OnlineEvaluator` (an rclpy node) subscribes to the node's pose topic
(``geometry_msgs/PoseWithCovarianceStamped``, expected in ``map``, stamped with the image's
stamp). The ground truth is read from the bag itself (``/camera_gt/pose``, or the
``map -> camera_gt`` transforms of ``/tf`` when the bag has no pose topic; the frame names
of ``/reloc/frame_id``), not over DDS. Estimates are matched to ground-truth frames by
exact stamp (integer nanoseconds); estimates with no ground truth at their stamp, in another
frame than ``map``, or repeated for a stamp already estimated (a looping replay) are
counted and otherwise ignored (the first estimate of a stamp is kept).

Which frames count (the denominator of the rejection rate and of the accuracies): with
``--timeline``, the frames whose image the replay published; without, every ground-truth
frame of the bag. A frame with no estimate is a rejection. (While running, the progress
line counts frames whose image went out at least 1 s before, or, without a timeline,
those up to the newest estimated stamp.)

Metrics: those of the offline evaluation, :func:`reloc_ros.eval.evaluate.summarize` with its
thresholds :data:`reloc_ros.eval.evaluate.THRESHOLDS` (median / mean translation and rotation
errors over the estimated frames, the share of *all* frames within each threshold, the
rejection rate); the share of poses whose 6-vector error
(:func:`reloc_ros.core.geometry.pose_error_vector`) lies inside the 95 % χ² region of the
published covariance (6 dof; translation and rotation alone, 3 dof). The poses on
``--initialpose-topic`` (default ``/initialpose``; "" to not listen) are matched to the
ground truth the same way and counted, with those more than
:data:`INITIALPOSE_WRONG_M` off: a wrong ``/initialpose`` teleports a robot. Latency (end to end): the pose's receive wall time minus the wall time at
which the replay handed the image with that stamp to DDS, taken from the replay's
``--timeline`` JSON Lines file (see :mod:`reloc_ros.tools.bag.replay`; both processes read the
same clock, ``time.time()``); without a timeline the latency is not measured. The
evaluator reads the timeline as it grows; a timeline whose run ended before the evaluator
started is stale and ignored until the replay starts a new one.

When it stops: after ``--duration`` seconds; with ``--until-idle S``, when no pose arrived
for S seconds after the replay ended (its timeline's ``end`` record; without a timeline:
S seconds after the last pose, once one arrived); on Ctrl-C (SIGINT) or SIGTERM. Both
options may be given (the first reached wins). Then it writes the report folder:

* ``per_frame.csv``: one row per counted frame (stamp, time, frame id, status ok /
  rejected, errors, latency, covariance traces, estimated and true positions);
* ``summary.md`` (the statistics table), ``summary.json`` (the same and the counts; what
  was not measured, such as the latency without a timeline, is null);
* ``trajectory.png`` (top view: the plane of the two main axes of the ground-truth
  trajectory, as in :mod:`reloc_ros.eval.evaluate`), ``errors_over_time.png``, ``cdf.png``.

Exit status: 0 when a report was written, 2 on a bad bag or option.

The metric definitions come from :mod:`reloc_ros.eval.evaluate`, which imports no torch at module
level; they are loaded before the subscription is created, so no pose is lost to the import.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node

from reloc_ros.core.calibration import chi2_shares, mahalanobis2
from reloc_ros.core.geometry import pose_error_vector, pose_errors
from reloc_ros.ros import messages as msgs
from reloc_ros.ros.shutdown import TEARDOWN_TIMEOUT_S, leave_if_hung, run_bounded, stop_on_signals
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.topics import BagFolderError, BagTopics, bag_folder
from reloc_ros.tools.cli import add_output_options, console_log
from reloc_ros.eval.report import fmt, json_text, markdown_table, pct, write_csv, write_json, write_summary

__all__ = [
    "DEFAULT_POSE_TOPIC",
    "EvaluatorError",
    "GroundTruth",
    "load_ground_truth",
    "TimelineReader",
    "EvalState",
    "OnlineEvaluator",
    "write_report",
    "run_evaluator",
    "main",
]

DEFAULT_POSE_TOPIC = "/relocalization_node/pose"
#: While running, frames whose image went out this long ago without a pose count as rejected.
PENDING_S = 1.0
DEFAULT_INITIALPOSE_TOPIC = "/initialpose"
#: An /initialpose further than this (m) from the ground truth is counted as wrong.
INITIALPOSE_WRONG_M = 0.5
_NS = 1_000_000_000


class EvaluatorError(RuntimeError):
    """The evaluation cannot run (missing bag, no ground truth, bad option)."""


def _metrics():
    """(THRESHOLDS, summarize) of the offline evaluation."""
    from reloc_ros.eval.evaluate import THRESHOLDS, summarize

    return THRESHOLDS, summarize


def _acc_key(t: float, r: float) -> str:
    from reloc_ros.eval.evaluate import acc_key

    return acc_key(t, r)


# --------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    """Ground-truth poses of a bag by stamp (ns), and the frame names where the bag has them."""

    poses: dict[int, np.ndarray]
    frame_ids: dict[int, str]
    source: str
    bag: str = ""

    @property
    def stamps(self) -> list[int]:
        return sorted(self.poses)

    def __len__(self) -> int:
        return len(self.poses)


def load_ground_truth(bag: Path | str, names: BagTopics | None = None) -> GroundTruth:
    """Read the ground truth of a reloc_ros bag: the ``gt_pose`` topic (PoseStamped in
    ``map_frame``), else the ``map_frame -> gt_frame`` transforms of ``tf``; the frame names
    of the ``frame_id`` topic (by stamp), when present."""
    from rosbags.rosbag2 import Reader

    names = names or BagTopics()
    try:
        path = bag_folder(bag)
    except BagFolderError as e:
        raise EvaluatorError(str(e)) from None
    store = msgs.rosbags_types().store
    poses: dict[int, np.ndarray] = {}
    frame_ids: dict[int, str] = {}
    try:
        with Reader(path) as reader:
            by_topic = {c.topic: c for c in reader.connections}
            conns = [c for c in reader.connections if c.topic in (names.gt_pose, names.frame_id)]
            source = names.gt_pose
            if names.gt_pose not in by_topic:
                if names.tf not in by_topic:
                    raise EvaluatorError(
                        f"{path}: no ground truth: neither {names.gt_pose} nor {names.tf} is in the bag"
                    )
                source = f"{names.tf} ({names.map_frame} -> {names.gt_frame})"
                conns += [c for c in reader.connections if c.topic == names.tf]
            for c, t, raw in reader.messages(connections=conns):
                msg = store.deserialize_cdr(raw, c.msgtype)
                if c.topic == names.gt_pose:
                    if msg.header.frame_id == names.map_frame:
                        poses[msgs.stamp_to_ns(msg.header.stamp)] = msgs.pose_to_matrix(msg)
                elif c.topic == names.frame_id:
                    # a String has no header: its bag (receive) time, which the converter
                    # sets to the frame's stamp
                    frame_ids.setdefault(t, msg.data)
                else:
                    for tr in msg.transforms:
                        if tr.header.frame_id == names.map_frame and tr.child_frame_id == names.gt_frame:
                            poses[msgs.stamp_to_ns(tr.header.stamp)] = msgs.transform_to_matrix(tr)
    except EvaluatorError:
        raise
    except Exception as e:  # rosbags' own errors for broken bags
        raise EvaluatorError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None
    if not poses:
        raise EvaluatorError(f"{path}: no ground-truth pose in {source}")
    return GroundTruth(poses, frame_ids, source, str(path))


# --------------------------------------------------------------------------- timeline
class TimelineReader:
    """Follows the replay's ``--timeline`` JSON Lines file as it grows (see
    :mod:`reloc_ros.tools.bag.replay`): image stamp -> publish wall times, and the end of the run.

    A run (from a ``start`` record) that ended before ``not_before`` (the evaluator's start)
    is stale and ignored; a new file (another run id on its first line) starts over.
    """

    def __init__(self, path: Path | str, not_before: float):
        self.path = Path(path)
        self.not_before = not_before
        self.run: str | None = None
        self.pos = 0
        self.stale = False
        self.publish: dict[int, list[float]] = {}
        self.order: list[int] = []
        self.start: dict | None = None
        self.end: dict | None = None

    def _reset(self, run: str | None) -> None:
        self.run, self.pos, self.stale = run, 0, False
        self.publish, self.order, self.start, self.end = {}, [], None, None

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                first = f.readline()
                if not first.endswith(b"\n"):
                    return
                try:
                    run = json.loads(first).get("run")
                except ValueError:
                    return
                if run != self.run:
                    self._reset(run)
                if self.stale:
                    return
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.pos += end + 1
        for line in data[: end + 1].splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            kind = r.get("type")
            if kind == "image":
                stamp = int(r["stamp_ns"])
                if stamp not in self.publish:
                    self.order.append(stamp)
                self.publish.setdefault(stamp, []).append(float(r["wall"]))
            elif kind == "start":
                self.start = r
            elif kind == "end":
                self.end = r
                if float(r["wall"]) < self.not_before:
                    self.stale = True
                    self.publish, self.order, self.start, self.end = {}, [], None, None

    @property
    def ended(self) -> bool:
        return self.end is not None

    def publish_wall(self, stamp: int, before: float) -> float | None:
        """Wall time of the latest publish of ``stamp`` at or before ``before``."""
        walls = [w for w in self.publish.get(stamp, ()) if w <= before]
        return max(walls) if walls else None


# --------------------------------------------------------------------------- state
@dataclass
class Estimate:
    stamp: int
    T: np.ndarray
    t_err: float
    r_err: float
    cov_trace: float
    cov_trace_xyz: float
    recv_wall: float
    d2: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # Mahalanobis²: 6-D, t, r


@dataclass
class EvalState:
    """Matching and statistics, without ROS: feed it poses with :meth:`add_pose`."""

    gt: GroundTruth
    map_frame: str = tp.FRAME_MAP
    timeline: TimelineReader | None = None
    estimates: dict[int, Estimate] = field(default_factory=dict)
    received: int = 0
    unmatched: int = 0
    duplicates: int = 0
    wrong_frame: int = 0
    last_pose_wall: float | None = None
    initialposes: list[dict] = field(default_factory=list)

    def add_initialpose(self, stamp: int, frame_id: str, T: np.ndarray) -> dict:
        """Record a pose seen on /initialpose: its errors (NaN when there is no ground truth
        at its stamp or it is in another frame)."""
        T_gt = self.gt.poses.get(stamp) if frame_id == self.map_frame else None
        te, re = (math.nan, math.nan) if T_gt is None else \
            (float(v) for v in pose_errors(np.asarray(T, dtype=np.float64), T_gt))
        rec = {"stamp_ns": stamp, "frame_id": frame_id, "t_err_m": te, "r_err_deg": re,
               "matched": T_gt is not None}
        self.initialposes.append(rec)
        return rec

    def add_pose(self, stamp: int, frame_id: str, T: np.ndarray, covariance: Sequence[float],
                 recv_wall: float) -> str:
        """Record an estimate; returns 'ok', 'unmatched', 'duplicate' or 'wrong_frame'."""
        self.received += 1
        self.last_pose_wall = recv_wall
        if frame_id != self.map_frame:
            self.wrong_frame += 1
            return "wrong_frame"
        T_gt = self.gt.poses.get(stamp)
        if T_gt is None:
            self.unmatched += 1
            return "unmatched"
        if stamp in self.estimates:
            self.duplicates += 1
            return "duplicate"
        te, re = (float(v) for v in pose_errors(np.asarray(T, dtype=np.float64), T_gt))
        cov = np.asarray(covariance, dtype=np.float64).reshape(-1)
        diag = np.diag(cov.reshape(6, 6)) if cov.size == 36 else np.full(6, np.nan)
        d2 = (math.nan,) * 3
        if cov.size == 36 and np.all(np.isfinite(cov)) and np.all(np.linalg.eigvalsh(cov.reshape(6, 6)) > 0):
            e6 = pose_error_vector(np.asarray(T, dtype=np.float64), T_gt)
            d2 = tuple(float(v) for v in mahalanobis2(e6, cov.reshape(6, 6))[0])
        self.estimates[stamp] = Estimate(stamp, np.asarray(T, dtype=np.float64), te, re,
                                         float(diag.sum()), float(diag[:3].sum()), recv_wall, d2)
        return "ok"

    # -- which frames count
    def expected(self, final: bool = True, now: float | None = None) -> list[int]:
        """Stamps of the frames that count (see the module docstring), sorted."""
        if self.timeline is not None:
            tl = self.timeline
            if final:
                stamps = [s for s in tl.publish if s in self.gt.poses]
            else:
                now = time.time() if now is None else now
                stamps = [s for s in tl.publish if s in self.gt.poses
                          and (s in self.estimates or min(tl.publish[s]) <= now - PENDING_S)]
            return sorted(stamps)
        if final:
            return self.gt.stamps
        if not self.estimates:
            return []
        newest = max(self.estimates)
        return [s for s in self.gt.stamps if s <= newest]

    def latency_ms(self, e: Estimate) -> float:
        if self.timeline is None:
            return float("nan")
        w = self.timeline.publish_wall(e.stamp, e.recv_wall)
        return (e.recv_wall - w) * 1e3 if w is not None else float("nan")

    # -- results
    def rows(self, final: bool = True) -> list[dict]:
        stamps = self.expected(final)
        t_first = stamps[0] if stamps else 0
        rows = []
        for s in stamps:
            e = self.estimates.get(s)
            g = self.gt.poses[s][:3, 3]
            row = {
                "stamp_ns": s,
                "time_s": (s - t_first) / _NS,
                "frame_id": self.gt.frame_ids.get(s, ""),
                "status": "ok" if e else "rejected",
                "t_err_m": e.t_err if e else float("nan"),
                "r_err_deg": e.r_err if e else float("nan"),
                "latency_ms": self.latency_ms(e) if e else float("nan"),
                "cov_trace": e.cov_trace if e else float("nan"),
                "cov_trace_xyz": e.cov_trace_xyz if e else float("nan"),
                "d2_6": e.d2[0] if e else float("nan"),
                "est_x": e.T[0, 3] if e else float("nan"),
                "est_y": e.T[1, 3] if e else float("nan"),
                "est_z": e.T[2, 3] if e else float("nan"),
                "gt_x": float(g[0]),
                "gt_y": float(g[1]),
                "gt_z": float(g[2]),
                "receive_wall": e.recv_wall if e else float("nan"),
            }
            rows.append(row)
        return rows

    def summary(self, final: bool = True, rows: list[dict] | None = None) -> dict:
        thresholds, summarize = _metrics()
        rows = self.rows(final) if rows is None else rows
        t = np.array([r["t_err_m"] for r in rows], dtype=float)
        r = np.array([r["r_err_deg"] for r in rows], dtype=float)
        s = summarize({"online": {"t": t, "r": r}}, len(rows))["online"]
        lat = np.array([row["latency_ms"] for row in rows], dtype=float)
        lat = lat[np.isfinite(lat)]
        cov = np.array([row["cov_trace"] for row in rows], dtype=float)
        cov = cov[np.isfinite(cov)]
        counted = {r["stamp_ns"] for r in rows}
        d2 = np.array([e.d2 for st, e in self.estimates.items() if st in counted], dtype=float).reshape(-1, 3)
        ip = self.initialposes
        ip_err = np.array([x["t_err_m"] for x in ip if x["matched"]], dtype=float)
        out = {
            "frames": len(rows),
            **s,
            "thresholds": [list(x) for x in thresholds],
            "latency_ms": {
                "count": int(lat.size),
                "median": float(np.median(lat)) if lat.size else float("nan"),
                "mean": float(lat.mean()) if lat.size else float("nan"),
                "p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "max": float(lat.max()) if lat.size else float("nan"),
            },
            "cov_trace_median": float(np.median(cov)) if cov.size else float("nan"),
            "chi2": chi2_shares(d2[np.all(np.isfinite(d2), 1)]),
            "initialpose": {"received": len(ip), "matched": int(ip_err.size),
                            "wrong": int(np.sum(ip_err > INITIALPOSE_WRONG_M)), "wrong_m": INITIALPOSE_WRONG_M,
                            "max_t_err_m": float(ip_err.max()) if ip_err.size else float("nan"),
                            "median_t_err_m": float(np.median(ip_err)) if ip_err.size else float("nan")},
            "poses_received": self.received,
            "unmatched": self.unmatched,
            "duplicates": self.duplicates,
            "wrong_frame": self.wrong_frame,
            "ground_truth_frames": len(self.gt),
            "ground_truth_source": self.gt.source,
            "timeline": str(self.timeline.path) if self.timeline is not None else None,
            "replay_ended": bool(self.timeline.ended) if self.timeline is not None else None,
        }
        return out


def progress_line(s: dict) -> str:
    thresholds = s["thresholds"]
    tt, rr = thresholds[1] if len(thresholds) > 1 else thresholds[0]
    lat = s["latency_ms"]
    return (
        f"evaluator: {s['accepted']}/{s['frames']} frames estimated, median {s['median_t_m']:.3f} m "
        f"{s['median_r_deg']:.2f}°, ≤{int(tt * 100)}cm,{int(rr)}°: {100 * s[_acc_key(tt, rr)]:.1f}%, "
        f"rejected {100 * s['rejection_rate']:.1f}%"
        + (f", latency median {lat['median']:.1f} ms" if lat["count"] else "")
        + (f" ({s['unmatched']} unmatched)" if s["unmatched"] else "")
    ) if s["frames"] else f"evaluator: waiting ({s['poses_received']} poses received)"


# --------------------------------------------------------------------------- report
def table_markdown(s: dict, title: str = "") -> str:
    """The statistics table (same columns as :func:`reloc_ros.eval.evaluate.table_markdown`,
    plus latency)."""
    thr = [tuple(x) for x in s["thresholds"]]
    head = ["pose topic", "median t (m)", "median r (°)", "mean t (m)", "mean r (°)"] + \
           [f"≤{int(t * 100)}cm,{int(r)}°" for t, r in thr] + ["rejected", "latency median (ms)"]
    cells = [s.get("pose_topic", "online"), fmt(s["median_t_m"]), fmt(s["median_r_deg"], ".2f"),
             fmt(s["mean_t_m"]), fmt(s["mean_r_deg"], ".2f")] + \
            [pct(s[_acc_key(t, r)]) for t, r in thr] + [pct(s["rejection_rate"]), fmt(s["latency_ms"]["median"], ".1f")]
    lat = s["latency_ms"]
    notes = [
        f"{s['frames']} frames ({'published by the replay' if s['timeline'] else 'all ground-truth frames of the bag'}), "
        f"{s['accepted']} estimated; ground truth: {s['ground_truth_source']}. "
        f"Poses received: {s['poses_received']} ({s['unmatched']} with no ground truth at their stamp, "
        f"{s['duplicates']} repeated, {s['wrong_frame']} in another frame).",
        (f"End-to-end latency (image publish to pose receive), ms: median {lat['median']:.1f}, "
         f"mean {lat['mean']:.1f}, p95 {lat['p95']:.1f}, max {lat['max']:.1f} ({lat['count']} poses)."
         if lat["count"] else "Latency not measured (no replay timeline)."),
    ]
    if math.isfinite(s["cov_trace_median"]):
        notes.append(f"Median covariance trace: {s['cov_trace_median']:.4g}.")
    c = s.get("chi2") or {}
    if c.get("n"):
        notes.append(f"Of the {c['n']} poses, {pct(c['within_chi2_6'])} lie inside the 95% χ²₆ region of their "
                     f"covariance (translation alone {pct(c['within_chi2_t3'])}, rotation alone "
                     f"{pct(c['within_chi2_r3'])}, χ²₃).")
    ip = s.get("initialpose")
    if ip is not None and (ip["received"] or s.get("initialpose_topic")):
        notes.append(f"{s.get('initialpose_topic') or '/initialpose'}: {ip['received']} received, {ip['matched']} "
                     f"matched to the ground truth, {ip['wrong']} more than {ip['wrong_m']:g} m off"
                     + (f" (median {ip['median_t_err_m']:.3f} m, max {ip['max_t_err_m']:.3f} m)"
                        if ip["matched"] else "") + ".")
    return markdown_table(head, [cells], title or None, notes)


def _main_plane(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 3x2 projection) onto the plane of the two main axes of ``xyz`` (as
    :func:`reloc_ros.eval.evaluate.plot` projects its top view)."""
    mu = xyz.mean(0)
    _, _, Vt = np.linalg.svd(xyz - mu, full_matrices=False)
    P = Vt[:2].T if Vt.shape[0] >= 2 else np.eye(3)[:, :2]
    return mu, P


def _segments(time_s: np.ndarray) -> list[slice]:
    """Runs of frames without a jump in time (a new sequence of the bag starts after a gap)."""
    if time_s.size < 2:
        return [slice(0, time_s.size)]
    dt = np.diff(time_s)
    gap = max(0.5, 5 * float(np.median(dt)))
    cuts = [0] + [i + 1 for i in np.flatnonzero(dt > gap)] + [time_s.size]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _legend(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def plot_report(rows: list[dict], s: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = np.array([r["status"] == "ok" for r in rows], dtype=bool)
    t = np.array([r["t_err_m"] for r in rows], dtype=float)
    rot = np.array([r["r_err_deg"] for r in rows], dtype=float)
    time_s = np.array([r["time_s"] for r in rows], dtype=float)
    gt = np.array([[r["gt_x"], r["gt_y"], r["gt_z"]] for r in rows], dtype=float).reshape(-1, 3)
    est = np.array([[r["est_x"], r["est_y"], r["est_z"]] for r in rows], dtype=float).reshape(-1, 3)
    thr = [tuple(x) for x in s["thresholds"]]
    title = f"{s.get('pose_topic', '')}: {s['accepted']}/{s['frames']} frames estimated"

    # -- trajectory (top view)
    fig, ax = plt.subplots(figsize=(7, 6))
    if len(gt) >= 2:
        mu, P = _main_plane(gt)
        g2 = (gt - mu) @ P
        for k, seg in enumerate(_segments(time_s)):
            ax.plot(g2[seg, 0], g2[seg, 1], "k-", lw=1, label="ground truth" if k == 0 else None)
        if (~ok).any():
            ax.plot(g2[~ok, 0], g2[~ok, 1], "x", color="0.5", ms=5, label=f"rejected ({int((~ok).sum())})")
        if ok.any():
            e2 = (est[ok] - mu) @ P
            for a, b in zip(g2[ok], e2):
                ax.plot([a[0], b[0]], [a[1], b[1]], "r-", lw=0.5, alpha=0.6)
            ax.plot(e2[:, 0], e2[:, 1], ".", color="C0", ms=4, label=f"estimate ({int(ok.sum())})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=8)
    ax.set_xlabel("m")
    ax.set_ylabel("m")
    ax.set_title("Top view (main plane of the ground-truth trajectory); red: error", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "trajectory.png", dpi=110)
    plt.close(fig)

    # -- errors over time
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for ax, v, label, lims in ((axes[0], t, "translation error (m)", sorted({x for x, _ in thr})),
                               (axes[1], rot, "rotation error (°)", sorted({y for _, y in thr}))):
        for k, seg in enumerate(_segments(time_s)):
            m = ok[seg]
            ax.plot(time_s[seg][m], v[seg][m], ".-", ms=3, lw=0.6, color="C0", label="estimate" if k == 0 else None)
        if (~ok).any():
            ax.plot(time_s[~ok], np.zeros(int((~ok).sum())), "|", color="C3", ms=10, label="rejected")
        top = float(np.nanmax(v[ok])) if ok.any() else 1.0
        shown = [lim for lim in lims if lim <= 2 * top]
        for lim in shown:
            ax.axhline(lim, color="0.6", lw=0.6, ls="--")
        ax.set_ylim(-0.04 * max([top] + shown), 1.35 * max([top] + shown))  # room for the legend
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=8, loc="upper right", ncol=2)
    axes[1].set_xlabel("time (s, from the first frame's stamp)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "errors_over_time.png", dpi=110)
    plt.close(fig)

    # -- CDFs (share of all frames: rejected frames never reach 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    n = max(1, len(rows))
    for ax, v, label, lims in ((axes[0], t, "translation error (m)", sorted({x for x, _ in thr})),
                               (axes[1], rot, "rotation error (°)", sorted({y for _, y in thr}))):
        vv = np.sort(v[ok])
        if vv.size:
            ax.step(vv, np.arange(1, vv.size + 1) / n, where="post", color="C0", label="estimate")
            if np.all(vv > 0):
                ax.set_xscale("log")
        for lim in lims:
            ax.axvline(lim, color="0.6", lw=0.6, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("share of frames")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, which="both")
    _legend(axes[0], fontsize=8)
    fig.suptitle(f"Error CDF ({100 * s['rejection_rate']:.1f}% rejected: never reaches 1); " + title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "cdf.png", dpi=120)
    plt.close(fig)


def write_report(state: EvalState, out: Path | str, title: str = "", extra: dict | None = None) -> dict:
    """Write per_frame.csv, summary.md, summary.json and the plots into ``out``; returns the summary."""
    out = Path(out)
    if state.timeline is not None:
        state.timeline.poll()
    rows = state.rows(final=True)
    s = state.summary(final=True, rows=rows)
    s.update(extra or {})
    write_summary(out, table_markdown(s, title), s)
    write_csv(out / "per_frame.csv", rows, list(rows[0]) if rows else ["stamp_ns"])
    plot_report(rows, s, out)
    return s


# --------------------------------------------------------------------------- the node
def _pose_qos(kind: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if kind not in ("reliable", "best_effort"):
        raise EvaluatorError(f"pose QoS must be 'reliable' or 'best_effort', got {kind!r}")
    rel = ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=100, reliability=rel)


class OnlineEvaluator(Node):
    """Subscribes to the pose topic and feeds an :class:`EvalState` (see the module docstring)."""

    def __init__(self, gt: GroundTruth, pose_topic: str = DEFAULT_POSE_TOPIC, *,
                 initialpose_topic: str = DEFAULT_INITIALPOSE_TOPIC,
                 timeline: Path | str | None = None, pose_qos: str = "reliable", progress_s: float = 5.0,
                 map_frame: str = tp.FRAME_MAP, log=None, context=None, node_name="reloc_online_evaluator"):
        super().__init__(node_name, context=context, start_parameter_services=False)
        _metrics()  # the slow import (torch) before subscribing: no pose is lost to it
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
        the replay runs (timeline) or before any pose (no timeline)."""
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

    def write_report(self, out: Path | str, title: str = "") -> dict:
        with self._lock:
            return write_report(self.state, out, title, {"pose_topic": self.pose_topic,
                                                        "initialpose_topic": self.initialpose_topic,
                                                        "bag": self.state.gt.bag,
                                                        "wall_s": time.time() - self.t_start})


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
    ``out`` and return its summary (``domain_id``: default ``$ROS_DOMAIN_ID``; ``teardown_timeout_s``: see
    :func:`reloc_ros.tools.bag.replay.run_bounded`)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    for name, v in (("duration", duration), ("until_idle", until_idle)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise EvaluatorError(f"{name} must be a positive number of seconds, got {v!r}")
    names = names or BagTopics()
    log = log or (lambda s: print(s, flush=True))
    gt = load_ground_truth(bag, names)
    stop = stop_event or threading.Event()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    try:
        node = OnlineEvaluator(gt, pose_topic, initialpose_topic=initialpose_topic, timeline=timeline, pose_qos=pose_qos, progress_s=progress_s,
                               map_frame=names.map_frame, log=log, context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        log(f"evaluating {pose_topic} against {len(gt)} ground-truth frames of {gt.bag} ({gt.source})"
            + (f", timeline {timeline}" if timeline else ""))
        reason = "stopped"
        while True:
            executor.spin_once(timeout_sec=0.1)
            if stop.is_set():
                reason = "interrupted"
                break
            if duration is not None and time.time() - node.t_start >= duration:
                reason = f"{duration:g} s elapsed"
                break
            if until_idle is not None:
                idle = node.idle_for()
                if idle is not None and idle >= until_idle:
                    reason = f"no pose for {until_idle:g} s" + (" after the replay ended" if timeline else "")
                    break
        node.destroy_subscription(node.sub)
        if node.sub_initial is not None:
            node.destroy_subscription(node.sub_initial)
        title = f"Online evaluation of {pose_topic} on {Path(gt.bag).name}"
        s = node.write_report(out, title)
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


# --------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.evaluate --bag BAG --out DIR ...``."""
    p = argparse.ArgumentParser(
        prog="python -m reloc_ros.tools.bag.evaluate",
        description="Evaluate the relocalization node's poses online against a bag's ground truth.",
    )
    p.add_argument("--bag", type=Path, required=True, help="the bag being replayed (ground truth source)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--pose-topic", default=DEFAULT_POSE_TOPIC,
                   help=f"PoseWithCovarianceStamped topic (default: {DEFAULT_POSE_TOPIC})")
    p.add_argument("--initialpose-topic", default=DEFAULT_INITIALPOSE_TOPIC,
                   help=f"also check the poses on this topic (default: {DEFAULT_INITIALPOSE_TOPIC}; '' for none)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--until-idle", type=float, metavar="S",
                   help="stop when no pose arrived for S seconds after the replay ended")
    p.add_argument("--timeline", type=Path, metavar="FILE",
                   help="the replay's --timeline file: latency, replay end, frames that count")
    p.add_argument("--pose-qos", choices=("reliable", "best_effort"), default="reliable",
                   help="QoS of the pose subscription (default: reliable)")
    p.add_argument("--remap", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"rename a bag topic or frame (fields: {', '.join(BagTopics.field_names())})")
    add_output_options(p)
    args = p.parse_args(argv)
    log = console_log(args.quiet)

    with stop_on_signals() as stop:
        try:
            names = BagTopics().with_overrides(args.remap)
            s = run_evaluator(args.bag, args.out, args.pose_topic, initialpose_topic=args.initialpose_topic,
                              duration=args.duration,
                              until_idle=args.until_idle, timeline=args.timeline, pose_qos=args.pose_qos,
                              names=names, progress_s=0 if args.quiet else args.progress, stop_event=stop,
                              log=log, teardown_timeout_s=TEARDOWN_TIMEOUT_S)
        except (EvaluatorError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(json_text(s))
    elif args.quiet:
        print(progress_line(s))
    leave_if_hung(s["teardown_ok"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
