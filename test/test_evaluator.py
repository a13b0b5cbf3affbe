"""The online evaluator (reloc_ros.tools.bag.evaluate): known pose errors in, known statistics out.

A fake relocalization node (this file run as a script) publishes, for most ground-truth
frames of a converted bag, the true pose moved by a known offset (0.1 m, 3°) and nothing for
the others (rejections); the evaluator runs in another process and its report must give
back exactly those numbers. One test runs the whole chain: replay -> fake node ->
evaluator, with the replay's timeline for the latency.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rosutil import exited_cleanly, finish, ros_env, run_python

HERE = str(Path(__file__).resolve())
POSE_TOPIC = "/relocalization_node/pose"
IMAGE = "/camera/color/image_raw"
N_FRAMES = 40
OFFSET_M = 0.1
OFFSET_DEG = 3.0
COV_DIAG = [0.01, 0.02, 0.03, 0.001, 0.002, 0.003]
NS = 1_000_000_000

pytestmark = pytest.mark.timeout(180)


def rejected(i: int) -> bool:
    """Frames (by index in the bag) the fake node gives no pose for: a quarter of them."""
    return i % 4 == 1


def perturb(T: np.ndarray) -> np.ndarray:
    """T moved by OFFSET_M (camera centre) and turned by OFFSET_DEG (about a fixed axis)."""
    from reloc_ros.core.geometry import quat_to_matrix

    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    half = np.deg2rad(OFFSET_DEG) / 2
    R = quat_to_matrix(np.r_[np.cos(half), np.sin(half) * axis])
    out = T.copy()
    out[:3, :3] = T[:3, :3] @ R
    out[:3, 3] += OFFSET_M * np.array([0.6, 0.0, 0.8])
    return out


# --------------------------------------------------------------------------- fake node process
def _teardown(node) -> int:
    """Destroy the node and shut rclpy down, but leave if Fast DDS hangs doing it."""
    import rclpy

    from reloc_ros.ros.shutdown import run_bounded

    def down() -> None:
        node.destroy_node()
        rclpy.shutdown()

    if not run_bounded(down, 10.0, "DDS teardown", print):
        sys.stdout.flush()
        os._exit(0)
    return 0


def fake(argv: list[str]) -> int:
    """``fake bag MODE``: MODE 'direct' publishes the poses of the bag's ground truth
    (plus one unmatched, one repeated and one wrong-frame pose) as soon as the evaluator
    listens; MODE 'node' answers the replayed images like the relocalization node."""
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from reloc_ros.core.geometry import matrix_to_quat, quat_to_ros
    from reloc_ros.tools.bag.evaluate import load_ground_truth

    bag, mode = argv
    gt = load_ground_truth(bag)
    stamps = gt.stamps
    index = {s: i for i, s in enumerate(stamps)}
    rclpy.init()
    node = rclpy.create_node("fake_relocalization_node")
    pub = node.create_publisher(PoseWithCovarianceStamped, POSE_TOPIC, 10)
    pub_initial = node.create_publisher(PoseWithCovarianceStamped, "/initialpose", 10)

    def send(stamp: int, T: np.ndarray, frame: str = "map", publisher=None) -> None:
        m = PoseWithCovarianceStamped()
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, NS)
        m.header.frame_id = frame
        p = m.pose.pose
        p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = quat_to_ros(matrix_to_quat(T[:3, :3]))
        m.pose.covariance = [float(v) for v in np.diag(COV_DIAG).reshape(-1)]
        (publisher or pub).publish(m)

    deadline = time.time() + 60
    while pub.get_subscription_count() < 1 and time.time() < deadline:  # the evaluator
        time.sleep(0.02)
    time.sleep(0.3)
    if mode == "direct":
        for i, s in enumerate(stamps):
            if not rejected(i):
                send(s, perturb(gt.poses[s]))
            time.sleep(0.005)
        send(stamps[-1] + 1, gt.poses[stamps[-1]])  # no ground truth at this stamp
        send(stamps[0], gt.poses[stamps[0]])  # a second pose for frame 0: ignored
        send(stamps[2], gt.poses[stamps[2]], frame="odom")  # wrong frame: ignored
        # /initialpose: a right one, one 1 m off, one at a stamp without ground truth
        off = gt.poses[stamps[5]].copy()
        off[:3, 3] += [0.0, 1.0, 0.0]
        for st, T in ((stamps[3], gt.poses[stamps[3]]), (stamps[5], off), (stamps[5] + 7, off)):
            send(st, T, publisher=pub_initial)
        pub.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
        pub_initial.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
    else:
        got = []

        def on_image(m: Image) -> None:
            s = m.header.stamp.sec * NS + m.header.stamp.nanosec
            got.append(s)
            if s in index and not rejected(index[s]):
                send(s, perturb(gt.poses[s]))

        node.create_subscription(Image, IMAGE, on_image, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        last = time.time()
        while time.time() < deadline:
            n = len(got)
            rclpy.spin_once(node, timeout_sec=0.05)
            if len(got) != n:
                last = time.time()
            if len(got) >= len(stamps) or (got and time.time() - last > 3):
                break
        pub.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
        print(f"fake node: {len(got)} images", flush=True)
    return _teardown(node)


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def bag(tiny_scene, tmp_path_factory) -> Path:
    from reloc_ros.tools.bag.convert import convert_scene

    out = tmp_path_factory.mktemp("evalbag") / "tiny40"
    convert_scene(tiny_scene, out, "all", max_frames=N_FRAMES, progress=False)
    return out


def check_report(out: Path, timeline: bool) -> dict:
    s = json.loads((out / "summary.json").read_text())
    n_ok = sum(not rejected(i) for i in range(N_FRAMES))
    assert s["frames"] == N_FRAMES and s["accepted"] == n_ok == 30
    assert s["median_t_m"] == pytest.approx(OFFSET_M, abs=1e-6)
    assert s["mean_t_m"] == pytest.approx(OFFSET_M, abs=1e-6)
    assert s["median_r_deg"] == pytest.approx(OFFSET_DEG, abs=1e-6)
    assert s["rejection_rate"] == pytest.approx(1 - n_ok / N_FRAMES)
    # thresholds of reloc_ros.eval.evaluate: (5 cm, 5°) (25 cm, 2°) missed; (50 cm, 5°) (5 m, 10°) met
    assert s["acc_5cm_5deg"] == 0 and s["acc_25cm_2deg"] == 0
    assert s["acc_50cm_5deg"] == pytest.approx(n_ok / N_FRAMES) == s["acc_500cm_10deg"]
    assert s["cov_trace_median"] == pytest.approx(sum(COV_DIAG))
    # every error is well inside its covariance's 95 % region (the largest rotation part:
    # (3°)² / 0.001 rad² = 2.7 < χ²₃(0.95) = 7.8)
    assert s["chi2"]["n"] == 30 and s["chi2"]["within_chi2_6"] == 1.0 and s["chi2"]["within_chi2_t3"] == 1.0
    with open(out / "per_frame.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_FRAMES
    assert [r["status"] for r in rows] == ["rejected" if rejected(i) else "ok" for i in range(N_FRAMES)]
    assert rows[0]["frame_id"] == "seq-01/frame-000000" and rows[16]["frame_id"].startswith("seq-02/")
    for r in rows:
        if r["status"] == "ok":
            assert float(r["t_err_m"]) == pytest.approx(OFFSET_M, abs=1e-6)
            assert float(r["cov_trace_xyz"]) == pytest.approx(0.06)
            assert (r["latency_ms"] != "") == timeline
        else:
            assert r["t_err_m"] == "" and r["latency_ms"] == ""
    for png in ("trajectory.png", "errors_over_time.png", "cdf.png"):
        assert (out / png).stat().st_size > 10_000, png
    md = (out / "summary.md").read_text()
    assert "| pose topic |" in md and POSE_TOPIC in md and "25.0%" in md
    return s


# --------------------------------------------------------------------------- tests
def test_known_offsets_and_rejections(bag, tmp_path):
    """Poses published directly (no replay): the report gives back the offsets exactly."""
    env = ros_env(tmp_path)
    out = tmp_path / "report"
    ev = run_python(["-m", "reloc_ros.tools.bag.evaluate", "--bag", str(bag), "--out", str(out),
                     "--until-idle", "1.0", "--duration", "90", "--progress", "0.5"], env)
    fk = run_python([HERE, "fake", str(bag), "direct"], env)
    ev_out, fk_out = finish([ev, fk])
    assert exited_cleanly(fk, fk_out), fk_out
    assert exited_cleanly(ev, ev_out), ev_out
    assert "no pose for 1 s" in ev_out and "Traceback" not in ev_out
    s = check_report(out, timeline=False)
    assert (s["unmatched"], s["duplicates"], s["wrong_frame"], s["poses_received"]) == (1, 1, 1, 33)
    assert s["latency_ms"]["count"] == 0 and s["timeline"] is None
    ip = s["initialpose"]
    assert (ip["received"], ip["matched"], ip["wrong"]) == (3, 2, 1)
    assert ip["max_t_err_m"] == pytest.approx(1.0, abs=1e-6) and "1 more than 0.5 m off" in (out / "summary.md").read_text()
    assert "/initialpose received, 1.000 m" in ev_out


def test_replay_node_evaluator_chain(bag, tmp_path):
    """replay (timeline) -> fake node -> evaluator: same statistics, and the latency of every pose."""
    env = ros_env(tmp_path)
    out, tl = tmp_path / "report", tmp_path / "timeline.jsonl"
    tl.write_text('{"type":"start","run":"old"}\n{"type":"end","wall":1.0}\n')  # a stale run
    ev = run_python(["-m", "reloc_ros.tools.bag.evaluate", "--bag", str(bag), "--out", str(out), "--timeline", str(tl),
                     "--until-idle", "1.0", "--duration", "90", "--json"], env)
    fk = run_python([HERE, "fake", str(bag), "node"], env)
    rp = run_python(["-m", "reloc_ros.tools.bag.replay", str(bag), "--rate", "2", "--wait-subscribers", "1",
                     "--timeline", str(tl)], env)
    rp_out, fk_out, ev_out = finish([rp, fk, ev])
    assert exited_cleanly(rp, rp_out), rp_out
    assert exited_cleanly(fk, fk_out), fk_out
    assert exited_cleanly(ev, ev_out), ev_out + rp_out + fk_out
    # the last frame (39) has a pose: the evaluator stops then, not after the whole idle second
    assert "evaluator done (the last frame answered, after the replay ended)" in ev_out
    s = check_report(out, timeline=True)
    lat = s["latency_ms"]
    assert lat["count"] == 30 and 0 < lat["median"] < 500 and lat["max"] < 2000
    assert s["replay_ended"] is True and s["unmatched"] == 0


def test_state_timeline_and_report_without_ros(bag, tmp_path):
    """EvalState, TimelineReader and write_report directly: stale runs, restarts, loops,
    the /tf fallback for the ground truth, and a report with no estimate at all."""
    from reloc_ros.tools.bag.evaluate import EvalState, TimelineReader, load_ground_truth, write_report
    from reloc_ros.tools.bag.topics import BagTopics

    gt = load_ground_truth(bag)
    assert len(gt) == N_FRAMES and gt.frame_ids[gt.stamps[0]] == "seq-01/frame-000000"
    via_tf = load_ground_truth(bag, BagTopics(gt_pose="/no/such/topic"))
    assert via_tf.source.startswith("/tf") and via_tf.stamps == gt.stamps
    for s in gt.stamps:
        np.testing.assert_allclose(via_tf.poses[s], gt.poses[s], atol=1e-12)

    path = tmp_path / "tl.jsonl"
    t0 = time.time()
    path.write_text(json.dumps({"type": "start", "run": "a"}) + "\n"
                    + json.dumps({"type": "image", "stamp_ns": gt.stamps[0], "wall": t0 - 100}) + "\n"
                    + json.dumps({"type": "end", "wall": t0 - 99}) + "\n")
    tl = TimelineReader(path, not_before=t0)
    tl.poll()
    assert tl.stale and not tl.publish and not tl.ended  # ended before we started: ignored
    # a new run (a new file), written in pieces, with a second pass over frame 0
    lines = [{"type": "start", "run": "b"}] + [
        {"type": "image", "stamp_ns": s, "wall": t0 + i * 0.01} for i, s in enumerate(gt.stamps[:4])
    ] + [{"type": "image", "stamp_ns": gt.stamps[0], "wall": t0 + 1.0}]
    text = "".join(json.dumps(r) + "\n" for r in lines)
    os.unlink(path)
    path.write_text(text[:-10])  # the last line is incomplete
    tl.poll()
    assert not tl.stale and len(tl.order) == 4 and tl.publish[gt.stamps[0]] == [t0]
    path.write_text(text + json.dumps({"type": "end", "wall": t0 + 2}) + "\n")
    tl.poll()
    assert tl.ended and tl.publish[gt.stamps[0]] == [t0, t0 + 1.0]
    assert tl.publish_wall(gt.stamps[0], before=t0 + 0.5) == t0
    assert tl.publish_wall(gt.stamps[0], before=t0 + 1.5) == t0 + 1.0

    st = EvalState(gt, timeline=tl)
    T = perturb(gt.poses[gt.stamps[1]])
    assert st.add_pose(gt.stamps[1], "map", T, np.diag(COV_DIAG).reshape(-1), t0 + 0.03) == "ok"
    # translation error (0.06, 0, 0.08) under the diagonal covariance: 0.06²/0.01 + 0.08²/0.03
    assert st.estimates[gt.stamps[1]].d2[1] == pytest.approx(0.36 + 0.0064 / 0.03, rel=1e-9)
    assert st.add_pose(gt.stamps[1], "map", T, [0.0] * 36, t0 + 0.04) == "duplicate"
    assert st.add_pose(gt.stamps[1] + 5, "map", T, [0.0] * 36, t0 + 0.04) == "unmatched"
    assert st.add_pose(gt.stamps[2], "base_link", T, [0.0] * 36, t0 + 0.04) == "wrong_frame"
    rows = st.rows()
    assert [r["stamp_ns"] for r in rows] == gt.stamps[:4]  # the frames the replay published
    assert rows[1]["latency_ms"] == pytest.approx(20.0, abs=1e-3)
    s = st.summary()
    assert s["frames"] == 4 and s["accepted"] == 1 and s["rejection_rate"] == 0.75
    assert s["median_r_deg"] == pytest.approx(OFFSET_DEG, abs=1e-6)

    empty = write_report(EvalState(gt), tmp_path / "empty", "nothing")
    assert empty["frames"] == N_FRAMES and empty["accepted"] == 0 and empty["rejection_rate"] == 1.0
    assert np.isnan(empty["median_t_m"])
    assert "n/a" in (tmp_path / "empty" / "summary.md").read_text()
    assert all((tmp_path / "empty" / p).is_file() for p in ("trajectory.png", "errors_over_time.png", "cdf.png"))


def test_sigint_writes_the_report(bag, tmp_path):
    """Ctrl-C: the report is written (every frame rejected: no pose came), exit status 0."""
    env = ros_env(tmp_path)
    out = tmp_path / "report"
    ev = run_python(["-m", "reloc_ros.tools.bag.evaluate", "--bag", str(bag), "--out", str(out)], env)
    try:
        line = ""
        deadline = time.time() + 60
        while time.time() < deadline and not line.startswith("evaluating"):
            line = ev.stdout.readline()
        assert line.startswith("evaluating /relocalization_node/pose against 40 ground-truth frames"), line
        ev.send_signal(signal.SIGINT)
        (ev_out,) = finish([ev], timeout=60)
    finally:
        if ev.poll() is None:
            ev.kill()
    assert exited_cleanly(ev, ev_out) and "Traceback" not in ev_out, ev_out
    assert "evaluator done (interrupted)" in ev_out
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"] == N_FRAMES and s["accepted"] == 0 and s["rejection_rate"] == 1.0
    assert s["stopped_because"] == "interrupted"


def test_cli_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "reloc_ros.tools.bag.evaluate", "--bag", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=60,
                       env=ros_env(tmp_path))
    assert r.returncode == 2 and "nope: bag folder does not exist" in r.stderr
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "reloc_ros.tools.bag.evaluate", "--bag", str(tmp_path / "empty"),
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=60,
                       env=ros_env(tmp_path))
    assert r.returncode == 2 and "empty: not a rosbag2 folder (no metadata.yaml)" in r.stderr


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    sys.exit(fake(rest) if role == "fake" else 2)


def test_the_online_evaluator_imports_no_torch():
    """It starts before the replay and must not miss poses to a slow import: the metric
    definitions it shares with the offline evaluator come from a torch-free module."""
    import subprocess
    import sys

    code = "import sys, reloc_ros.tools.bag.evaluate; print(sorted(m for m in ('torch', 'cv2') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "torch" not in r.stdout, r.stdout
