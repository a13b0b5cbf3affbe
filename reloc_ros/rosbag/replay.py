"""Replay a ROS 2 bag with rclpy: the raw CDR bytes of every message, at the recorded timing.

Command line::

    python -m reloc_ros.rosbag.replay BAG [--rate 1.0] [--start-offset S] [--loop]
        [--topics T ...] [--qos reliable|sensor] [--depth 100]
        [--wait-subscribers N --wait-timeout S] [--image-topic T] [--clock [HZ]]
        [--timeline FILE] [--progress S] [--json] [--quiet]

    python -m reloc_ros.rosbag.replay chess_test --rate 2 --wait-subscribers 1 --timeline run.jsonl

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
default the colour image of :class:`~reloc_ros.rosbag.topics.BagTopics` or the first
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
online evaluator (:mod:`reloc_ros.rosbag.evaluator`) reads it to measure the node's end-to-end
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
10 s anyway (:func:`run_bounded`).

Function API: :func:`replay` (same options; publishes from a given node or from a private
node and context) returns the statistics as a dict.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import queue
import signal
import struct
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from reloc_ros.rosbag import topics as tp

__all__ = [
    "QOS_CHOICES",
    "DEFAULT_DEPTH",
    "ReplayError",
    "BagTopic",
    "open_bag_topics",
    "default_image_topic",
    "message_class",
    "header_stamp_ns",
    "run_bounded",
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
#: The command line gives up on a hung DDS teardown after this long (see :func:`run_bounded`).
TEARDOWN_TIMEOUT_S = 10.0
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
    p = Path(bag)
    if p.is_file() and (p.parent / "metadata.yaml").is_file():
        p = p.parent  # a file of the bag (metadata.yaml, *.mcap, *.db3): its folder
    if not p.is_dir():
        raise ReplayError(f"{p}: bag folder does not exist")
    if not (p / "metadata.yaml").is_file():
        raise ReplayError(f"{p}: not a rosbag2 folder (no metadata.yaml)")
    return p


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


# --------------------------------------------------------------------------- teardown
def run_bounded(fn, timeout_s: float | None, what: str = "teardown", log=None) -> bool:
    """Run ``fn()``; with a ``timeout_s``, in a daemon thread, and give up after that long.

    Returns True when ``fn`` finished. Used for the DDS teardown: Fast DDS may hang while
    deleting a participant that used its TCP transport (eProsima/Fast-DDS#2010; the
    ``LARGE_DATA`` builtin transports use TCP), and a command line tool that has done its
    work must not hang on it. A caller that gets False should leave with ``os._exit`` after
    flushing its output.
    """
    if timeout_s is None:
        fn()
        return True
    err: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            err.append(e)

    th = threading.Thread(target=target, name=what, daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        if log is not None:
            log(f"warning: {what} did not finish in {timeout_s:g} s (a known Fast DDS hang); leaving without it")
        return False
    if err:
        raise err[0]
    return True


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


def replay(
    bag: Path | str,
    rate: float = 1.0,
    start_offset: float = 0.0,
    loop: bool = False,
    topics: Sequence[str] | None = None,
    *,
    qos: str = "reliable",
    depth: int = DEFAULT_DEPTH,
    wait_subscribers: int = 0,
    wait_timeout: float = 30.0,
    image_topic: str | None = None,
    clock: bool = False,
    clock_hz: float = 40.0,
    timeline: Path | str | None = None,
    progress_s: float = 5.0,
    ack_timeout_s: float = 5.0,
    max_loops: int | None = None,
    teardown_timeout_s: float | None = None,
    stop_event: threading.Event | None = None,
    node=None,
    domain_id: int | None = None,
    names: tp.BagTopics | None = None,
    log=None,
) -> dict:
    """Publish the messages of a bag at their recorded timing (see the module docstring).

    Args:
        bag: the rosbag2 folder (mcap or sqlite3).
        rate: playback speed (2: twice as fast as recorded).
        start_offset: seconds of bag time to skip from the start (latched topics excepted).
        loop: start over at the end; ``max_loops`` bounds the number of passes (None: until
            stopped).
        topics: replay only these topics (default: all).
        qos: 'reliable' (keep last ``depth``) or 'sensor' (best effort) for non-latched topics.
        wait_subscribers: wait for this many subscriptions on the image topic first (at most
            ``wait_timeout`` s).
        image_topic: the topic to wait on and to write in the timeline (default:
            :func:`default_image_topic`).
        clock: also publish ``/clock`` with the bag time (at ``clock_hz`` between messages).
        timeline: write the JSON Lines timeline of the image topic to this file.
        progress_s: print a progress line every this many seconds (0: never).
        ack_timeout_s: at the end, wait at most this long for reliable subscribers' acks.
        teardown_timeout_s: give up waiting for the DDS teardown (publishers, node, context)
            after this many seconds (None: wait); ``teardown_ok`` in the result says whether
            it finished (see :func:`run_bounded`).
        stop_event: set it to stop the replay (from another thread or a signal handler).
        node: an rclpy node to publish from (its publishers are destroyed at the end);
            default: a private node in a private context (``domain_id``: its ROS domain,
            default ``$ROS_DOMAIN_ID``), shut down at the end.
        names: topic names (the tf_static and colour image names are used).
        log: ``log(str)`` for progress and warnings (default: print to stdout).

    Returns:
        Statistics: ``per_topic`` (messages published per topic), ``messages``, ``images``,
        ``wall_s`` (first to last publish), ``bag_s`` (bag time covered), ``rate``,
        ``achieved_rate`` (bag_s / wall_s), ``lateness`` (ms behind the schedule: max over
        all messages, median/p95/mean over the last ``LATENESS_WINDOW``), ``bytes``, ``throughput_mb_s``, ``loops``, ``interrupted``,
        ``subscribers`` (on the image topic at the start), ``waited_s``, ``acked``,
        ``skipped_topics`` and the options.

    Raises:
        ReplayError: missing bag, unknown topic, bad option.
    """
    import rclpy
    from rclpy.duration import Duration

    if not (rate > 0 and np.isfinite(rate)):
        raise ReplayError(f"rate must be a positive number, got {rate!r}")
    if not (start_offset >= 0 and np.isfinite(start_offset)):
        raise ReplayError(f"start offset must be >= 0 seconds, got {start_offset!r}")
    if qos not in QOS_CHOICES:
        raise ReplayError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {qos!r}")
    if int(depth) < 1:
        raise ReplayError(f"depth must be >= 1, got {depth}")
    if int(wait_subscribers) < 0:
        raise ReplayError(f"wait_subscribers must be >= 0, got {wait_subscribers}")
    if clock and not clock_hz > 0:
        raise ReplayError(f"clock rate must be positive, got {clock_hz}")
    log = log or (lambda s: print(s, flush=True))
    names = names or tp.BagTopics()
    stop = stop_event or threading.Event()  # set by the caller: stop publishing
    halt = threading.Event()  # set here when done: stops the reading thread

    from rosbags.rosbag2 import Reader

    path = _bag_dir(bag)
    try:
        with Reader(path) as reader:
            bag_topics = _topics_of(reader, names.tf_static)
            bag_start, bag_end = reader.start_time, reader.end_time
            total = reader.message_count
    except ReplayError:
        raise
    except Exception as e:
        raise ReplayError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None
    if total == 0:
        raise ReplayError(f"{path}: the bag holds no message")
    if topics:
        unknown = [t for t in topics if t not in bag_topics]
        if unknown:
            raise ReplayError(f"topic(s) not in the bag: {', '.join(unknown)}; the bag has: {', '.join(bag_topics)}")
        selected = [t for t in bag_topics if t in set(topics)]
    else:
        selected = list(bag_topics)
    classes, skipped = {}, []
    for t in selected:
        try:
            classes[t] = message_class(bag_topics[t].msgtype)
        except ReplayError as e:
            skipped.append(t)
            log(f"warning: {t} skipped: {e}")
    selected = [t for t in selected if t in classes]
    if not selected:
        raise ReplayError("no topic left to replay")
    if image_topic is None:
        image_topic = default_image_topic({t: bag_topics[t] for t in selected}, names)
    elif image_topic not in selected:
        raise ReplayError(f"image topic {image_topic} is not among the replayed topics")
    if wait_subscribers and image_topic is None:
        raise ReplayError("wait_subscribers needs an image topic, and the bag has none (pass image_topic)")
    begin_ns = bag_start + int(round(start_offset * _NS))
    if begin_ns > bag_end:
        raise ReplayError(f"start offset {start_offset} s is past the end of the bag ({(bag_end - bag_start) / _NS:.3f} s)")
    clock_cls = message_class(CLOCK_TYPE) if clock else None

    own = node is None
    ctx = None
    normal_qos, latched_qos, clock_qos = _qos_profiles(qos, int(depth))
    pubs, created = {}, []
    latched_topics = {t for t in selected if bag_topics[t].latched}
    timeline_w: _Timeline | None = None
    prefetch: _Prefetch | None = None
    counts = {t: 0 for t in selected}
    lateness: deque = deque(maxlen=LATENESS_WINDOW)
    late_max = float("-inf")
    nbytes = 0
    images = 0
    interrupted = False
    acked = True
    waited = 0.0
    subscribers = 0
    first_pub = last_pub = None
    covered_ns = 0  # bag time covered by the scheduled messages, summed over the passes
    loops_done = 0
    try:
        if own:
            from rclpy.signals import SignalHandlerOptions

            ctx = rclpy.Context()
            rclpy.init(context=ctx, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
            node = rclpy.create_node("reloc_bag_replay", context=ctx, start_parameter_services=False)
        for t in selected:
            prof = latched_qos(bag_topics[t].count) if t in latched_topics else normal_qos
            pubs[t] = node.create_publisher(classes[t], t, prof)
            created.append(pubs[t])
        clock_pub = node.create_publisher(clock_cls, CLOCK_TOPIC, clock_qos) if clock else None
        if clock_pub is not None:
            created.append(clock_pub)

        # ---- wait for subscribers
        if wait_subscribers:
            t_wait = time.perf_counter()
            pub = pubs[image_topic]
            log(f"waiting for {wait_subscribers} subscriber(s) on {image_topic} (at most {wait_timeout:g} s)")
            while pub.get_subscription_count() < wait_subscribers and not stop.is_set():
                if time.perf_counter() - t_wait > wait_timeout:
                    log(f"warning: only {pub.get_subscription_count()} subscriber(s) on {image_topic} after "
                        f"{wait_timeout:g} s; starting anyway")
                    break
                stop.wait(0.01)
            else:
                # The subscriber's other topics are discovered about now, and its side of the
                # discovery may lag: wait until no publisher's match count changed for SETTLE_S.
                seen = [p.get_subscription_count() for p in pubs.values()]
                t_stable = time.perf_counter()
                while not stop.is_set() and time.perf_counter() - t_stable < SETTLE_S:
                    stop.wait(0.01)
                    now_seen = [p.get_subscription_count() for p in pubs.values()]
                    if now_seen != seen:
                        seen, t_stable = now_seen, time.perf_counter()
                    if time.perf_counter() - t_wait > wait_timeout:
                        break
            waited = time.perf_counter() - t_wait
        if image_topic is not None:
            subscribers = pubs[image_topic].get_subscription_count()
        timeline_w = _Timeline(timeline)
        prefetch = _Prefetch(path, selected, latched_topics, begin_ns, loop, max_loops, halt)
        prefetch.start()

        pass_origin = None  # wall time (perf_counter) of bag time begin_ns in the current pass
        last_due = None
        last_t = None
        last_progress = time.perf_counter()
        cur_pass = 0
        span = lambda t: (t - begin_ns) / _NS / rate  # noqa: E731  (wall seconds after the pass origin)
        timeline_w.write(type="start", run=uuid.uuid4().hex, bag=str(path), topic=image_topic, rate=rate,
                         start_offset=start_offset, loop=bool(loop), wall=time.time(), bag_begin_ns=begin_ns)
        log(f"replaying {path} ({len(selected)} topics, {(bag_end - begin_ns) / _NS:.2f} s of bag time) "
            f"at {rate:g}x" + (f", from +{start_offset:g} s" if start_offset else "") + (", looping" if loop else ""))
        clock_period = 1.0 / clock_hz if clock else None

        def publish_clock(bag_ns: int) -> None:
            m = clock_cls()
            m.clock.sec, m.clock.nanosec = divmod(int(bag_ns), _NS)
            clock_pub.publish(m)

        for item in prefetch.items():
            if stop.is_set():
                break
            if item[0] == _END_OF_PASS:
                loops_done = item[1] + 1
                continue
            _, k, topic, t, raw, immediate = item
            if pass_origin is None:  # the schedule starts when the first message is at hand
                pass_origin = time.perf_counter()
            if k != cur_pass:  # a new pass starts where the last one ended
                cur_pass = k
                pass_origin = last_due if last_due is not None else time.perf_counter()
                last_t = None
            if immediate:
                due = now = time.perf_counter()
            else:
                due = pass_origin + span(t)
                now = time.perf_counter()
                while now < due and not stop.is_set():
                    if clock_pub is not None:
                        publish_clock(begin_ns + int((now - pass_origin) * rate * _NS))
                        stop.wait(min(due - now, clock_period))
                    else:
                        stop.wait(due - now)
                    now = time.perf_counter()
                if stop.is_set():
                    break
                lateness.append((now - due) * 1e3)
                late_max = max(late_max, lateness[-1])
                last_due = due
                if last_t is not None:
                    covered_ns += t - last_t
                last_t = t
            if clock_pub is not None and not immediate:  # latched state from before the offset: no clock
                publish_clock(t)
            wall = time.time()
            pubs[topic].publish(raw)
            if first_pub is None:
                first_pub = now
            last_pub = time.perf_counter()
            counts[topic] += 1
            nbytes += len(raw)
            if topic == image_topic:
                images += 1
                if timeline_w.f is not None:
                    stamp = header_stamp_ns(raw)
                    timeline_w.write(type="image", stamp_ns=stamp if stamp is not None else t, bag_ns=t,
                                     wall=wall, loop=k)
            if progress_s and last_pub - last_progress >= progress_s:
                last_progress = last_pub
                late = _lateness(list(lateness)[-2000:])
                log(f"replay: {sum(counts.values())} messages ({images} images) published, "
                    f"pass {k + 1}, bag time +{(t - bag_start) / _NS:.2f} / {(bag_end - bag_start) / _NS:.2f} s, "
                    f"lateness median {late['median_ms']:.2f} ms, max {late['max_ms']:.2f} ms")
        interrupted = stop.is_set()
        # ---- let reliable subscribers catch up before the publishers go away
        if not interrupted and ack_timeout_s > 0:
            deadline = time.perf_counter() + ack_timeout_s
            for t, pub in pubs.items():
                if t in latched_topics or qos == "reliable":
                    left = max(0.0, deadline - time.perf_counter())
                    ok = pub.wait_for_all_acked(Duration(nanoseconds=int(left * _NS)))
                    acked = acked and bool(ok)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        halt.set()
        if prefetch is not None:
            prefetch.join(timeout=5)
        if timeline_w is not None:
            timeline_w.write(type="end", wall=time.time(), interrupted=interrupted, images=images)
            timeline_w.close()

        def teardown() -> None:
            for p in created:
                try:
                    node.destroy_publisher(p)
                except Exception:  # noqa: BLE001  (the context may be gone already)
                    pass
            if own:
                if node is not None:
                    node.destroy_node()
                if ctx is not None and ctx.ok():
                    rclpy.shutdown(context=ctx)

        teardown_ok = run_bounded(teardown, teardown_timeout_s, "DDS teardown", log)
    wall_s = (last_pub - first_pub) if first_pub is not None else 0.0
    bag_s = covered_ns / _NS
    return {
        "bag": str(path),
        "per_topic": counts,
        "messages": int(sum(counts.values())),
        "images": images,
        "image_topic": image_topic,
        "wall_s": wall_s,
        "bag_s": bag_s,
        "rate": float(rate),
        "achieved_rate": bag_s / wall_s if wall_s > 0 else float("nan"),
        "lateness": {**_lateness(list(lateness)), "max_ms": late_max if lateness else float("nan")},
        "bytes": nbytes,
        "throughput_mb_s": nbytes / 1e6 / wall_s if wall_s > 0 else float("nan"),
        "loops": loops_done,
        "interrupted": interrupted,
        "subscribers": subscribers,
        "waited_s": waited,
        "acked": acked,
        "skipped_topics": skipped,
        "start_offset": float(start_offset),
        "qos": qos,
        "depth": int(depth),
        "clock": bool(clock),
        "timeline": str(timeline) if timeline is not None else None,
        "teardown_ok": teardown_ok,
    }


# --------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.rosbag.replay BAG ...``."""
    p = argparse.ArgumentParser(
        prog="python -m reloc_ros.rosbag.replay",
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
    p.add_argument("--progress", type=float, default=5.0, metavar="S",
                   help="print a progress line every S seconds (0: never; default: 5)")
    p.add_argument("--ack-timeout", type=float, default=5.0, metavar="S",
                   help="at the end, wait at most S s for reliable subscribers to acknowledge (default: 5)")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    def log(line: str) -> None:
        if line.startswith("warning"):
            print(line, file=sys.stderr, flush=True)
        elif not args.quiet:
            print(line, flush=True)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
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
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(json.dumps(stats, indent=2) if args.json else summary_line(stats), flush=True)
    if not stats["teardown_ok"]:
        sys.stderr.flush()
        os._exit(0)  # the work is done; a hung DDS thread must not keep the process alive
    return 0


if __name__ == "__main__":
    sys.exit(main())
