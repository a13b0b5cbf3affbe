"""Helpers for tests that run real ROS 2 processes (imported by test modules, not a test)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def ros_env(tmp_path: Path) -> dict:
    """Environment for ROS 2 child processes: a private domain, loopback only, logs in tmp.

    The domain id is drawn per run (1..100, the range whose ports never clash with the
    ephemeral range), so concurrent test runs on one machine do not see each other.
    ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` makes large images reliable on loopback.
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    env["ROS_LOG_DIR"] = str(tmp_path / "ros_log")
    env.setdefault("HOME", str(tmp_path))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # stacks of a hung child on SIGABRT (see finish)
    return env


def run_python(args: list[str], env: dict, **kw) -> subprocess.Popen:
    """Start ``python args...`` with this interpreter as a separate process."""
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def finish(procs, timeout: float = 90.0) -> list[str]:
    """Outputs of the processes, in order. One still running after ``timeout`` gets SIGABRT
    (``PYTHONFAULTHANDLER`` is set: it prints every thread's stack) and the test fails with
    all the outputs."""
    outs, late = [], []
    deadline = time.time() + timeout
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            late.append(p.args)
            p.send_signal(signal.SIGABRT)
            try:
                out, _ = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
        outs.append(out)
    if late:
        pytest.fail("still running after {:g} s: {}\n".format(timeout, late)
                    + "\n----\n".join(o or "" for o in outs))
    return outs


def exited_cleanly(proc: subprocess.Popen, out: str) -> bool:
    """Exit status 0, or the known Fast DDS teardown hang after the work was done: the
    GIL-free watchdog of ``reloc_ros.ros.shutdown.run_bounded`` dumped the stacks ("Timeout
    (...)!") from inside ``run_bounded`` and exited with status 1."""
    return proc.returncode == 0 or (proc.returncode == 1 and "Timeout (" in (out or "")
                                    and "run_bounded" in (out or ""))


# --------------------------------------------------------------------------- the node's DDS peer
POSE_TOPIC = "/relocalization_node/pose"
CAMERA_FRAME = "camera_color_optical_frame"


class Client:
    """A ROS participant inside the test process, spinning in a background thread."""

    def __init__(self, env: dict):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage

        for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_BUILTIN_TRANSPORTS"):
            os.environ[k] = env[k]
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("test_client", context=self.ctx)
        self.poses, self.tf, self.diag, self.initial = [], [], [], []
        self.lock = threading.Lock()
        self.node.create_subscription(PoseWithCovarianceStamped, POSE_TOPIC, self._keep(self.poses), 50)
        self.node.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._keep(self.initial), 50)
        self.node.create_subscription(TFMessage, "/tf", self._keep(self.tf), 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keep(self.diag), 10)
        self.pub_image = self.node.create_publisher(Image, "/camera/image", QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE))
        from reloc_ros.ros.tf import TfBroadcaster

        self.tf_pub = TfBroadcaster(self.node, backend="fallback")
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _keep(self, store):
        def cb(msg):
            with self.lock:
                store.append((time.time(), msg))
        return cb

    def wait(self, cond, timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if cond():
                    return True
            time.sleep(0.02)
        return False

    def wait_for_node(self, proc, timeout: float = 90.0) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if proc.poll() is not None:
                raise AssertionError(f"node exited early:\n{proc.stdout.read()}")
            if self.node.count_subscribers("/camera/image") > 0 and self.node.count_publishers(POSE_TOPIC) > 0:
                time.sleep(0.3)  # let the endpoints match both ways
                return
            time.sleep(0.05)
        raise AssertionError("node did not come up")

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.shutdown(context=self.ctx)


def start_node(tmp_path, env, model, db, *params, managed: bool = False):
    """The relocalization node (``managed``: the lifecycle node) as a child process, with the
    package's parameter file, the model and database, and ``params`` ("name:=value")."""
    args = [sys.executable, "-m", "reloc_ros.ros.node", *(["--managed"] if managed else []), "--ros-args",
            "--params-file", str(Path(__file__).resolve().parents[1] / "config" / "relocalization.yaml"),
            "-p", f"model_path:={model}", "-p", f"database_path:={db}", "-p", "device:=cpu",
            "-p", "warmup_iterations:=1", "-r", "image:=/camera/image"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(proc) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read()


def frames_of(scene_dir, n=None):
    from reloc_ros.data.sevenscenes import Scene, read_color

    sc = Scene(scene_dir)
    fr = sc.frames("test")[:n]
    return [(f, read_color(f.color_path), sc.pose(f)) for f in fr]


def image_msg(rgb, k):
    from reloc_ros.ros.messages import rgb_to_image_msg

    return rgb_to_image_msg(rgb, stamp=1000.0 + 0.1 * k, frame_id=CAMERA_FRAME)


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested ROS parameter mapping as dotted names: ``{"fusion": {"method": m}}`` ->
    ``{"fusion.method": m}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
