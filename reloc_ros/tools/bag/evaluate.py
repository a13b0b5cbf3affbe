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

What it does. :class:`~reloc_ros.tools.bag.evaluate_node.OnlineEvaluator` (an rclpy node) subscribes to the node's pose topic
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
:data:`~reloc_ros.tools.bag.evaluate_metrics.INITIALPOSE_WRONG_M` off: a wrong ``/initialpose`` teleports a robot. Latency (end to end): the pose's receive wall time minus the wall time at
which the replay handed the image with that stamp to DDS, taken from the replay's
``--timeline`` JSON Lines file (see :mod:`reloc_ros.tools.bag.replay`; both processes read the
same clock, ``time.time()``); without a timeline the latency is not measured. The
evaluator reads the timeline as it grows; a timeline whose run ended before the evaluator
started is stale and ignored until the replay starts a new one.

When it stops: after ``--duration`` seconds; with ``--until-idle S``, when no pose arrived
for S seconds after the replay ended (its timeline's ``end`` record; without a timeline:
S seconds after the last pose, once one arrived), or sooner, half a second after the replay
ended, when the pose of the replay's last frame has arrived (a relocalizer answers its frames
in order); on Ctrl-C (SIGINT) or SIGTERM. Both
options may be given (the first reached wins). Then it writes the report folder:

* ``per_frame.csv``: one row per counted frame (stamp, time, frame id, status ok /
  rejected, errors, latency, covariance traces, estimated and true positions);
* ``summary.md`` (the statistics table), ``summary.json`` (the same and the counts; what
  was not measured, such as the latency without a timeline, is null);
* ``trajectory.png`` (top view: the plane of the two main axes of the ground-truth
  trajectory, as in :mod:`reloc_ros.eval.evaluate`), ``errors_over_time.png``, ``cdf.png``.

Exit status: 0 when a report was written, 2 on a bad bag or option.

The metric definitions come from :mod:`reloc_ros.eval.metrics`, which imports no torch; they
are imported with this module, before any subscription exists, so no pose is lost to the import.

This module is the command line. Beside it: :mod:`~reloc_ros.tools.bag.evaluate_metrics` (the
ground truth, the timeline reader and the matching, without ROS),
:mod:`~reloc_ros.tools.bag.evaluate_report` (the table and the plots) and
:mod:`~reloc_ros.tools.bag.evaluate_node` (the rclpy listener and :func:`run_evaluator`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from reloc_ros.eval.report import json_text
from reloc_ros.ros.shutdown import TEARDOWN_TIMEOUT_S, leave_if_hung, stop_on_signals
from reloc_ros.tools.bag.evaluate_metrics import (
    INITIALPOSE_WRONG_M,
    PENDING_S,
    EvalState,
    EvaluatorError,
    GroundTruth,
    TimelineReader,
    load_ground_truth,
)
from reloc_ros.tools.bag.evaluate_node import (
    DEFAULT_INITIALPOSE_TOPIC,
    DEFAULT_POSE_TOPIC,
    OnlineEvaluator,
    run_evaluator,
)
from reloc_ros.tools.bag.evaluate_report import plot_report, progress_line, table_markdown, write_report
from reloc_ros.tools.bag.topics import BagTopics
from reloc_ros.tools.cli import add_output_options, console_log

__all__ = [
    "DEFAULT_POSE_TOPIC",
    "DEFAULT_INITIALPOSE_TOPIC",
    "PENDING_S",
    "INITIALPOSE_WRONG_M",
    "EvaluatorError",
    "GroundTruth",
    "load_ground_truth",
    "TimelineReader",
    "EvalState",
    "OnlineEvaluator",
    "progress_line",
    "table_markdown",
    "plot_report",
    "write_report",
    "run_evaluator",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments (see the module docstring)."""
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
                   help="stop when no pose arrived for S seconds after the replay ended (sooner, once the "
                        "replay's last frame has its pose)")
    p.add_argument("--timeline", type=Path, metavar="FILE",
                   help="the replay's --timeline file: latency, replay end, frames that count")
    p.add_argument("--pose-qos", choices=("reliable", "best_effort"), default="reliable",
                   help="QoS of the pose subscription (default: reliable)")
    p.add_argument("--remap", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"rename a bag topic or frame (fields: {', '.join(BagTopics.field_names())})")
    add_output_options(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_ros.tools.bag.evaluate --bag BAG --out DIR ...``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when a report was written, 2 on a bad bag or option (one ``error:`` line on stderr).
    """
    args = build_parser().parse_args(argv)
    log = console_log(args.quiet)
    with stop_on_signals() as stop:
        try:
            names = BagTopics().with_overrides(args.remap)
            s = run_evaluator(args.bag, args.out, args.pose_topic, initialpose_topic=args.initialpose_topic,
                              duration=args.duration, until_idle=args.until_idle, timeline=args.timeline,
                              pose_qos=args.pose_qos, names=names, progress_s=0 if args.quiet else args.progress,
                              stop_event=stop, log=log, teardown_timeout_s=TEARDOWN_TIMEOUT_S)
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
