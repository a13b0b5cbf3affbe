"""Replay, the core: open a bag, create the publishers, publish every message on schedule.

:class:`BagReplay` runs the stages (open, wait for subscribers, publish, await
acknowledgements, tear down); :func:`replay` is the function API. The bag is read by
:class:`~reloc_ros.tools.bag.replay_reader.Prefetch`, the timing is
:mod:`reloc_ros.tools.bag.replay_clock`'s. Behaviour (timing, QoS, waiting, the timeline):
:mod:`reloc_ros.tools.bag.replay`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.rosbag2 import Reader

from reloc_ros.ros.shutdown import run_bounded
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.reading import (
    BagFolderError,
    BagReadError,
    BagTopic,
    bag_folder,
    default_image_topic,
    header_stamp_ns,
    message_class,
    topics_of,
)
from reloc_ros.tools.bag.replay_clock import (
    CLOCK_TOPIC,
    CLOCK_TYPE,
    Schedule,
    SimClock,
    TimelineWriter,
    lateness_stats,
)
from reloc_ros.tools.bag.replay_reader import END_OF_PASS, Prefetch

__all__ = ["QOS_CHOICES", "DEFAULT_DEPTH", "SETTLE_S", "LATENESS_WINDOW", "ReplayError", "ReplayOptions",
           "BagReplay", "replay"]

QOS_CHOICES = ("reliable", "sensor")
DEFAULT_DEPTH = 100
#: Extra wait after the subscriber count is reached (the subscriber side of discovery).
SETTLE_S = 0.25
#: Lateness statistics (median, p95, mean) are over the last this many messages (max: all).
LATENESS_WINDOW = 200_000
_NS = 1_000_000_000


class ReplayError(BagReadError):
    """The bag cannot be replayed as asked (missing bag, unknown topic, bad option)."""


@dataclass
class ReplayOptions:
    """How to replay (see :mod:`reloc_ros.tools.bag.replay` and :func:`replay` for each field)."""

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
    #: called with the statistics (``teardown_ok`` None) once the work is done, before the DDS
    #: teardown, so that a teardown that hangs (and is ended by the watchdog) loses nothing
    on_done: Callable[[dict], None] | None = None

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


def _qos_profiles(kind: str, depth: int):
    """(normal profile, ``latched(n)`` -> profile, /clock profile).

    Args:
        kind: 'reliable' or 'sensor' (best effort), for the non-latched topics.
        depth: their keep-last depth.
    """
    reliability = ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT
    normal = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                        durability=DurabilityPolicy.VOLATILE)

    def latched(n: int):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, min(int(n), 100)),
                          reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

    clock = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
    return normal, latched, clock


def _read_bag(bag: Path | str, tf_static: str) -> tuple[Path, dict[str, BagTopic], int, int]:
    """(folder, topics, first and last message time in ns) of a bag that holds messages.

    Args:
        bag: the rosbag2 folder (or one of its files).
        tf_static: the static TF topic (always latched).

    Raises:
        ReplayError: not a bag folder, an unreadable bag, or one without messages.
    """
    try:
        path = bag_folder(bag)
        with Reader(path) as reader:
            bag_topics = topics_of(reader, tf_static)
            start, end, total = reader.start_time, reader.end_time, reader.message_count
    except (BagFolderError, BagReadError) as e:
        raise ReplayError(str(e)) from None
    except Exception as e:  # rosbags raises its own errors for broken bags
        raise ReplayError(f"{path}: cannot read the bag ({type(e).__name__}: {e})") from None
    if total == 0:
        raise ReplayError(f"{path}: the bag holds no message")
    return path, bag_topics, start, end


class _Tally:
    """What a replay published: messages and bytes per topic, images, lateness, first and
    last publish time (``time.perf_counter()``).

    Args:
        topics: the replayed topics.
    """

    def __init__(self, topics: Sequence[str]):
        self.counts = {t: 0 for t in topics}
        self.lateness: deque = deque(maxlen=LATENESS_WINDOW)
        self.late_max = float("-inf")
        self.nbytes = self.images = 0
        self.first_pub = self.last_pub = None

    def late(self, ms: float) -> None:
        """Record how late (ms) a scheduled publish was."""
        self.lateness.append(ms)
        self.late_max = max(self.late_max, ms)

    def published(self, topic: str, nbytes: int, started: float, image: bool) -> None:
        """Record a publish on ``topic`` of ``nbytes`` bytes that started at ``started``."""
        if self.first_pub is None:
            self.first_pub = started
        self.last_pub = time.perf_counter()
        self.counts[topic] += 1
        self.nbytes += nbytes
        self.images += int(image)

    def lateness_ms(self) -> dict:
        """Lateness statistics over the window, with the maximum over all messages."""
        return {**lateness_stats(list(self.lateness)), "max_ms": self.late_max if self.lateness else float("nan")}


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
        self.o = o = options or ReplayOptions()
        o.check()
        self.log = log or (lambda line: print(line, flush=True))
        self.stop = stop_event or threading.Event()  # set by the caller: stop publishing
        self.halt = threading.Event()  # set here when done: stops the reading thread
        self.node, self.own, self.domain_id, self.ctx = node, node is None, domain_id, None
        self.path, self.bag_topics, self.bag_start, self.bag_end = _read_bag(bag, o.names.tf_static)
        self.selected = self._select_topics()
        self.image_topic = self._image_topic()
        self.begin_ns = self.bag_start + int(round(o.start_offset * _NS))
        if self.begin_ns > self.bag_end:
            raise ReplayError(f"start offset {o.start_offset} s is past the end of the bag "
                              f"({(self.bag_end - self.bag_start) / _NS:.3f} s)")
        self.clock_cls = self._class_of(CLOCK_TYPE) if o.clock else None
        self.latched = {t for t in self.selected if self.bag_topics[t].latched}
        self.pubs: dict = {}
        self.clock_pub = None
        self.tally = _Tally(self.selected)
        self.loops_done = self.subscribers = 0
        self.waited = 0.0
        self.interrupted, self.acked = False, True
        self.schedule = Schedule(self.begin_ns, o.rate)
        self.clock = SimClock(self.schedule, self.stop)
        self._prefetch: Prefetch | None = None
        self._last_progress = 0.0

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def _class_of(msgtype: str):
        """The rclpy class of ``msgtype``; raises :class:`ReplayError`."""
        try:
            return message_class(msgtype)
        except BagReadError as e:
            raise ReplayError(str(e)) from None

    def _select_topics(self) -> list[str]:
        """The topics to replay: those asked (all by default) whose message class is installed."""
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
            except BagReadError as e:
                self.skipped.append(t)
                self.log(f"warning: {t} skipped: {e}")
        selected = [t for t in selected if t in self.classes]
        if not selected:
            raise ReplayError("no topic left to replay")
        return selected

    def _image_topic(self) -> str | None:
        """The image topic to wait on and to time (see :func:`default_image_topic`)."""
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
        if self.own:
            self.ctx = rclpy.Context()
            rclpy.init(context=self.ctx, domain_id=self.domain_id, signal_handler_options=SignalHandlerOptions.NO)
            self.node = rclpy.create_node("reloc_bag_replay", context=self.ctx, start_parameter_services=False)
        normal, latched, clock = _qos_profiles(self.o.qos, int(self.o.depth))
        for t in self.selected:
            prof = latched(self.bag_topics[t].count) if t in self.latched else normal
            self.pubs[t] = self.node.create_publisher(self.classes[t], t, prof)
        if self.o.clock:
            self.clock_pub = self.node.create_publisher(self.clock_cls, CLOCK_TOPIC, clock)
            self.clock = SimClock(self.schedule, self.stop, self.clock_pub, self.clock_cls, self.o.clock_hz)

    def _settle(self, t_wait: float) -> None:
        """Wait until no publisher's match count changed for :data:`SETTLE_S` (at most until
        ``wait_timeout`` after ``t_wait``)."""
        seen = [p.get_subscription_count() for p in self.pubs.values()]
        t_stable = time.perf_counter()
        while not self.stop.is_set() and time.perf_counter() - t_stable < SETTLE_S:
            self.stop.wait(0.01)
            now_seen = [p.get_subscription_count() for p in self.pubs.values()]
            if now_seen != seen:
                seen, t_stable = now_seen, time.perf_counter()
            if time.perf_counter() - t_wait > self.o.wait_timeout:
                break

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
                self._settle(t_wait)
            self.waited = time.perf_counter() - t_wait
        if self.image_topic is not None:
            self.subscribers = self.pubs[self.image_topic].get_subscription_count()

    # -- the schedule ----------------------------------------------------------------------
    def publish(self, timeline: TimelineWriter) -> None:
        """Publish every message at its due time, until the end or until stopped.

        Args:
            timeline: where the image publishes are recorded.
        """
        o = self.o
        self._prefetch = Prefetch(self.path, self.selected, self.latched, self.begin_ns, o.loop, o.max_loops,
                                  self.halt)
        self._prefetch.start()
        self._last_progress = time.perf_counter()
        timeline.write(type="start", run=uuid.uuid4().hex, bag=str(self.path), topic=self.image_topic, rate=o.rate,
                       start_offset=o.start_offset, loop=bool(o.loop), wall=time.time(), bag_begin_ns=self.begin_ns)
        self.log(f"replaying {self.path} ({len(self.selected)} topics, {(self.bag_end - self.begin_ns) / _NS:.2f} s "
                 f"of bag time) at {o.rate:g}x" + (f", from +{o.start_offset:g} s" if o.start_offset else "")
                 + (", looping" if o.loop else ""))
        for item in self._prefetch.items():
            if self.stop.is_set():
                break
            if item[0] == END_OF_PASS:
                self.loops_done = item[1] + 1
                continue
            if not self._publish_one(*item[1:], timeline):
                break
        self.interrupted = self.stop.is_set()

    def _publish_one(self, k: int, topic: str, t: int, raw: bytes, immediate: bool, timeline: TimelineWriter) -> bool:
        """Publish one message when due; False when stopped while waiting.

        Args:
            k: its pass.
            topic: its topic.
            t: its bag time (ns).
            raw: its CDR bytes.
            immediate: latched state from before the offset (at once, not scheduled).
            timeline: where an image publish is recorded.
        """
        due = self.schedule.due(k, t)
        if immediate:  # latched state from before the offset: at once, no clock
            now = time.perf_counter()
        else:
            now = self.clock.sleep_until(due)
            if self.stop.is_set():
                return False
            self.tally.late((now - due) * 1e3)
            self.schedule.published(due, t)
            self.clock.publish(t)
        wall = time.time()
        self.pubs[topic].publish(raw)
        self.tally.published(topic, len(raw), now, topic == self.image_topic)
        if topic == self.image_topic:
            stamp = header_stamp_ns(raw)
            timeline.write(type="image", stamp_ns=stamp if stamp is not None else t, bag_ns=t, wall=wall, loop=k)
        self._progress(k, t)
        return True

    def _progress(self, k: int, t: int) -> None:
        """A progress line every ``progress_s`` seconds (``k``: the pass, ``t``: the bag time)."""
        o, tally = self.o, self.tally
        if not o.progress_s or tally.last_pub - self._last_progress < o.progress_s:
            return
        self._last_progress = tally.last_pub
        late = lateness_stats(list(tally.lateness)[-2000:])
        span = (self.bag_end - self.bag_start) / _NS
        self.log(f"replay: {sum(tally.counts.values())} messages ({tally.images} images) published, "
                 f"pass {k + 1}, bag time +{(t - self.bag_start) / _NS:.2f} / {span:.2f} s, "
                 f"lateness median {late['median_ms']:.2f} ms, max {late['max_ms']:.2f} ms")

    def await_acks(self) -> None:
        """Let reliable subscribers catch up before the publishers go away."""
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
            timeline = TimelineWriter(self.o.timeline)
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
                timeline.write(type="end", wall=time.time(), interrupted=self.interrupted, images=self.tally.images)
                timeline.close()
            if self.o.on_done is not None:
                self.o.on_done(self.stats(None))
            teardown_ok = self.teardown()
        return self.stats(teardown_ok)

    def stats(self, teardown_ok: bool | None = True) -> dict:
        """The statistics described in :func:`replay` (``teardown_ok``: the teardown finished;
        None: not yet torn down)."""
        o, tally = self.o, self.tally
        wall_s = (tally.last_pub - tally.first_pub) if tally.first_pub is not None else 0.0
        bag_s = self.schedule.covered_ns / _NS
        return {
            "bag": str(self.path), "per_topic": tally.counts, "messages": int(sum(tally.counts.values())),
            "images": tally.images, "image_topic": self.image_topic, "wall_s": wall_s, "bag_s": bag_s,
            "rate": float(o.rate), "achieved_rate": bag_s / wall_s if wall_s > 0 else float("nan"),
            "lateness": tally.lateness_ms(),
            "bytes": tally.nbytes, "throughput_mb_s": tally.nbytes / 1e6 / wall_s if wall_s > 0 else float("nan"),
            "loops": self.loops_done, "interrupted": self.interrupted, "subscribers": self.subscribers,
            "waited_s": self.waited, "acked": self.acked, "skipped_topics": self.skipped,
            "start_offset": float(o.start_offset), "qos": o.qos, "depth": int(o.depth), "clock": bool(o.clock),
            "timeline": str(o.timeline) if o.timeline is not None else None, "teardown_ok": teardown_ok,
        }


def replay(bag: Path | str, rate: float = 1.0, start_offset: float = 0.0, loop: bool = False,
           topics: Sequence[str] | None = None, *, node=None, domain_id: int | None = None,
           stop_event: threading.Event | None = None, log=None, names: tp.BagTopics | None = None,
           **options) -> dict:
    """Publish the messages of a bag at their recorded timing (see :mod:`reloc_ros.tools.bag.replay`).

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
            :func:`~reloc_ros.tools.bag.reading.default_image_topic`), ``clock`` (also publish
            ``/clock``, at ``clock_hz`` between messages), ``timeline`` (JSON Lines file of the
            image topic), ``progress_s`` (a progress line every this many seconds; 0: never),
            ``ack_timeout_s`` (at the end, wait at most this long for reliable subscribers'
            acks), ``max_loops``, ``teardown_timeout_s`` (give up waiting for the DDS
            teardown after this many seconds; None: wait), ``on_done`` (called with the
            statistics before the teardown).

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
