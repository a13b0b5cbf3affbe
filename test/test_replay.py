"""The bag replay tool (reloc_ros.tools.bag.replay) against real subscribers in other processes.

The replay publishes the raw CDR bytes of converted bags over Fast DDS (loopback); a
listener process (this file run as a script: ``python test_replay.py listen OUT ...``)
records what arrives, and the tests compare it with the bag read back by rosbags.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from rosutil import exited_cleanly, finish, ros_env, run_python

HERE = str(Path(__file__).resolve())
REPLAY = ["-m", "reloc_ros.tools.bag.replay"]
IMAGE = "/camera/color/image_raw"
NS = 1_000_000_000

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- listener process
def listen(argv: list[str]) -> int:
    """Subscribe to the image, frame-id, /tf_static (transient local) and /clock topics;
    write what arrived as JSON to OUT when ``--count`` images arrived, after ``--idle``
    seconds without a message (once one came), or after ``--timeout`` seconds."""
    import argparse

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--idle", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--static-only", action="store_true")
    a = ap.parse_args(argv)

    rclpy.init()
    node = rclpy.create_node("replay_test_listener")
    got = {"images": [], "frame_ids": [], "static": [], "static_wall": [], "clock": []}
    last = [None]

    def on_image(m: Image):
        data = bytes(m.data)  # the rclpy message, deserialized as any node gets it
        got["images"].append([m.header.stamp.sec * NS + m.header.stamp.nanosec, zlib.crc32(data),
                              time.time(), m.width, m.height, m.encoding])
        last[0] = time.time()

    def on_frame_id(m: String):
        got["frame_ids"].append(m.data)
        last[0] = time.time()

    def on_static(m: TFMessage):
        got["static"].append([[t.header.frame_id, t.child_frame_id] for t in m.transforms])
        got["static_wall"].append(time.time())
        last[0] = time.time()

    def on_clock(m: Clock):
        got["clock"].append(m.clock.sec * NS + m.clock.nanosec)

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(TFMessage, "/tf_static", on_static, latched)
    if not a.static_only:
        reliable = QoSProfile(depth=a.depth, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, IMAGE, on_image, reliable)
        node.create_subscription(String, "/reloc/frame_id", on_frame_id, QoSProfile(depth=100))
        node.create_subscription(Clock, "/clock", on_clock, QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
    print("listening", flush=True)
    t0 = time.time()
    while time.time() - t0 < a.timeout:
        rclpy.spin_once(node, timeout_sec=0.05)
        if a.static_only and got["static"]:
            break
        if a.count and len(got["images"]) >= a.count and (len(got["frame_ids"]) >= a.count
                                                         or time.time() - last[0] > 1.0):
            break  # every image, and the other topics drained
        if last[0] is not None and time.time() - last[0] > a.idle:
            break
    Path(a.out + ".tmp").write_text(json.dumps(got))
    os.replace(a.out + ".tmp", a.out)
    from reloc_ros.ros.shutdown import run_bounded

    def down() -> None:
        node.destroy_node()
        rclpy.shutdown()

    if not run_bounded(down, 10.0, "DDS teardown", print):  # a Fast DDS hang: the results are out
        sys.stdout.flush()
        os._exit(0)
    return 0


# --------------------------------------------------------------------------- helpers
def bag_messages(bag: Path) -> dict[str, list]:
    """topic -> [(bag time, raw bytes, message)] read with rosbags."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([bag]) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, bytes(raw), r.deserialize(raw, conn.msgtype)))
    return out


def stats_of(output: str) -> dict:
    return json.loads(output[output.index("\n{") + 1:] if not output.startswith("{") else output)


def image_crc(msg) -> int:
    return zlib.crc32(np.asarray(msg.data, dtype=np.uint8).tobytes())


# --------------------------------------------------------------------------- bags
@pytest.fixture(scope="module")
def tiny_1s_bag(tiny_scene, tmp_path_factory) -> Path:
    """16 frames of the tiny synthetic scene at 15 Hz: exactly 1 s of bag time."""
    from reloc_ros.tools.bag.convert import convert_scene

    out = tmp_path_factory.mktemp("replay") / "tiny_1s"
    convert_scene(tiny_scene, out, "all", rate_hz=15.0, max_frames=16, progress=False)
    return out


@pytest.fixture(scope="module")
def long_real_bag(sample_dir, tmp_path_factory) -> Path:
    """A converted bag of 120 real 640x480 frames at 30 Hz (4 s): the 12 sample frames
    cycled through one sequence (links to the read-only sample)."""
    from reloc_ros.data.sevenscenes import Scene
    from reloc_ros.tools.bag.convert import convert_scene

    root = tmp_path_factory.mktemp("long") / "stairs_long"
    frames = Scene(sample_dir).frames("all")
    for seq, n in ((1, 120), (2, 1)):
        d = root / f"seq-{seq:02d}"
        d.mkdir(parents=True)
        for i in range(n):
            f = frames[i % len(frames)]
            (d / f"frame-{i:06d}.color.jpg").symlink_to(f.color_path)
            (d / f"frame-{i:06d}.pose.txt").symlink_to(f.pose_path)
    (root / "TestSplit.txt").write_text("sequence1\n")
    (root / "TrainSplit.txt").write_text("sequence2\n")
    out = root.parent / "bag"
    s = convert_scene(root, out, "test", rate_hz=30.0, workers=2, progress=False)
    assert s["frames"] == 120
    return out


# --------------------------------------------------------------------------- tests
def test_lossless_at_4x_real_640x480(long_real_bag, tmp_path):
    """Every one of 120 real 640x480 rgb8 frames arrives, in order and intact, at 4x real
    time (120 images/s, 110 MB/s) with a reliable keep-last-30 subscriber. (A keep-last-10
    reader loses a frame now and then when the machine is loaded: its history overflows
    while the test process is busy, which is the reader's choice, not the replay's.)"""
    msgs = bag_messages(long_real_bag)
    images = msgs[IMAGE]
    n = len(images)
    env = ros_env(tmp_path)
    out = tmp_path / "got.json"
    lst = run_python([HERE, "listen", str(out), "--count", str(n), "--idle", "5", "--timeout", "60",
                      "--depth", "30"], env)
    rep = run_python([*REPLAY, str(long_real_bag), "--rate", "4", "--wait-subscribers", "1", "--wait-timeout", "30",
                      "--json"], env)
    l_out, r_out = finish([lst, rep])
    assert exited_cleanly(rep, r_out), r_out
    assert exited_cleanly(lst, l_out), l_out
    stats = stats_of(r_out)
    got = json.loads(out.read_text())
    print(f"4x: {len(got['images'])}/{n} images, replay {stats['wall_s']:.2f} s, {stats['throughput_mb_s']:.0f} MB/s, "
          f"lateness median {stats['lateness']['median_ms']:.2f} ms max {stats['lateness']['max_ms']:.1f} ms")
    assert stats["subscribers"] >= 1 and stats["acked"] and stats["per_topic"][IMAGE] == n
    # zero lost, none duplicated, in the bag's order, pixel-exact
    assert [g[0] for g in got["images"]] == [m.header.stamp.sec * NS + m.header.stamp.nanosec for _, _, m in images]
    assert [g[1] for g in got["images"]] == [image_crc(m) for _, _, m in images]
    assert {(g[3], g[4], g[5]) for g in got["images"]} == {(640, 480, "rgb8")}
    # The frame ids ride along on a second topic. While 640x480 images flood the subscriber,
    # Fast DDS (any builtin transport; plain rclpy publishers too) may drop the first sample
    # of the second topic and hold the next ones back until a heartbeat repairs the gap
    # (seconds), so this listener, which leaves 1 s after the last image, may miss some. What
    # did arrive is in order and unique.
    want = [m.data for _, _, m in msgs["/reloc/frame_id"]]
    missing = set(want) - set(got["frame_ids"])
    print(f"frame ids: {len(want) - len(missing)}/{len(want)} arrived")
    assert got["frame_ids"] == [w for w in want if w not in missing]
    # 4x: 120 frames spanning 119/30 s of bag time take ~1 s
    assert stats["wall_s"] == pytest.approx(119 / 30 / 4, rel=0.15)
    assert stats["achieved_rate"] == pytest.approx(4.0, rel=0.15)


def test_rate_scaling_and_timeline(tiny_1s_bag, tmp_path):
    """A 1 s bag at rate 2 takes 0.5 s, at the sender and at the receiver; the timeline maps
    every image stamp to its publish wall time."""
    msgs = bag_messages(tiny_1s_bag)
    stamps = [t for t, _, _ in msgs[IMAGE]]
    assert (stamps[-1] - stamps[0]) == NS
    env = ros_env(tmp_path)
    out, tl = tmp_path / "got.json", tmp_path / "timeline.jsonl"
    lst = run_python([HERE, "listen", str(out), "--count", "16", "--timeout", "40"], env)
    rep = run_python([*REPLAY, str(tiny_1s_bag), "--rate", "2", "--wait-subscribers", "1", "--timeline", str(tl),
                      "--json"], env)
    l_out, r_out = finish([lst, rep])
    assert exited_cleanly(rep, r_out) and exited_cleanly(lst, l_out), r_out + l_out
    stats = stats_of(r_out)
    assert stats["wall_s"] == pytest.approx(0.5, abs=0.06)
    assert stats["bag_s"] == pytest.approx(1.0)
    assert stats["lateness"]["median_ms"] < 5
    got = json.loads(out.read_text())
    recv = [g[2] for g in got["images"]]
    assert len(recv) == 16 and recv[-1] - recv[0] == pytest.approx(0.5, abs=0.1)
    records = [json.loads(line) for line in tl.read_text().splitlines()]
    assert records[0]["type"] == "start" and records[0]["topic"] == IMAGE and records[-1]["type"] == "end"
    imgs = [r for r in records if r["type"] == "image"]
    assert [r["stamp_ns"] for r in imgs] == stamps
    walls = np.array([r["wall"] for r in imgs])
    np.testing.assert_allclose(np.diff(walls), np.diff(stamps) / NS / 2, atol=0.02)
    assert np.all(np.array(recv) >= walls)  # received after it was published (one clock)


def test_start_offset_and_clock(tiny_1s_bag, tmp_path):
    """--start-offset 0.5 skips the frames before +0.5 s (the latched /tf_static is still
    sent); --clock publishes the bag time."""
    msgs = bag_messages(tiny_1s_bag)
    t0 = msgs[IMAGE][0][0]
    keep = [(t, m.data) for t, _, m in msgs["/reloc/frame_id"] if t >= t0 + NS // 2]
    assert len(keep) == 8  # frames 8..15 of 0..15 at 15 Hz
    env = ros_env(tmp_path)
    out = tmp_path / "got.json"
    lst = run_python([HERE, "listen", str(out), "--count", "8", "--timeout", "40"], env)
    rep = run_python([*REPLAY, str(tiny_1s_bag), "--start-offset", "0.5", "--rate", "2", "--clock", "100",
                      "--wait-subscribers", "1", "--json"], env)
    l_out, r_out = finish([lst, rep])
    assert exited_cleanly(rep, r_out) and exited_cleanly(lst, l_out), r_out + l_out
    stats = stats_of(r_out)
    assert stats["per_topic"]["/reloc/frame_id"] == 8 and stats["per_topic"][IMAGE] == 8
    assert stats["per_topic"]["/tf_static"] == 1  # stamped at t0, before the offset: still published
    assert stats["wall_s"] == pytest.approx(7 / 15 / 2, abs=0.06)
    got = json.loads(out.read_text())
    assert [g[0] for g in got["images"]] == [t for t, _ in keep]
    assert got["frame_ids"] == [d for _, d in keep]
    assert got["static"] == [[["camera_link", "camera_color_optical_frame"]]]
    clock = np.array(got["clock"])
    assert len(clock) >= 8 and np.all(np.diff(clock) >= 0)
    assert clock.min() >= t0 + NS // 2 and clock.max() <= msgs[IMAGE][-1][0]


def test_tf_static_for_a_late_subscriber_loop_and_sigint(tiny_1s_bag, tmp_path):
    """A subscriber that joins after /tf_static was sent still gets it (transient local);
    --loop starts over; SIGINT stops the replay cleanly (summary, exit status 0, no traceback)."""
    env = ros_env(tmp_path)
    tl = tmp_path / "timeline.jsonl"
    # rate 0.25: the first pass lasts 4 s; /tf_static goes out at its start, once
    rep = run_python([*REPLAY, str(tiny_1s_bag), "--loop", "--rate", "0.25", "--progress", "0.25",
                      "--timeline", str(tl)], env)
    lines: list[str] = []

    def wait_for(text: str, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = rep.stdout.readline()
            lines.append(line)
            if text in line:
                return
        pytest.fail(f"no {text!r} from the replay:\n" + "".join(lines))

    try:
        wait_for("replay:")  # publishing for 0.25 s: /tf_static went out at the start
        out = tmp_path / "late.json"
        lst = run_python([HERE, "listen", str(out), "--static-only", "--timeout", "30"], env)
        (l_out,) = finish([lst])
        assert exited_cleanly(lst, l_out), l_out
        got = json.loads(out.read_text())
        assert got["static"] == [[["camera_link", "camera_color_optical_frame"]]]
        wait_for("pass 2")
        rep.send_signal(signal.SIGINT)
        (r_out,) = finish([rep], timeout=20)
    finally:
        if rep.poll() is None:
            rep.kill()
    r_out = "".join(lines) + r_out
    assert exited_cleanly(rep, r_out), r_out
    assert "Traceback" not in r_out
    assert "replay interrupted:" in r_out
    records = [json.loads(line) for line in tl.read_text().splitlines()]
    assert records[-1]["type"] == "end" and records[-1]["interrupted"] is True
    assert {r["loop"] for r in records if r["type"] == "image"} >= {0, 1}
    # the late subscriber got /tf_static from the history, before pass 2 sent it again
    pass2 = min(r["wall"] for r in records if r["type"] == "image" and r["loop"] == 1)
    assert got["static_wall"][0] < pass2


def test_api_loop_in_process(tiny_1s_bag, tmp_path):
    """The function API with its private context: two passes, topic selection, statistics."""
    from reloc_ros.tools.bag.replay import replay

    lines: list[str] = []
    s = replay(tiny_1s_bag, rate=8, loop=True, max_loops=2, topics=[IMAGE, "/tf_static"], progress_s=0.05,
               domain_id=int(ros_env(tmp_path)["ROS_DOMAIN_ID"]), log=lines.append, teardown_timeout_s=10)
    assert s["loops"] == 2 and s["per_topic"] == {"/tf_static": 2, IMAGE: 32} and s["images"] == 32
    assert s["bag_s"] == pytest.approx(2.0) and s["wall_s"] == pytest.approx(0.25, abs=0.05)
    assert s["achieved_rate"] == pytest.approx(8, rel=0.2) and not s["interrupted"] and s["teardown_ok"]
    assert any(line.startswith("replay:") for line in lines)  # progress lines


def test_cli_errors(tiny_1s_bag, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, *REPLAY, *args], capture_output=True, text=True, timeout=60,
                              env=ros_env(tmp_path))

    r = run(str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run(str(tiny_1s_bag), "--topics", "/nope")
    assert r.returncode == 2 and "not in the bag" in r.stderr and IMAGE in r.stderr
    r = run(str(tiny_1s_bag), "--start-offset", "5")
    assert r.returncode == 2 and "past the end" in r.stderr
    r = run(str(tiny_1s_bag), "--rate", "0")
    assert r.returncode == 2 and "rate" in r.stderr


def test_helpers(tiny_1s_bag):
    from reloc_ros.tools.bag.reading import default_image_topic, header_stamp_ns, message_class, open_bag_topics

    topics = open_bag_topics(tiny_1s_bag)
    assert topics["/tf_static"].latched and not topics["/tf"].latched
    assert topics[IMAGE].count == 16 and topics[IMAGE].msgtype == "sensor_msgs/msg/Image"
    assert default_image_topic(topics) == IMAGE
    msgs = bag_messages(tiny_1s_bag)
    for topic in (IMAGE, "/camera_gt/pose", "/camera/color/camera_info"):
        for t, raw, m in msgs[topic]:
            assert header_stamp_ns(raw) == t == m.header.stamp.sec * NS + m.header.stamp.nanosec
    assert header_stamp_ns(b"\x00\x01") is None
    from sensor_msgs.msg import Image

    assert message_class("sensor_msgs/msg/Image") is Image and message_class("sensor_msgs/Image") is Image


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    sys.exit(listen(rest) if role == "listen" else 2)
