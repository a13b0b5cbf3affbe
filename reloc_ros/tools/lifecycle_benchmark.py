"""Benchmark of the managed node's lifecycle over real DDS: memory after cleanup, latency
after re-activation.

    python -m reloc_ros.tools.lifecycle_benchmark                       # ResNet-34 256x341, random weights
    python -m reloc_ros.tools.lifecycle_benchmark --model model.pt --db db.pt --cycles 3 --out table.md

Starts ``relocalization_node --managed`` as a separate process and drives it through
``~/change_state`` as nav2_lifecycle_manager does. Each cycle is configure, activate, a
latency phase, deactivate, activate, a second latency phase, deactivate, cleanup. The
process's resident memory (``VmRSS`` of ``/proc/PID/status``) is read before the first
configure, while active, and after each cleanup; the latency (pose receive time minus image
stamp, as :mod:`reloc_ros.tools.node_benchmark` measures it) is taken before the first
deactivation and after each re-activation. The table gives the two targets of the
managed node:

* RSS after cleanup <= RSS before configure + 50 MB, and no growth over the cycles;
* latency p95 after re-activation <= 1.5 x the p95 before deactivation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lifecycle_msgs.srv import ChangeState, GetState

from reloc_ros.tools.node_benchmark import IMAGE_TOPIC, POSE_TOPIC, Probe, add_model_options, make_assets
from reloc_ros.eval.report import emit, markdown_table

__all__ = ["LifecycleClient", "rss_mb", "main"]

TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


class LifecycleClient:
    """``ros2 lifecycle set / get`` from a node whose executor spins elsewhere.

    Args:
        node: an rclpy node (its executor must be spinning in another thread).
        target: the managed node's full name, e.g. ``/relocalization_node``.
    """

    def __init__(self, node, target: str = "/relocalization_node"):
        self._change = node.create_client(ChangeState, f"{target}/change_state")
        self._get = node.create_client(GetState, f"{target}/get_state")

    @staticmethod
    def _call(cli, req, timeout_s: float):
        if not cli.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"{cli.srv_name}: no service")
        fut = cli.call_async(req)
        end = time.time() + timeout_s
        while not fut.done():
            if time.time() > end:
                raise TimeoutError(f"{cli.srv_name}: no answer in {timeout_s:g} s")
            time.sleep(0.01)
        return fut.result()

    def state(self, timeout_s: float = 30.0) -> str:
        return self._call(self._get, GetState.Request(), timeout_s).current_state.label

    def set(self, transition: str, timeout_s: float = 120.0) -> bool:
        """Request a transition by name (configure, activate, deactivate, cleanup, shutdown);
        True when it succeeded."""
        if transition not in TRANSITIONS:
            raise ValueError(f"unknown transition {transition!r}: use one of {', '.join(TRANSITIONS)}")
        req = ChangeState.Request()
        req.transition.label = transition
        return bool(self._call(self._change, req, timeout_s).success)


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MB), from ``/proc/PID/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _latencies(probe: Probe, imgs, n: int, rate: float) -> list[float]:
    for i in range(2):  # warm-up frames, not counted
        probe.send(imgs[i % len(imgs)])
        time.sleep(1.0 / rate)
    time.sleep(0.5)
    with probe.lock:
        probe.lat.clear()
    for i in range(n):
        probe.send(imgs[i % len(imgs)])
        time.sleep(1.0 / rate)
    time.sleep(1.0)
    with probe.lock:
        return list(probe.lat)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Memory and latency of the managed node over its lifecycle")
    add_model_options(ap, device="cpu")
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--frames", type=int, default=20, help="frames per latency phase")
    ap.add_argument("--rate", type=float, default=4.0, help="latency phase rate (Hz)")
    ap.add_argument("--out", type=Path, help="write the table as Markdown")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    tmp = Path(tempfile.mkdtemp(prefix="reloc_lifecycle_bench_"))
    model, db = (args.model, args.db) if args.model and args.db else make_assets(args.arch, tuple(args.size),
                                                                                  args.db_frames, tmp)
    proc = subprocess.Popen([sys.executable, "-m", "reloc_ros.ros.node", "--managed", "--ros-args",
                             "-p", f"model_path:={model}", "-p", f"database_path:={db}", "-p", f"device:={args.device}",
                             "-p", "max_rate_hz:=0.0", "-p", "min_inliers:=1", "-p", "image_reliable:=true",
                             "-r", f"image:={IMAGE_TOPIC}"], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    probe = Probe()
    life = LifecycleClient(probe.node)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    rows, rss_clean, p95_after = [], [], []
    try:
        assert life.state(timeout_s=120) == "unconfigured"
        time.sleep(1.0)
        rss0 = rss_mb(proc.pid)
        p95_before = float("nan")
        for cycle in range(1, args.cycles + 1):
            t0 = time.time()
            if not life.set("configure"):
                raise SystemExit(f"configure failed:\n{proc.stdout.read()}")
            t_conf = time.time() - t0
            life.set("activate")
            end = time.time() + 30
            while probe.node.count_publishers(POSE_TOPIC) == 0 or probe.node.count_subscribers(IMAGE_TOPIC) == 0:
                if time.time() > end:
                    raise SystemExit("the activated node has no pose publisher or image subscription")
                time.sleep(0.05)
            time.sleep(0.5)
            lat1 = _latencies(probe, imgs, args.frames, args.rate)
            rss_active = rss_mb(proc.pid)
            if cycle == 1:
                p95_before = float(np.percentile(lat1, 95))
            life.set("deactivate")
            life.set("activate")
            time.sleep(0.5)
            lat2 = _latencies(probe, imgs, args.frames, args.rate)
            p95_after.append(float(np.percentile(lat2, 95)))
            life.set("deactivate")
            life.set("cleanup")
            time.sleep(1.0)
            rss_clean.append(rss_mb(proc.pid))
            rows.append([cycle, f"{t_conf:.1f}", f"{rss_active:.0f}", f"{rss_clean[-1]:.0f}",
                         f"{np.percentile(lat1, 95):.1f} ({len(lat1)})", f"{p95_after[-1]:.1f} ({len(lat2)})"])
        life.set("shutdown")
    finally:
        probe.close()
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    md = markdown_table(["cycle", "configure (s)", "RSS active (MB)", "RSS after cleanup (MB)",
                         "latency p95, first activation (ms; poses)", "latency p95 after re-activation (ms; poses)"],
                        rows, f"Managed node over {args.cycles} lifecycle cycles ({args.device}; model {model.name}, "
                              f"database {db.name}; RSS before configure {rss0:.0f} MB)")
    worst = max(p95_after)
    md += ("\n\n" + markdown_table(["target", "measured", "met"], [
        ["RSS after cleanup <= RSS before configure + 50 MB", f"{max(rss_clean):.0f} MB against {rss0:.0f} + 50 MB",
         "yes" if max(rss_clean) <= rss0 + 50 else "no"],
        ["no RSS growth over the cycles", " -> ".join(f"{r:.0f}" for r in rss_clean) + " MB",
         "yes" if rss_clean[-1] <= rss_clean[0] + 10 else "no"],
        ["latency p95 after re-activation <= 1.5 x before deactivation",
         f"{worst:.1f} ms against {p95_before:.1f} ms ({worst / p95_before:.2f}x)",
         "yes" if worst <= 1.5 * p95_before else "no"]]))
    emit(md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
