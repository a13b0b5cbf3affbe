"""Replay a ROS 2 bag with rclpy: the raw CDR bytes of every message, at the recorded timing.

Command line::

    python -m reloc_ros.tools.bag.replay BAG [--rate 1.0] [--start-offset S] [--loop]
        [--topics T ...] [--qos reliable|sensor] [--depth 100]
        [--wait-subscribers N --wait-timeout S] [--image-topic T] [--clock [HZ]]
        [--timeline FILE] [--progress S] [--json] [--quiet]

    python -m reloc_ros.tools.bag.replay chess_test --rate 2 --wait-subscribers 1 --timeline run.jsonl

This is the project's stand-in for ``ros2 bag play`` (which a full ROS 2 install has; the
pip-only environment has no ``rosbag2_py``). It reads rosbag2 folders (mcap or sqlite3)
with ``rosbags`` and publishes each message's serialized bytes unchanged
(``Publisher.publish(bytes)``, rclpy's ``publish_raw``) on its recorded topic and type. The
message classes come from the installed ROS message packages (``pkg/msg/Name`` ->
``pkg.msg.Name``); a topic whose package is missing is skipped with a warning.

Timing. Message ``i`` with bag (receive) time ``t_i`` is due at wall time
``w0 + (t_i - t_begin) / rate`` where ``t_begin`` is the bag's first message time plus
``--start-offset`` and ``w0`` the start of publishing: every message is scheduled against
the start, never against the previous one, so delays do not accumulate. The tool sleeps
until each due time and records how late each publish was (``lateness``). Messages before
``t_begin`` are skipped, except on latched topics (below), whose last state is published
at the start. ``--loop`` starts over (from the offset, latched topics included) when the
end is reached; the next pass is scheduled from the last message's due time.

QoS. ``/tf_static`` and every topic recorded with a transient-local offered QoS are
published reliable + transient local, keep last 1 (or the number of such messages in the
bag, when it holds several), so late subscribers still get them. The other topics are
published reliable, keep last ``--depth`` (100), or with ``--qos sensor`` best effort
(sensor data). Before exiting the tool waits (up to 5 s) until reliable subscribers have
acknowledged everything.

``--wait-subscribers N``: do not start before the image topic (``--image-topic``; by
default the colour image of :class:`~reloc_ros.tools.bag.topics.BagTopics` or the first
``sensor_msgs/Image`` / ``CompressedImage`` topic of the bag) has N matched subscriptions,
then until no publisher's match count changed for 0.25 s (the subscriber's other topics,
and its side of the discovery). After ``--wait-timeout`` seconds (default 30) it starts
anyway, with a warning. Only the image topic is waited on: on another topic of the same
subscriber, Fast DDS may still drop the first sample while images flood it (see the
comment in ``test/test_replay.py``).

``--clock [HZ]``: also publish ``rosgraph_msgs/Clock`` on ``/clock`` with the bag time,
before every message and at HZ (default 40) in between, for nodes run with
``use_sim_time``.

``--timeline FILE``: a JSON Lines file, written as the replay goes (one flushed line per
record), that maps the header stamps of the image topic to the wall time
(``time.time()``, seconds since the epoch) at which each image was handed to DDS. The
online evaluator (:mod:`reloc_ros.tools.bag.evaluate`) reads it to measure the node's end-to-end
latency (pose receive time minus image publish time; both processes must share a clock,
i.e. run on one machine or on NTP/PTP-synchronized machines). Records::

    {"type": "start", "run": "<uuid>", "bag": ..., "topic": <image topic>, "rate": ...,
     "start_offset": ..., "loop": false, "wall": <time.time() at the start>, "bag_begin_ns": ...}
    {"type": "image", "stamp_ns": <header stamp>, "bag_ns": <bag time>, "wall": ..., "loop": k}
    {"type": "end", "wall": ..., "interrupted": false, "images": n}

The file is replaced (a new one is created) at every run.

Progress: a line every ``--progress`` seconds (default 5; 0: none); at the end a summary
line (``--json``: the statistics as JSON). Ctrl-C (SIGINT) or SIGTERM stops the replay
cleanly: the summary is still printed and the exit status is 0. Should the DDS teardown
hang (Fast DDS with its TCP transport, eProsima/Fast-DDS#2010), the command leaves after
10 s anyway (:mod:`reloc_ros.ros.shutdown`).

Function API: :class:`BagReplay` (the stages: open, wait for subscribers, publish, await
acknowledgements, tear down) and :func:`replay` (same options; publishes from a given node
or from a private node and context), which return the statistics as a dict.
"""

from __future__ import annotations

import argparse
import importlib
import json
import queue
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from reloc_ros.ros.shutdown import TEARDOWN_TIMEOUT_S, leave_if_hung, run_bounded, stop_on_signals
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.cli import add_output_options, console_log

__all__ = [
    "QOS_CHOICES",
    "DEFAULT_DEPTH",
    "ReplayError",
    "BagTopic",
    "open_bag_topics",
    "default_image_topic",
    "message_class",
    "header_stamp_ns",
    "ReplayOptions",
    "BagReplay",
    "replay",
    "main",
]

QOS_CHOICES = ("reliable", "sensor")
DEFAULT_DEPTH = 100
IMAGE_TYPES = (tp.IMAGE, tp.COMPRESSED_IMAGE)
CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
#: Extra wait after the subscriber count is reached (the subscriber side of discovery).
SETTLE_S = 0.25
#: Lateness statistics (median, p95, mean) are over the last this many messages (max: all).
LATENESS_WINDOW = 200_000
#: Messages read ahead of the publisher by the reading thread.
PREFETCH = 64
_NS = 1_000_000_000


class ReplayError(RuntimeError):
    """The bag cannot be replayed as asked (missing bag, unknown topic, bad option)."""


# --------------------------------------------------------------------------- bag inspection
@dataclass(frozen=True)
class BagTopic:
    """A topic of a bag: name, type, number of messages, latched (transient local) or not."""

    name: str
    msgtype: str
    count: int
    latched: bool


def _bag_dir(bag: Path | str) -> Path:
    try:
        return tp.bag_folder(bag)
    except tp.BagFolderError as e:
        raise ReplayError(str(e)) from None


def _is_latched(conn, tf_static: str) -> bool:
    if conn.topic == tf_static:
        return True
    from rosbags.interfaces import QosDurability

    profiles = getattr(conn.ext, "offered_qos_profiles", None) or []
    return any(getattr(q, "durability", None) == QosDurability.TRANSIENT_LOCAL for q in profiles)


def open_bag_topics(bag: Path | str, tf_static: str = tp.TOPIC_TF_STATIC) -> dict[str, BagTopic]:
    """The topics of a bag (name -> :class:`BagTopic`), in the bag's order."""
    from rosbags.rosbag2 import Reader

    path = _bag_dir(bag)
    try:
        with Reader(path) as reader:
            return _topics_of(reader, tf_static)
    except ReplayError:
        raise
    except Exception as e:  # rosbags raises its own errors for broken bags
        raise ReplayError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None


def _topics_of(reader, tf_static: str) -> dict[str, BagTopic]:
    out: dict[str, BagTopic] = {}
    for c in reader.connections:
        prev = out.get(c.topic)
        if prev is not None and prev.msgtype != c.msgtype:
            raise ReplayError(f"topic {c.topic} has two types in the bag: {prev.msgtype} and {c.msgtype}")
        latched = _is_latched(c, tf_static) or (prev.latched if prev else False)
        out[c.topic] = BagTopic(c.topic, c.msgtype, (prev.count if prev else 0) + int(c.msgcount), latched)
    return out


def default_image_topic(bag_topics: dict[str, BagTopic], names: tp.BagTopics | None = None) -> str | None:
    """The image topic to wait on and to time: the colour image (raw, then compressed) of
    ``names``, else the first Image / CompressedImage topic of the bag, else None."""
    names = names or tp.BagTopics()
    for t in (names.color_image, names.color_compressed):
        if t in bag_topics and bag_topics[t].msgtype in IMAGE_TYPES:
            return t
    for t in bag_topics.values():
        if t.msgtype in IMAGE_TYPES:
            return t.name
    return None


def message_class(msgtype: str):
    """The rclpy message class of a type name ``pkg/msg/Name`` (``pkg/Name`` accepted)."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ReplayError(f"not a ROS message type name: {msgtype!r}")
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as e:
        raise ReplayError(f"no Python message class for {msgtype} ({e})") from None


def header_stamp_ns(raw: bytes) -> int | None:
    """The ``header.stamp`` (ns) of a CDR-serialized message that starts with a
    ``std_msgs/Header`` (Image, CompressedImage, CameraInfo, PoseStamped, ...); None when
    the bytes are too short or not plain CDR."""
    if len(raw) < 12 or raw[0] != 0:
        return None
    if raw[1] not in (0, 1):  # CDR_BE, CDR_LE
        return None
    sec, nsec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * _NS + nsec


# --------------------------------------------------------------------------- reading thread
_END_OF_PASS = "end_of_pass"
_DONE = "done"
_ERROR = "error"


class _Prefetch(threading.Thread):
    """Reads the bag ahead of the publisher into a bounded queue (one reader, own thread).

    Items: ``("msg", pass, topic, bag_ns, raw, immediate)``, ``(_END_OF_PASS, pass)``,
    ``(_DONE,)`` and ``(_ERROR, exception)``. ``immediate`` marks the latched messages
    before the start offset (published at the start of the pass, unscheduled).
    """

    def __init__(self, path: Path, topics: Iterable[str], latched: Iterable[str], begin_ns: int,
                 loop: bool, max_loops: int | None, stop: threading.Event):
        super().__init__(name="bag-prefetch", daemon=True)
        self.path, self.topics, self.latched = path, set(topics), set(latched)
        self.begin_ns, self.loop, self.max_loops, self.stop = begin_ns, loop, max_loops, stop
        self.q: queue.Queue = queue.Queue(maxsize=PREFETCH)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        from rosbags.rosbag2 import Reader

        try:
            with Reader(self.path) as reader:
                conns = [c for c in reader.connections if c.topic in self.topics]
                latched = [c for c in conns if c.topic in self.latched]
                k = 0
                while not self.stop.is_set():
                    if latched and self.begin_ns > reader.start_time:
                        for c, t, raw in reader.messages(connections=latched, stop=self.begin_ns):
                            if not self._put(("msg", k, c.topic, t, bytes(raw), True)):
                                return
                    if conns:
                        for c, t, raw in reader.messages(connections=conns, start=self.begin_ns):
                            if not self._put(("msg", k, c.topic, t, bytes(raw), False)):
                                return
                    if not self._put((_END_OF_PASS, k)):
                        return
                    k += 1
                    if not self.loop or (self.max_loops is not None and k >= self.max_loops):
                        break
            self._put((_DONE,))
        except BaseException as e:  # surfaced by the publishing loop
            self._put((_ERROR, e))

    def items(self):
        while True:
            try:
                item = self.q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return
                continue
            if item[0] == _DONE:
                return
            if item[0] == _ERROR:
                raise item[1]
            yield item


# --------------------------------------------------------------------------- timeline
class _Timeline:
    """Writer of the ``--timeline`` JSON Lines file (see the module docstring)."""

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
        if self.f is not None:
            self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


# --------------------------------------------------------------------------- statistics
def _lateness(values: list[float]) -> dict:
    if not values:
        return {"median_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan"), "mean_ms": float("nan")}
    v = np.asarray(values)
    return {
        "median_ms": float(np.median(v)),
        "p95_ms": float(np.percentile(v, 95)),
        "max_ms": float(v.max()),
        "mean_ms": float(v.mean()),
    }


def summary_line(s: dict) -> str:
    """One line describing :func:`replay` statistics."""
    late = s["lateness"]
    what = "interrupted" if s["interrupted"] else "done"
    return (
        f"replay {what}: {s['messages']} messages ({s['images']} images) on {len(s['per_topic'])} topics "
        f"in {s['wall_s']:.2f} s, {s['bag_s']:.2f} s of bag time (rate {s['achieved_rate']:.2f}x, asked "
        f"{s['rate']:g}x), {s['throughput_mb_s']:.1f} MB/s; lateness median {late['median_ms']:.2f} ms, "
        f"max {late['max_ms']:.2f} ms"
        + ("" if s["acked"] else "; NOT all acknowledged by reliable subscribers")
    )


# --------------------------------------------------------------------------- replay
def _qos_profiles(kind: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT
    normal = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                        durability=DurabilityPolicy.VOLATILE)

    def latched(n: int):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, min(int(n), 100)),
                          reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

    clock = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
    return normal, latched, clock


@dataclass
class ReplayOptions:
    """How to replay (see the module docstring and :func:`replay` for each field)."""

    rate: float = 1.0
    start_offset: float = 0.0
    loop: bool = False
    topics: Sequence[str] | None = None
    qos: str = "reliable"
    depth: int = DEFAULT_DEPTH
    wait_subscribers: int = 0
    wait_timeout: float = 30.0
    image_topic: str | None = None
    clock: bool = False
    clock_hz: float = 40.0
    timeline: Path | str | None = None
    progress_s: float = 5.0
    ack_timeout_s: float = 5.0
    max_loops: int | None = None
    teardown_timeout_s: float | None = None
    names: tp.BagTopics = field(default_factory=tp.BagTopics)

    def check(self) -> None:
        """Raise :class:`ReplayError` for a bad option."""
        if not (self.rate > 0 and np.isfinite(self.rate)):
            raise ReplayError(f"rate must be a positive number, got {self.rate!r}")
        if not (self.start_offset >= 0 and np.isfinite(self.start_offset)):
            raise ReplayError(f"start offset must be >= 0 seconds, got {self.start_offset!r}")
        if self.qos not in QOS_CHOICES:
            raise ReplayError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {self.qos!r}")
        if int(self.depth) < 1:
            raise ReplayError(f"depth must be >= 1, got {self.depth}")
        if int(self.wait_subscribers) < 0:
            raise ReplayError(f"wait_subscribers must be >= 0, got {self.wait_subscribers}")
        if self.clock and not self.clock_hz > 0:
            raise ReplayError(f"clock rate must be positive, got {self.clock_hz}")


class _Schedule:
    """Due times: message ``t`` of a pass is due ``(t - begin) / rate`` after the pass origin;
    a new pass starts where the previous one's last message was due (no drift)."""

    def __init__(self, begin_ns: int, rate: float):
        self.begin_ns, self.rate = begin_ns, rate
        self.origin: float | None = None
        self.last_due: float | None = None
        self.last_t: int | None = None
        self.cur_pass = 0
        self.covered_ns = 0  # bag time covered by the scheduled messages, summed over passes

    def due(self, k: int, t: int) -> float:
        if self.origin is None:  # the schedule starts when the first message is at hand
            self.origin = time.perf_counter()
        if k != self.cur_pass:
            self.cur_pass = k
            self.origin = self.last_due if self.last_due is not None else time.perf_counter()
            self.last_t = None
        return self.origin + (t - self.begin_ns) / _NS / self.rate

    def published(self, due: float, t: int) -> None:
        self.last_due = due
        if self.last_t is not None:
            self.covered_ns += t - self.last_t
        self.last_t = t

    def bag_ns_at(self, wall: float) -> int:
        return self.begin_ns + int((wall - (self.origin or wall)) * self.rate * _NS)


class BagReplay:
    """One replay of a bag, in stages: :meth:`open` (publishers), :meth:`wait_for_subscribers`,
    :meth:`publish` (the schedule), :meth:`await_acks`, :meth:`teardown`; :meth:`run` does
    them all and returns the statistics.

    Args:
        bag: the rosbag2 folder (mcap or sqlite3).
        options: :class:`ReplayOptions`.
        node: an rclpy node to publish from (its publishers are destroyed at the end);
            default: a private node in a private context (``domain_id``: its ROS domain,
            default ``$ROS_DOMAIN_ID``), shut down at the end.
        stop_event: set it to stop the replay (from another thread or a signal handler).
        log: ``log(str)`` for progress and warnings (default: print to stdout).

    Raises:
        ReplayError: missing bag, unknown topic, bad option (at construction).
    """

    def __init__(self, bag: Path | str, options: ReplayOptions | None = None, *, node=None,
                 domain_id: int | None = None, stop_event: threading.Event | None = None, log=None):
        from rosbags.rosbag2 import Reader

        self.o = o = options or ReplayOptions()
        o.check()
        self.log = log or (lambda line: print(line, flush=True))
        self.stop = stop_event or threading.Event()  # set by the caller: stop publishing
        self.halt = threading.Event()  # set here when done: stops the reading thread
        self.node, self.own, self.domain_id, self.ctx = node, node is None, domain_id, None
        self.path = _bag_dir(bag)
        try:
            with Reader(self.path) as reader:
                self.bag_topics = _topics_of(reader, o.names.tf_static)
                self.bag_start, self.bag_end, total = reader.start_time, reader.end_time, reader.message_count
        except ReplayError:
            raise
        except Exception as e:
            raise ReplayError(f"{self.path}: cannot read the bag ({type(e).__name__}: {e})") from None
        if total == 0:
            raise ReplayError(f"{self.path}: the bag holds no message")
        self.selected = self._select_topics()
        self.image_topic = self._image_topic()
        self.begin_ns = self.bag_start + int(round(o.start_offset * _NS))
        if self.begin_ns > self.bag_end:
            raise ReplayError(f"start offset {o.start_offset} s is past the end of the bag "
                              f"({(self.bag_end - self.bag_start) / _NS:.3f} s)")
        self.clock_cls = message_class(CLOCK_TYPE) if o.clock else None
        self.latched = {t for t in self.selected if self.bag_topics[t].latched}
        self.pubs: dict = {}
        self.clock_pub = None
        self.counts = {t: 0 for t in self.selected}
        self.lateness: deque = deque(maxlen=LATENESS_WINDOW)
        self.late_max = float("-inf")
        self.nbytes = self.images = self.loops_done = self.subscribers = 0
        self.waited = 0.0
        self.interrupted, self.acked = False, True
        self.first_pub = self.last_pub = None
        self.schedule = _Schedule(self.begin_ns, o.rate)

    # -- setup ---------------------------------------------------------------------------
    def _select_topics(self) -> list[str]:
        o, bt = self.o, self.bag_topics
        if o.topics:
            unknown = [t for t in o.topics if t not in bt]
            if unknown:
                raise ReplayError(f"topic(s) not in the bag: {', '.join(unknown)}; the bag has: {', '.join(bt)}")
            selected = [t for t in bt if t in set(o.topics)]
        else:
            selected = list(bt)
        self.classes, self.skipped = {}, []
        for t in selected:
            try:
                self.classes[t] = message_class(bt[t].msgtype)
            except ReplayError as e:
                self.skipped.append(t)
                self.log(f"warning: {t} skipped: {e}")
        selected = [t for t in selected if t in self.classes]
        if not selected:
            raise ReplayError("no topic left to replay")
        return selected

    def _image_topic(self) -> str | None:
        o = self.o
        topic = o.image_topic
        if topic is None:
            topic = default_image_topic({t: self.bag_topics[t] for t in self.selected}, o.names)
        elif topic not in self.selected:
            raise ReplayError(f"image topic {topic} is not among the replayed topics")
        if o.wait_subscribers and topic is None:
            raise ReplayError("wait_subscribers needs an image topic, and the bag has none (pass image_topic)")
        return topic

    def open(self) -> None:
        """Create the context (when private), the node and the publishers."""
        import rclpy

        if self.own:
            from rclpy.signals import SignalHandlerOptions

            self.ctx = rclpy.Context()
            rclpy.init(context=self.ctx, domain_id=self.domain_id, signal_handler_options=SignalHandlerOptions.NO)
            self.node = rclpy.create_node("reloc_bag_replay", context=self.ctx, start_parameter_services=False)
        normal, latched, clock = _qos_profiles(self.o.qos, int(self.o.depth))
        for t in self.selected:
            prof = latched(self.bag_topics[t].count) if t in self.latched else normal
            self.pubs[t] = self.node.create_publisher(self.classes[t], t, prof)
        if self.o.clock:
            self.clock_pub = self.node.create_publisher(self.clock_cls, CLOCK_TOPIC, clock)

    def wait_for_subscribers(self) -> None:
        """Wait for ``wait_subscribers`` matches on the image topic, then until no publisher's
        match count changed for :data:`SETTLE_S` (the subscriber's other topics)."""
        o, stop = self.o, self.stop
        if o.wait_subscribers:
            t_wait = time.perf_counter()
            pub = self.pubs[self.image_topic]
            self.log(f"waiting for {o.wait_subscribers} subscriber(s) on {self.image_topic} "
                     f"(at most {o.wait_timeout:g} s)")
            while pub.get_subscription_count() < o.wait_subscribers and not stop.is_set():
                if time.perf_counter() - t_wait > o.wait_timeout:
                    self.log(f"warning: only {pub.get_subscription_count()} subscriber(s) on {self.image_topic} "
                             f"after {o.wait_timeout:g} s; starting anyway")
                    break
                stop.wait(0.01)
            else:
                seen = [p.get_subscription_count() for p in self.pubs.values()]
                t_stable = time.perf_counter()
                while not stop.is_set() and time.perf_counter() - t_stable < SETTLE_S:
                    stop.wait(0.01)
                    now_seen = [p.get_subscription_count() for p in self.pubs.values()]
                    if now_seen != seen:
                        seen, t_stable = now_seen, time.perf_counter()
                    if time.perf_counter() - t_wait > o.wait_timeout:
                        break
            self.waited = time.perf_counter() - t_wait
        if self.image_topic is not None:
            self.subscribers = self.pubs[self.image_topic].get_subscription_count()

    # -- the schedule ----------------------------------------------------------------------
    def _publish_clock(self, bag_ns: int) -> None:
        m = self.clock_cls()
        m.clock.sec, m.clock.nanosec = divmod(int(bag_ns), _NS)
        self.clock_pub.publish(m)

    def _sleep_until(self, due: float) -> float:
        """Sleep until ``due`` (publishing /clock meanwhile); returns the time it woke."""
        period = 1.0 / self.o.clock_hz
        now = time.perf_counter()
        while now < due and not self.stop.is_set():
            if self.clock_pub is not None:
                self._publish_clock(self.schedule.bag_ns_at(now))
                self.stop.wait(min(due - now, period))
            else:
                self.stop.wait(due - now)
            now = time.perf_counter()
        return now

    def publish(self, timeline: _Timeline) -> None:
        """Publish every message at its due time, until the end or until stopped."""
        o, bag_start, bag_end = self.o, self.bag_start, self.bag_end
        prefetch = _Prefetch(self.path, self.selected, self.latched, self.begin_ns, o.loop, o.max_loops, self.halt)
        prefetch.start()
        self._prefetch = prefetch
        last_progress = time.perf_counter()
        timeline.write(type="start", run=uuid.uuid4().hex, bag=str(self.path), topic=self.image_topic, rate=o.rate,
                       start_offset=o.start_offset, loop=bool(o.loop), wall=time.time(), bag_begin_ns=self.begin_ns)
        self.log(f"replaying {self.path} ({len(self.selected)} topics, {(bag_end - self.begin_ns) / _NS:.2f} s of "
                 f"bag time) at {o.rate:g}x" + (f", from +{o.start_offset:g} s" if o.start_offset else "")
                 + (", looping" if o.loop else ""))
        for item in prefetch.items():
            if self.stop.is_set():
                break
            if item[0] == _END_OF_PASS:
                self.loops_done = item[1] + 1
                continue
            _, k, topic, t, raw, immediate = item
            due = self.schedule.due(k, t)
            if immediate:  # latched state from before the offset: at once, no clock
                now = time.perf_counter()
            else:
                now = self._sleep_until(due)
                if self.stop.is_set():
                    break
                self.lateness.append((now - due) * 1e3)
                self.late_max = max(self.late_max, self.lateness[-1])
                self.schedule.published(due, t)
                if self.clock_pub is not None:
                    self._publish_clock(t)
            wall = time.time()
            self.pubs[topic].publish(raw)
            if self.first_pub is None:
                self.first_pub = now
            self.last_pub = time.perf_counter()
            self.counts[topic] += 1
            self.nbytes += len(raw)
            if topic == self.image_topic:
                self.images += 1
                stamp = header_stamp_ns(raw)
                timeline.write(type="image", stamp_ns=stamp if stamp is not None else t, bag_ns=t, wall=wall, loop=k)
            if o.progress_s and self.last_pub - last_progress >= o.progress_s:
                last_progress = self.last_pub
                late = _lateness(list(self.lateness)[-2000:])
                self.log(f"replay: {sum(self.counts.values())} messages ({self.images} images) published, "
                         f"pass {k + 1}, bag time +{(t - bag_start) / _NS:.2f} / {(bag_end - bag_start) / _NS:.2f} s, "
                         f"lateness median {late['median_ms']:.2f} ms, max {late['max_ms']:.2f} ms")
        self.interrupted = self.stop.is_set()

    def await_acks(self) -> None:
        """Let reliable subscribers catch up before the publishers go away."""
        from rclpy.duration import Duration

        if self.interrupted or self.o.ack_timeout_s <= 0:
            return
        deadline = time.perf_counter() + self.o.ack_timeout_s
        for t, pub in self.pubs.items():
            if t in self.latched or self.o.qos == "reliable":
                left = max(0.0, deadline - time.perf_counter())
                self.acked = bool(pub.wait_for_all_acked(Duration(nanoseconds=int(left * _NS)))) and self.acked

    def teardown(self) -> bool:
        """Destroy the publishers (and the private node and context); False when the DDS
        teardown did not finish within ``teardown_timeout_s`` (see :func:`run_bounded`)."""
        import rclpy

        def destroy() -> None:
            for p in [*self.pubs.values(), *([self.clock_pub] if self.clock_pub is not None else [])]:
                try:
                    self.node.destroy_publisher(p)
                except Exception:  # noqa: BLE001  (the context may be gone already)
                    pass
            if self.own:
                if self.node is not None:
                    self.node.destroy_node()
                if self.ctx is not None and self.ctx.ok():
                    rclpy.shutdown(context=self.ctx)

        return run_bounded(destroy, self.o.teardown_timeout_s, "DDS teardown", self.log)

    # -- all of it -------------------------------------------------------------------------
    def run(self) -> dict:
        """Open, wait, publish, await acknowledgements, tear down; returns :meth:`stats`."""
        timeline = None
        self._prefetch = None
        try:
            self.open()
            self.wait_for_subscribers()
            timeline = _Timeline(self.o.timeline)
            self.publish(timeline)
            self.await_acks()
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        finally:
            self.halt.set()
            if self._prefetch is not None:
                self._prefetch.join(timeout=5)
            if timeline is not None:
                timeline.write(type="end", wall=time.time(), interrupted=self.interrupted, images=self.images)
                timeline.close()
            teardown_ok = self.teardown()
        return self.stats(teardown_ok)

    def stats(self, teardown_ok: bool = True) -> dict:
        """The statistics described in :func:`replay`."""
        o = self.o
        wall_s = (self.last_pub - self.first_pub) if self.first_pub is not None else 0.0
        bag_s = self.schedule.covered_ns / _NS
        return {
            "bag": str(self.path), "per_topic": self.counts, "messages": int(sum(self.counts.values())),
            "images": self.images, "image_topic": self.image_topic, "wall_s": wall_s, "bag_s": bag_s,
            "rate": float(o.rate), "achieved_rate": bag_s / wall_s if wall_s > 0 else float("nan"),
            "lateness": {**_lateness(list(self.lateness)), "max_ms": self.late_max if self.lateness else float("nan")},
            "bytes": self.nbytes, "throughput_mb_s": self.nbytes / 1e6 / wall_s if wall_s > 0 else float("nan"),
            "loops": self.loops_done, "interrupted": self.interrupted, "subscribers": self.subscribers,
            "waited_s": self.waited, "acked": self.acked, "skipped_topics": self.skipped,
            "start_offset": float(o.start_offset), "qos": o.qos, "depth": int(o.depth), "clock": bool(o.clock),
            "timeline": str(o.timeline) if o.timeline is not None else None, "teardown_ok": teardown_ok,
        }


def replay(bag: Path | str, rate: float = 1.0, start_offset: float = 0.0, loop: bool = False,
           topics: Sequence[str] | None = None, *, node=None, domain_id: int | None = None,
           stop_event: threading.Event | None = None, log=None, names: tp.BagTopics | None = None,
           **options) -> dict:
    """Publish the messages of a bag at their recorded timing (see the module docstring).

    Args:
        bag: the rosbag2 folder (mcap or sqlite3).
        rate: playback speed (2: twice as fast as recorded).
        start_offset: seconds of bag time to skip from the start (latched topics excepted).
        loop: start over at the end; ``max_loops`` bounds the number of passes (None: until
            stopped).
        topics: replay only these topics (default: all).
        node, domain_id, stop_event, log: see :class:`BagReplay`.
        names: topic names (the tf_static and colour image names are used).
        options: the other fields of :class:`ReplayOptions`: ``qos`` ('reliable', keep last
            ``depth``, or 'sensor', best effort, for non-latched topics), ``wait_subscribers``
            (wait for this many subscriptions on the image topic first, at most
            ``wait_timeout`` s), ``image_topic`` (to wait on and to time; default
            :func:`default_image_topic`), ``clock`` (also publish ``/clock``, at ``clock_hz``
            between messages), ``timeline`` (JSON Lines file of the image topic),
            ``progress_s`` (a progress line every this many seconds; 0: never),
            ``ack_timeout_s`` (at the end, wait at most this long for reliable subscribers'
            acks), ``max_loops``, ``teardown_timeout_s`` (give up waiting for the DDS
            teardown after this many seconds; None: wait).

    Returns:
        Statistics: ``per_topic`` (messages published per topic), ``messages``, ``images``,
        ``wall_s`` (first to last publish), ``bag_s`` (bag time covered), ``rate``,
        ``achieved_rate`` (bag_s / wall_s), ``lateness`` (ms behind the schedule: max over
        all messages, median/p95/mean over the last ``LATENESS_WINDOW``), ``bytes``,
        ``throughput_mb_s``, ``loops``, ``interrupted``, ``subscribers`` (on the image topic
        at the start), ``waited_s``, ``acked``, ``skipped_topics``, ``teardown_ok`` and the
        options.

    Raises:
        ReplayError: missing bag, unknown topic, bad option.
    """
    opts = ReplayOptions(rate=rate, start_offset=start_offset, loop=loop, topics=topics,
                         names=names or tp.BagTopics(), **options)
    return BagReplay(bag, opts, node=node, domain_id=domain_id, stop_event=stop_event, log=log).run()


# --------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.replay BAG ...``."""
    p = argparse.ArgumentParser(
        prog="python -m reloc_ros.tools.bag.replay",
        description="Replay a ROS 2 bag (mcap or sqlite3) with rclpy at the recorded timing (raw CDR bytes).",
    )
    p.add_argument("bag", type=Path, help="rosbag2 folder")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1)")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                   help="skip the first S seconds of bag time (latched topics are still published)")
    p.add_argument("--loop", action="store_true", help="start over at the end, until stopped")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="replay only these topics")
    p.add_argument("--qos", choices=QOS_CHOICES, default="reliable",
                   help="QoS of non-latched topics: reliable keep-last DEPTH or sensor (best effort)")
    p.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="history depth (default: 100)")
    p.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="wait for N subscriptions on the image topic before starting")
    p.add_argument("--wait-timeout", type=float, default=30.0, metavar="S",
                   help="start anyway after S seconds of waiting (default: 30)")
    p.add_argument("--image-topic", help="topic to wait on and to time (default: the colour image)")
    p.add_argument("--clock", nargs="?", type=float, const=40.0, default=None, metavar="HZ",
                   help="publish /clock with the bag time (default 40 Hz between messages)")
    p.add_argument("--timeline", type=Path, metavar="FILE",
                   help="write image stamps -> publish wall times (JSON Lines) for the evaluator")
    p.add_argument("--ack-timeout", type=float, default=5.0, metavar="S",
                   help="at the end, wait at most S s for reliable subscribers to acknowledge (default: 5)")
    add_output_options(p, json_help="print the statistics as JSON")
    args = p.parse_args(argv)
    log = console_log(args.quiet)

    with stop_on_signals() as stop:
        try:
            stats = replay(
                args.bag, rate=args.rate, start_offset=args.start_offset, loop=args.loop, topics=args.topics,
                qos=args.qos, depth=args.depth, wait_subscribers=args.wait_subscribers,
                wait_timeout=args.wait_timeout, image_topic=args.image_topic, clock=args.clock is not None,
                clock_hz=args.clock or 40.0, timeline=args.timeline, progress_s=0 if args.quiet else args.progress,
                ack_timeout_s=args.ack_timeout, stop_event=stop, log=log, teardown_timeout_s=TEARDOWN_TIMEOUT_S,
            )
        except ReplayError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(stats, indent=2) if args.json else summary_line(stats), flush=True)
    leave_if_hung(stats["teardown_ok"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
