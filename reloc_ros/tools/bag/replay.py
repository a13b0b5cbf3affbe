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
line (``--json``: the statistics as JSON), printed before the DDS teardown. Ctrl-C (SIGINT)
or SIGTERM stops the replay cleanly: the summary is still printed and the exit status is 0. Should the DDS teardown
hang (Fast DDS with its TCP transport, eProsima/Fast-DDS#2010), the command leaves after
10 s anyway (:mod:`reloc_ros.ros.shutdown`).

Function API: :class:`~reloc_ros.tools.bag.replay_core.BagReplay` (the stages: open, wait
for subscribers, publish, await acknowledgements, tear down) and
:func:`~reloc_ros.tools.bag.replay_core.replay` (same options; publishes from a given node or
from a private node and context), which return the statistics as a dict.

This module is the command line. Beside it: :mod:`~reloc_ros.tools.bag.replay_core` (the
publishers and the stages), :mod:`~reloc_ros.tools.bag.replay_reader` (the thread reading the
bag ahead), :mod:`~reloc_ros.tools.bag.replay_clock` (due times, ``/clock``, the timeline
file) and :mod:`~reloc_ros.tools.bag.reading` (the bag's topics and types).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from reloc_ros.ros.shutdown import TEARDOWN_TIMEOUT_S, leave_if_hung, stop_on_signals
from reloc_ros.tools.bag.reading import (
    BagTopic,
    default_image_topic,
    header_stamp_ns,
    message_class,
    open_bag_topics,
)
from reloc_ros.tools.bag.replay_core import (
    DEFAULT_DEPTH,
    QOS_CHOICES,
    BagReplay,
    ReplayError,
    ReplayOptions,
    replay,
)
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
    "summary_line",
    "build_parser",
    "main",
]


def summary_line(s: dict) -> str:
    """One line describing the statistics ``s`` of :func:`~reloc_ros.tools.bag.replay_core.replay`."""
    late = s["lateness"]
    what = "interrupted" if s["interrupted"] else "done"
    return (
        f"replay {what}: {s['messages']} messages ({s['images']} images) on {len(s['per_topic'])} topics "
        f"in {s['wall_s']:.2f} s, {s['bag_s']:.2f} s of bag time (rate {s['achieved_rate']:.2f}x, asked "
        f"{s['rate']:g}x), {s['throughput_mb_s']:.1f} MB/s; lateness median {late['median_ms']:.2f} ms, "
        f"max {late['max_ms']:.2f} ms"
        + ("" if s["acked"] else "; NOT all acknowledged by reliable subscribers")
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments (see the module docstring)."""
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.replay BAG ...``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 (also when stopped by SIGINT / SIGTERM), or 2 on a bad bag or option (one
        ``error:`` line on stderr).
    """
    args = build_parser().parse_args(argv)
    log = console_log(args.quiet)
    with stop_on_signals() as stop:
        try:
            stats = replay(
                args.bag, rate=args.rate, start_offset=args.start_offset, loop=args.loop, topics=args.topics,
                qos=args.qos, depth=args.depth, wait_subscribers=args.wait_subscribers,
                wait_timeout=args.wait_timeout, image_topic=args.image_topic, clock=args.clock is not None,
                clock_hz=args.clock or 40.0, timeline=args.timeline, progress_s=0 if args.quiet else args.progress,
                ack_timeout_s=args.ack_timeout, stop_event=stop, log=log, teardown_timeout_s=TEARDOWN_TIMEOUT_S,
                on_done=lambda s: print(json.dumps(s, indent=2) if args.json else summary_line(s), flush=True),
            )
        except ReplayError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    leave_if_hung(stats["teardown_ok"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
