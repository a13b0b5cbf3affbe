"""Replay, the timing side: due times, the simulated ``/clock``, the timeline file, lateness.

* :class:`Schedule`: when each message is due (against the start of the pass, so delays do
  not accumulate);
* :class:`SimClock`: sleeps until a due time, publishing ``rosgraph_msgs/Clock`` with the
  bag time meanwhile when asked to;
* :class:`TimelineWriter`: the ``--timeline`` JSON Lines file that the online evaluator reads;
* :func:`lateness_stats`: median, p95, max and mean of how late the publishes were.

The records of the timeline and the timing rules: :mod:`reloc_ros.tools.bag.replay`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["CLOCK_TOPIC", "CLOCK_TYPE", "Schedule", "SimClock", "TimelineWriter", "lateness_stats"]

CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
_NS = 1_000_000_000


class Schedule:
    """Due times: message ``t`` of a pass is due ``(t - begin) / rate`` after the pass origin;
    a new pass starts where the previous one's last message was due (no drift).

    Args:
        begin_ns: bag time at which a pass starts.
        rate: playback speed (2: twice as fast as recorded).
    """

    def __init__(self, begin_ns: int, rate: float):
        self.begin_ns, self.rate = begin_ns, rate
        self.origin: float | None = None
        self.last_due: float | None = None
        self.last_t: int | None = None
        self.cur_pass = 0
        self.covered_ns = 0  # bag time covered by the scheduled messages, summed over passes

    def due(self, k: int, t: int) -> float:
        """The ``time.perf_counter()`` at which the message of pass ``k`` with bag time ``t`` is due."""
        if self.origin is None:  # the schedule starts when the first message is at hand
            self.origin = time.perf_counter()
        if k != self.cur_pass:
            self.cur_pass = k
            self.origin = self.last_due if self.last_due is not None else time.perf_counter()
            self.last_t = None
        return self.origin + (t - self.begin_ns) / _NS / self.rate

    def published(self, due: float, t: int) -> None:
        """Record that the message with bag time ``t``, due at ``due``, went out."""
        self.last_due = due
        if self.last_t is not None:
            self.covered_ns += t - self.last_t
        self.last_t = t

    def bag_ns_at(self, wall: float) -> int:
        """The bag time at ``time.perf_counter()`` ``wall`` of the current pass."""
        return self.begin_ns + int((wall - (self.origin or wall)) * self.rate * _NS)


class SimClock:
    """Waits for due times; with a publisher, publishes the bag time on ``/clock`` meanwhile.

    Args:
        schedule: the replay's schedule (bag time at a wall time).
        stop: set it to stop waiting.
        publisher: an rclpy publisher of ``rosgraph_msgs/Clock`` on ``/clock``, or None.
        clock_cls: the ``rosgraph_msgs/msg/Clock`` class (with ``publisher``).
        hz: the rate of the ``/clock`` messages between due times.
    """

    def __init__(self, schedule: Schedule, stop: threading.Event, publisher=None, clock_cls=None, hz: float = 40.0):
        self.schedule, self.stop = schedule, stop
        self.publisher, self.clock_cls, self.period = publisher, clock_cls, 1.0 / hz

    def publish(self, bag_ns: int) -> None:
        """Publish ``bag_ns`` on ``/clock`` (nothing without a publisher)."""
        if self.publisher is None:
            return
        m = self.clock_cls()
        m.clock.sec, m.clock.nanosec = divmod(int(bag_ns), _NS)
        self.publisher.publish(m)

    def sleep_until(self, due: float) -> float:
        """Sleep until ``time.perf_counter()`` reaches ``due`` or the replay stops; returns the
        time it woke."""
        now = time.perf_counter()
        while now < due and not self.stop.is_set():
            if self.publisher is not None:
                self.publish(self.schedule.bag_ns_at(now))
                self.stop.wait(min(due - now, self.period))
            else:
                self.stop.wait(due - now)
            now = time.perf_counter()
        return now


class TimelineWriter:
    """Writer of the ``--timeline`` JSON Lines file (see :mod:`reloc_ros.tools.bag.replay`).

    Args:
        path: the file (replaced by a new one); None writes nothing.
    """

    def __init__(self, path: Path | str | None):
        self.f = None
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.unlink()  # a new file (new inode), so readers of an old one notice
            except FileNotFoundError:
                pass
            self.f = open(path, "w", encoding="utf-8")

    def write(self, **record) -> None:
        """Append one record (a flushed line)."""
        if self.f is not None:
            self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.f.flush()

    def close(self) -> None:
        """Close the file."""
        if self.f is not None:
            self.f.close()
            self.f = None


def lateness_stats(values: Sequence[float]) -> dict:
    """``median_ms``, ``p95_ms``, ``max_ms`` and ``mean_ms`` of lateness ``values`` (ms; NaN
    when there is none)."""
    if not len(values):
        return {"median_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan"), "mean_ms": float("nan")}
    v = np.asarray(values)
    return {
        "median_ms": float(np.median(v)),
        "p95_ms": float(np.percentile(v, 95)),
        "max_ms": float(v.max()),
        "mean_ms": float(v.mean()),
    }
