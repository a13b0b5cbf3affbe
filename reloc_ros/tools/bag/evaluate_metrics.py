"""Online evaluation, without ROS: the ground truth of a bag, the replay's timeline, and the
matching of estimates to ground-truth frames with their statistics.

* :func:`load_ground_truth` reads a bag's ground-truth poses (and frame names) by stamp;
* :class:`TimelineReader` follows the replay's ``--timeline`` file (image publish times);
* :class:`EvalState` matches estimated poses to the ground truth by exact stamp and
  computes the statistics (the metrics of :mod:`reloc_ros.eval.evaluate`).

Which frames count and how: :mod:`reloc_ros.tools.bag.evaluate`. The ROS listener that feeds
:class:`EvalState`: :mod:`reloc_ros.tools.bag.evaluate_node`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from rosbags.rosbag2 import Reader

from reloc_ros.core.calibration import chi2_shares, mahalanobis2
from reloc_ros.core.geometry import pose_error_vector, pose_errors
from reloc_ros.eval.metrics import THRESHOLDS, summarize
from reloc_ros.ros import messages as msgs
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.reading import BagFolderError, bag_folder
from reloc_ros.tools.bag.topics import BagTopics

__all__ = ["PENDING_S", "INITIALPOSE_WRONG_M", "EvaluatorError", "GroundTruth", "load_ground_truth",
           "TimelineReader", "Estimate", "EvalState"]

#: While running, frames whose image went out this long ago without a pose count as rejected.
PENDING_S = 1.0
#: An /initialpose further than this (m) from the ground truth is counted as wrong.
INITIALPOSE_WRONG_M = 0.5
_NS = 1_000_000_000


class EvaluatorError(RuntimeError):
    """The evaluation cannot run (missing bag, no ground truth, bad option)."""


# --------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    """Ground-truth poses of a bag by stamp, and the frame names where the bag has them.

    Attributes:
        poses: stamp (ns) -> 4x4 camera-to-map pose.
        frame_ids: stamp (ns) -> 7-Scenes frame name ("seq-01/frame-000000").
        source: where the poses came from (a topic, or the TF pair).
        bag: the bag folder.
    """

    poses: dict[int, np.ndarray]
    frame_ids: dict[int, str]
    source: str
    bag: str = ""

    @property
    def stamps(self) -> list[int]:
        """The ground-truth stamps, sorted."""
        return sorted(self.poses)

    def __len__(self) -> int:
        return len(self.poses)


def _read_ground_truth(reader, path: Path, names: BagTopics) -> GroundTruth:
    """The ground truth in an open bag (see :func:`load_ground_truth`).

    Args:
        reader: an open :class:`rosbags.rosbag2.Reader`.
        path: its folder (named in errors).
        names: the topic and frame names.
    """
    store = msgs.rosbags_types().store
    poses: dict[int, np.ndarray] = {}
    frame_ids: dict[int, str] = {}
    by_topic = {c.topic: c for c in reader.connections}
    conns = [c for c in reader.connections if c.topic in (names.gt_pose, names.frame_id)]
    source = names.gt_pose
    if names.gt_pose not in by_topic:
        if names.tf not in by_topic:
            raise EvaluatorError(f"{path}: no ground truth: neither {names.gt_pose} nor {names.tf} is in the bag")
        source = f"{names.tf} ({names.map_frame} -> {names.gt_frame})"
        conns += [c for c in reader.connections if c.topic == names.tf]
    for c, t, raw in reader.messages(connections=conns):
        msg = store.deserialize_cdr(raw, c.msgtype)
        if c.topic == names.gt_pose:
            if msg.header.frame_id == names.map_frame:
                poses[msgs.stamp_to_ns(msg.header.stamp)] = msgs.pose_to_matrix(msg)
        elif c.topic == names.frame_id:
            # a String has no header: its bag (receive) time, which the converter sets to
            # the frame's stamp
            frame_ids.setdefault(t, msg.data)
        else:
            for tr in msg.transforms:
                if tr.header.frame_id == names.map_frame and tr.child_frame_id == names.gt_frame:
                    poses[msgs.stamp_to_ns(tr.header.stamp)] = msgs.transform_to_matrix(tr)
    return GroundTruth(poses, frame_ids, source, str(path))


def load_ground_truth(bag: Path | str, names: BagTopics | None = None) -> GroundTruth:
    """Read the ground truth of a reloc_ros bag: the ``gt_pose`` topic (PoseStamped in
    ``map_frame``), else the ``map_frame -> gt_frame`` transforms of ``tf``; the frame names
    of the ``frame_id`` topic (by stamp), when present.

    Args:
        bag: the rosbag2 folder (or one of its files).
        names: the topic and frame names (default :class:`~reloc_ros.tools.bag.topics.BagTopics`).

    Raises:
        EvaluatorError: not a bag, an unreadable bag, or no ground-truth pose in it.
    """
    names = names or BagTopics()
    try:
        path = bag_folder(bag)
    except BagFolderError as e:
        raise EvaluatorError(str(e)) from None
    try:
        with Reader(path) as reader:
            gt = _read_ground_truth(reader, path, names)
    except EvaluatorError:
        raise
    except Exception as e:  # rosbags' own errors for broken bags
        raise EvaluatorError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None
    if not gt.poses:
        raise EvaluatorError(f"{path}: no ground-truth pose in {gt.source}")
    return gt


# --------------------------------------------------------------------------- timeline
class TimelineReader:
    """Follows the replay's ``--timeline`` JSON Lines file as it grows (see
    :mod:`reloc_ros.tools.bag.replay`): image stamp -> publish wall times, and the end of the run.

    A run (from a ``start`` record) that ended before ``not_before`` (the evaluator's start)
    is stale and ignored; a new file (another run id on its first line) starts over.

    Args:
        path: the timeline file (it may not exist yet).
        not_before: ``time.time()`` at the evaluator's start.
    """

    def __init__(self, path: Path | str, not_before: float):
        self.path = Path(path)
        self.not_before = not_before
        self._reset(None)

    def _reset(self, run: str | None) -> None:
        """Forget everything read; follow the run ``run``."""
        self.run, self.pos, self.stale = run, 0, False
        self.publish: dict[int, list[float]] = {}
        self.order: list[int] = []
        self.start: dict | None = None
        self.end: dict | None = None

    def _new_lines(self) -> bytes:
        """The complete lines added since the last poll (b"" when none, or the run is stale)."""
        try:
            with open(self.path, "rb") as f:
                first = f.readline()
                if not first.endswith(b"\n"):
                    return b""
                try:
                    run = json.loads(first).get("run")
                except ValueError:
                    return b""
                if run != self.run:
                    self._reset(run)
                if self.stale:
                    return b""
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n")
        if end < 0:
            return b""
        self.pos += end + 1
        return data[: end + 1]

    def poll(self) -> None:
        """Read the records added since the last poll."""
        for line in self._new_lines().splitlines():
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
        """The replay's ``end`` record was read."""
        return self.end is not None

    def publish_wall(self, stamp: int, before: float) -> float | None:
        """Wall time of the latest publish of the image ``stamp`` at or before ``before``."""
        walls = [w for w in self.publish.get(stamp, ()) if w <= before]
        return max(walls) if walls else None


# --------------------------------------------------------------------------- matching
@dataclass
class Estimate:
    """One estimate matched to the ground truth.

    Attributes:
        stamp: its stamp (ns).
        T: the estimated 4x4 camera-to-map pose.
        t_err, r_err: translation (m) and rotation (degrees) errors.
        cov_trace, cov_trace_xyz: trace of the published covariance, and of its position part.
        recv_wall: ``time.time()`` at reception.
        d2: Mahalanobis² of the error under the covariance: 6-D, translation, rotation.
    """

    stamp: int
    T: np.ndarray
    t_err: float
    r_err: float
    cov_trace: float
    cov_trace_xyz: float
    recv_wall: float
    d2: tuple[float, float, float] = (math.nan, math.nan, math.nan)


def _nan_stats(v: np.ndarray) -> dict:
    """count, median, mean, p95 and max of the finite values ``v`` (NaN when empty)."""
    nan = float("nan")
    return {"count": int(v.size), "median": float(np.median(v)) if v.size else nan,
            "mean": float(v.mean()) if v.size else nan, "p95": float(np.percentile(v, 95)) if v.size else nan,
            "max": float(v.max()) if v.size else nan}


@dataclass
class EvalState:
    """Matching and statistics, without ROS: feed it poses with :meth:`add_pose`.

    Attributes:
        gt: the ground truth.
        map_frame: the frame estimates must be in.
        timeline: the replay's timeline (which frames count, latency), or None.
        estimates: stamp -> the first estimate matched at it.
        received, unmatched, duplicates, wrong_frame: counts of the poses received.
        last_pose_wall: ``time.time()`` of the last pose received.
        initialposes: the poses seen on /initialpose, with their errors.
    """

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
        at its stamp or it is in another frame).

        Args:
            stamp: its header stamp (ns).
            frame_id: its header frame.
            T: the 4x4 pose.
        """
        T_gt = self.gt.poses.get(stamp) if frame_id == self.map_frame else None
        te, re = (math.nan, math.nan) if T_gt is None else \
            (float(v) for v in pose_errors(np.asarray(T, dtype=np.float64), T_gt))
        rec = {"stamp_ns": stamp, "frame_id": frame_id, "t_err_m": te, "r_err_deg": re,
               "matched": T_gt is not None}
        self.initialposes.append(rec)
        return rec

    def add_pose(self, stamp: int, frame_id: str, T: np.ndarray, covariance: Sequence[float],
                 recv_wall: float) -> str:
        """Record an estimate; returns 'ok', 'unmatched', 'duplicate' or 'wrong_frame'.

        Args:
            stamp: its header stamp (ns).
            frame_id: its header frame.
            T: the estimated 4x4 camera-to-map pose.
            covariance: the 36 entries of its 6x6 covariance (row-major).
            recv_wall: ``time.time()`` at reception.
        """
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
        T = np.asarray(T, dtype=np.float64)
        te, re = (float(v) for v in pose_errors(T, T_gt))
        cov = np.asarray(covariance, dtype=np.float64).reshape(-1)
        diag = np.diag(cov.reshape(6, 6)) if cov.size == 36 else np.full(6, np.nan)
        d2 = (math.nan,) * 3
        if cov.size == 36 and np.all(np.isfinite(cov)) and np.all(np.linalg.eigvalsh(cov.reshape(6, 6)) > 0):
            d2 = tuple(float(v) for v in mahalanobis2(pose_error_vector(T, T_gt), cov.reshape(6, 6))[0])
        self.estimates[stamp] = Estimate(stamp, T, te, re, float(diag.sum()), float(diag[:3].sum()), recv_wall, d2)
        return "ok"

    def expected(self, final: bool = True, now: float | None = None) -> list[int]:
        """Stamps of the frames that count (see :mod:`reloc_ros.tools.bag.evaluate`), sorted.

        Args:
            final: at the end (every published or ground-truth frame) or while running.
            now: ``time.time()`` while running (default: now).
        """
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
        """End-to-end latency of ``e`` (image publish to pose receive; NaN without a timeline)."""
        if self.timeline is None:
            return float("nan")
        w = self.timeline.publish_wall(e.stamp, e.recv_wall)
        return (e.recv_wall - w) * 1e3 if w is not None else float("nan")

    def _row(self, s: int, t_first: int) -> dict:
        """The per-frame row of the frame at stamp ``s`` (``t_first``: the first counted stamp)."""
        e = self.estimates.get(s)
        g = self.gt.poses[s][:3, 3]
        nan = float("nan")
        return {
            "stamp_ns": s, "time_s": (s - t_first) / _NS, "frame_id": self.gt.frame_ids.get(s, ""),
            "status": "ok" if e else "rejected", "t_err_m": e.t_err if e else nan,
            "r_err_deg": e.r_err if e else nan, "latency_ms": self.latency_ms(e) if e else nan,
            "cov_trace": e.cov_trace if e else nan, "cov_trace_xyz": e.cov_trace_xyz if e else nan,
            "d2_6": e.d2[0] if e else nan, "est_x": e.T[0, 3] if e else nan, "est_y": e.T[1, 3] if e else nan,
            "est_z": e.T[2, 3] if e else nan, "gt_x": float(g[0]), "gt_y": float(g[1]), "gt_z": float(g[2]),
            "receive_wall": e.recv_wall if e else nan,
        }

    def rows(self, final: bool = True) -> list[dict]:
        """One row per counted frame (``final``: see :meth:`expected`)."""
        stamps = self.expected(final)
        t_first = stamps[0] if stamps else 0
        return [self._row(s, t_first) for s in stamps]

    def _initialpose_summary(self) -> dict:
        """Counts and errors of the poses seen on /initialpose."""
        ip = self.initialposes
        err = np.array([x["t_err_m"] for x in ip if x["matched"]], dtype=float)
        return {"received": len(ip), "matched": int(err.size), "wrong": int(np.sum(err > INITIALPOSE_WRONG_M)),
                "wrong_m": INITIALPOSE_WRONG_M, "max_t_err_m": float(err.max()) if err.size else float("nan"),
                "median_t_err_m": float(np.median(err)) if err.size else float("nan")}

    def summary(self, final: bool = True, rows: list[dict] | None = None) -> dict:
        """The statistics of the counted frames.

        Args:
            final: see :meth:`expected`.
            rows: the rows, when already computed (default: :meth:`rows`).
        """
        rows = self.rows(final) if rows is None else rows
        t = np.array([r["t_err_m"] for r in rows], dtype=float)
        r = np.array([r["r_err_deg"] for r in rows], dtype=float)
        s = summarize({"online": {"t": t, "r": r}}, len(rows))["online"]
        lat = np.array([row["latency_ms"] for row in rows], dtype=float)
        cov = np.array([row["cov_trace"] for row in rows], dtype=float)
        cov = cov[np.isfinite(cov)]
        counted = {r["stamp_ns"] for r in rows}
        d2 = np.array([e.d2 for st, e in self.estimates.items() if st in counted], dtype=float).reshape(-1, 3)
        tl = self.timeline
        return {
            "frames": len(rows), **s, "thresholds": [list(x) for x in THRESHOLDS],
            "latency_ms": _nan_stats(lat[np.isfinite(lat)]),
            "cov_trace_median": float(np.median(cov)) if cov.size else float("nan"),
            "chi2": chi2_shares(d2[np.all(np.isfinite(d2), 1)]),
            "initialpose": self._initialpose_summary(),
            "poses_received": self.received, "unmatched": self.unmatched, "duplicates": self.duplicates,
            "wrong_frame": self.wrong_frame, "ground_truth_frames": len(self.gt),
            "ground_truth_source": self.gt.source,
            "timeline": str(tl.path) if tl is not None else None,
            "replay_ended": bool(tl.ended) if tl is not None else None,
        }
