"""End-to-end benchmark of the relocalization node over real DDS.

    python -m reloc_ros.tools.node_benchmark --model model.pt --db db.pt          # a trained model
    python -m reloc_ros.tools.node_benchmark --arch resnet34 --size 256 341        # random weights

Starts the node as a separate process and publishes 640x480 rgb8 frames to it, stamped with
the current ROS time. For each ``~/pose`` it receives, the end-to-end latency is the receive
time minus the image stamp: transport both ways, image conversion, the localizer, and
publishing. Two phases:

1. *latency*: frames at ``--rate`` Hz (below the node's capacity), so no frame waits;
2. *throughput*: frames at ``--flood-rate`` Hz, faster than the node runs, to measure its
   processing rate (the node drops what it cannot process).

The node's diagnostics give the model time (encoder + heads) per frame. The share of the
latency spent outside the model is ``1 − model / latency``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from reloc_ros.core.model import ModelConfig, RelPoseNet, save_model
from reloc_ros.eval.latency import synthetic_database
from reloc_ros.eval.report import emit, markdown_table
from reloc_ros.ros.messages import rgb_to_image_msg

POSE_TOPIC = "/relocalization_node/pose"
IMAGE_TOPIC = "/bench/image"


def make_assets(arch: str, size: tuple[int, int], frames: int, out: Path) -> tuple[Path, Path]:
    """A random-weight model file and a synthetic database, for timing only."""
    model = RelPoseNet(ModelConfig(arch=arch, input_size=size)).eval()
    save_model(out / "bench_model.pt", model, {"mtl_method": "none (benchmark)"})
    db = synthetic_database(model, frames)
    db.scenes[0]["image_size"] = [640, 480]
    db.save(out / "bench_db.pt")
    return out / "bench_model.pt", out / "bench_db.pt"


def add_model_options(ap: argparse.ArgumentParser, device: str) -> None:
    """``--model`` and ``--db`` (a trained pair), or the random-weight assets of
    :func:`make_assets` (``--arch``, ``--size``, ``--db-frames``); and ``--device``."""
    ap.add_argument("--model", type=Path)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--size", type=int, nargs=2, default=[256, 341], metavar=("H", "W"))
    ap.add_argument("--db-frames", type=int, default=1000)
    ap.add_argument("--device", default=device)


class Probe:
    """Publishes frames and records pose receive times (its own rclpy context)."""

    def __init__(self):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("node_benchmark_probe", context=self.ctx)
        self.lat: list[float] = []
        self.diag = None
        self.lock = threading.Lock()
        self.node.create_subscription(PoseWithCovarianceStamped, POSE_TOPIC, self._on_pose, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.pub = self.node.create_publisher(Image, IMAGE_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        threading.Thread(target=self.ex.spin, daemon=True).start()

    def _on_pose(self, msg) -> None:
        now = self.node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.lat.append((now - stamp) * 1e-6)

    def _on_diag(self, msg) -> None:
        self.diag = {v.key: v.value for v in msg.status[0].values}

    def send(self, rgb: np.ndarray) -> None:
        m = rgb_to_image_msg(rgb, frame_id="camera_color_optical_frame")
        m.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(m)

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="End-to-end latency and rate of the relocalization node")
    add_model_options(ap, device="auto")
    ap.add_argument("--frames", type=int, default=30, help="frames in the latency phase")
    ap.add_argument("--rate", type=float, default=2.0, help="latency phase rate (Hz)")
    ap.add_argument("--flood-rate", type=float, default=30.0)
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, help="write the table as Markdown")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    tmp = Path(tempfile.mkdtemp(prefix="reloc_node_bench_"))
    model, db = (args.model, args.db) if args.model and args.db else make_assets(args.arch, tuple(args.size), args.db_frames, tmp)
    proc = subprocess.Popen([sys.executable, "-m", "reloc_ros.ros.node", "--ros-args", "-p", f"model_path:={model}",
                             "-p", f"database_path:={db}", "-p", f"device:={args.device}", "-p", "max_rate_hz:=0.0",
                             "-p", "min_inliers:=1", "-p", "image_reliable:=true", "-p", "diagnostics_period_s:=0.5",
                             "-r", f"image:={IMAGE_TOPIC}"], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    probe = Probe()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    try:
        t_end = time.time() + 120
        while probe.node.count_subscribers(IMAGE_TOPIC) == 0 or probe.node.count_publishers(POSE_TOPIC) == 0:
            if proc.poll() is not None or time.time() > t_end:
                raise SystemExit(f"node did not start:\n{proc.stdout.read()}")
            time.sleep(0.1)
        time.sleep(1.0)
        for i in range(3):  # warm-up frames, not counted
            probe.send(imgs[i % 4])
            time.sleep(1.0 / args.rate)
        time.sleep(1.0)
        with probe.lock:
            probe.lat.clear()
        for i in range(args.frames):
            probe.send(imgs[i % 4])
            time.sleep(1.0 / args.rate)
        time.sleep(2.0)
        with probe.lock:
            lat = list(probe.lat)
        diag_lat = dict(probe.diag or {})
        t0 = time.time()
        n = 0
        while time.time() - t0 < args.flood_seconds:
            probe.send(imgs[n % 4])
            n += 1
            time.sleep(max(0.0, t0 + n / args.flood_rate - time.time()))
        time.sleep(1.5)
        diag = dict(probe.diag or {})
    finally:
        probe.close()
        proc.send_signal(2)
        proc.wait(timeout=30)
    model_ms = float(diag_lat.get("model ms (median: encode + heads)", "nan"))
    loc_ms = float(diag_lat.get("localize ms (median)", "nan"))
    med = float(np.median(lat)) if lat else float("nan")
    rows = [["frames answered (latency phase)", f"{len(lat)} of {args.frames} at {args.rate:g} Hz"],
            ["end-to-end latency, median (ms)", f"{med:.1f}"],
            ["end-to-end latency, p90 / max (ms)",
             f"{np.percentile(lat, 90):.1f} / {np.max(lat):.1f}" if lat else "n/a"],
            ["localizer total, median (ms)", f"{loc_ms:.1f}"],
            ["model (encoder + heads), median (ms)", f"{model_ms:.1f}"],
            ["share of latency outside the model", f"{100 * (1 - model_ms / med):.1f}%"],
            [f"processing rate under a {args.flood_rate:g} Hz flood (Hz)", diag.get("processing rate hz", "n/a")],
            ["frames received / dropped in the flood run",
             f"{diag.get('frames received')} / {diag.get('frames dropped')}"]]
    md = markdown_table(["measure", "value"], rows,
                        f"Node end-to-end ({diag.get('device', '?')}; model {model.name}; 640x480 rgb8 input)")
    emit(md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
