"""The relocalization node as a separate process over real Fast DDS.

The test process is a second ROS participant (its own rclpy context on the same private
domain) that publishes camera frames and odometry TF, calls the trigger service, and
listens to ~/pose, /tf and /diagnostics.
"""

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from reloc_ros.core.database import DatabaseError, FrameDatabase
from reloc_ros.core.model import ModelFileError, load_model
from reloc_ros.ros.messages import camera_info_msg
from reloc_ros.tools.lifecycle_benchmark import rss_mb
from rosutil import CAMERA_FRAME, Client, frames_of, image_msg, ros_env, start_node, stop_node

pytestmark = pytest.mark.timeout(240)

@pytest.fixture
def env(tmp_path):
    return ros_env(tmp_path)


def test_continuous_poses_match_offline_and_map_to_odom(tmp_path, env, tiny_model, tiny_db, tiny_scene):
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.geometry import make_pose, pose_errors, quat_from_ros
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.ros.messages import stamp_to_ns
    from reloc_ros.ros.messages import transform_stamped_msg, transform_to_matrix

    proc = start_node(tmp_path, env, tiny_model, tiny_db, "tf_mode:=map_to_odom", "max_rate_hz:=0.0",
                      "image_reliable:=true", "min_inliers:=1", "diagnostics_period_s:=0.5")
    client = Client(env)
    try:
        client.wait_for_node(proc)
        offline = Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(
            top_k=5, fusion=FusionConfig(method="consensus", min_inliers=1)), device="cpu")
        data = frames_of(tiny_scene, 8)
        T_odom_cam = {}
        # the user's alignment of the visual map (reloc_map) to the navigation map
        T_map_reloc = make_pose([1.0, -2.0, 0.5], [np.cos(0.3), 0.2 * np.sin(0.3), 0, np.sin(0.3)])
        B = np.zeros((6, 6))
        B[:3, :3] = B[3:, 3:] = T_map_reloc[:3, :3]
        for k, (_, rgb, _) in enumerate(data):
            msg = image_msg(rgb, k)
            # odometry that drifted from the map by a known transform
            T_oc = make_pose([0.3 * k, -0.1, 0.05], [np.cos(0.1 * k), 0, 0, np.sin(0.1 * k)])
            T_odom_cam[stamp_to_ns(msg.header.stamp)] = T_oc
            client.tf_pub.send(transform_stamped_msg(T_oc, msg.header.stamp, "odom", CAMERA_FRAME))
            client.tf_pub.send(transform_stamped_msg(T_map_reloc, msg.header.stamp, "map", "reloc_map"))
            time.sleep(0.05)
            client.pub_image.publish(msg)
            n = k + 1
            assert client.wait(lambda: len(client.poses) >= n, 20), f"no pose for frame {k}"
        assert client.wait(lambda: len([1 for _, m in client.tf if m.transforms[0].child_frame_id == "odom"]) >= 8, 5)
        assert client.wait(lambda: len(client.diag) > 0, 5)
        poses = {stamp_to_ns(m.header.stamp): m for _, m in client.poses}
        for k, (_, rgb, T_gt) in enumerate(data):
            ns = stamp_to_ns(image_msg(rgb, k).header.stamp)
            m = poses[ns]
            assert m.header.frame_id == "map"
            p, o = m.pose.pose.position, m.pose.pose.orientation
            T = make_pose([p.x, p.y, p.z], quat_from_ros(o.x, o.y, o.z, o.w))
            ref = offline.localize(rgb)
            te, re = pose_errors(T, T_map_reloc @ ref.pose)  # published in map, through the alignment
            assert te < 1e-3 and re < 0.05, (k, te, re)
            C = np.array(m.pose.covariance).reshape(6, 6)
            np.testing.assert_allclose(C, B @ ref.covariance @ B.T, rtol=1e-3, atol=1e-9)
            assert np.all(np.linalg.eigvalsh(C) > 0)
        # map->odom composes with odom->camera to the published camera pose
        for _, tfm in client.tf:
            tr = tfm.transforms[0]
            if tr.child_frame_id != "odom":
                continue
            ns = stamp_to_ns(tr.header.stamp)
            assert tr.header.frame_id == "map"
            m = poses[ns]
            p, o = m.pose.pose.position, m.pose.pose.orientation
            T_pose = make_pose([p.x, p.y, p.z], quat_from_ros(o.x, o.y, o.z, o.w))
            te, re = pose_errors(transform_to_matrix(tr) @ T_odom_cam[ns], T_pose)
            assert te < 1e-6 and re < 1e-4
        def last_diag():
            return {v.key: v.value for v in client.diag[-1][1].status[0].values}

        assert client.wait(lambda: int(last_diag()["poses published"]) == 8, 5), last_diag()
        kv = last_diag()
        assert int(kv["frames received"]) == 8 and kv["device"] == "cpu"
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "ready:" in out


def _calibration_for(db_path, path, binding):
    """A calibration file for the tiny database and the node's settings (``binding``), fitted
    on synthetic held-out errors that meet its target (the node must apply whatever
    calibration it is given exactly as the offline localizer does)."""
    from reloc_ros.core.calibration import SIGNALS, fit_calibration
    from reloc_ros.core.database import FrameDatabase

    rng = np.random.default_rng(0)
    n = 300
    X = rng.normal(size=(n, len(SIGNALS)))
    E = np.concatenate([rng.normal(size=(n, 3)) * 0.03 * np.exp(0.3 * X[:, :1]), rng.normal(size=(n, 3)) * 0.01], 1)
    cal = fit_calibration(X, E, np.ones(n, bool), info={"fusion_method": "consensus", "scenes": ["tiny"],
                                                        "binding": binding})
    assert cal.target_met, cal.misses()
    cal.save(path, FrameDatabase.load(db_path))
    return path


def test_calibrated_pose_and_safe_initialpose(tmp_path, env, tiny_model, tiny_db, tiny_scene):
    """Calibrated covariances identical to the offline localizer's; /initialpose only after 3
    poses agree with the odometry, never while they disagree; the service forces one."""
    from std_srvs.srv import Trigger

    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.geometry import make_pose, pose_errors, quat_from_ros
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.ros.messages import stamp_to_ns, transform_stamped_msg

    node_cfg = LocalizerConfig(top_k=5, fusion=FusionConfig(method="consensus", min_inliers=1), min_confidence=0.0)
    cal = _calibration_for(tiny_db, tmp_path / "calibration.json",
                           Localizer.from_files(tiny_model, tiny_db, node_cfg, "cpu").calibration_binding())
    proc = start_node(tmp_path, env, tiny_model, tiny_db, f"calibration_path:={cal}", "min_confidence:=0.0",
                      "publish_initialpose:=true", "initialpose.min_interval_s:=100.0", "database_frame:=map",
                      "max_rate_hz:=0.0", "image_reliable:=true", "min_inliers:=1", "diagnostics_period_s:=0.3")
    client = Client(env)
    try:
        client.wait_for_node(proc)
        offline = Localizer.from_files(tiny_model, tiny_db, node_cfg, device="cpu", calibration_path=cal)
        data = frames_of(tiny_scene, 8)
        refs = [offline.localize(rgb) for _, rgb, _ in data]
        assert all(r.ok and r.calibrated for r in refs)
        T_odom_map = make_pose([2.0, 1.0, 0.0], [np.cos(0.4), 0, 0, np.sin(0.4)])
        for k, (_, rgb, _) in enumerate(data):
            msg = image_msg(rgb, k)
            # frames 0-3: odometry that agrees with the relocalized motion; 4-7: it jumps 1 m a frame
            T_oc = T_odom_map @ refs[k].pose if k < 4 else make_pose([float(k), 0.0, 0.0], [1, 0, 0, 0])
            client.tf_pub.send(transform_stamped_msg(T_oc, msg.header.stamp, "odom", CAMERA_FRAME))
            time.sleep(0.05)
            client.pub_image.publish(msg)
            n = k + 1
            assert client.wait(lambda: len(client.poses) >= n, 20), f"no pose for frame {k}"
        time.sleep(0.5)
        for (_, m), ref in zip(client.poses, refs):
            assert m.header.frame_id == "map"
            p, o = m.pose.pose.position, m.pose.pose.orientation
            te, re = pose_errors(make_pose([p.x, p.y, p.z], quat_from_ros(o.x, o.y, o.z, o.w)), ref.pose)
            assert te < 1e-3 and re < 0.05
            np.testing.assert_allclose(np.array(m.pose.covariance).reshape(6, 6), ref.covariance, rtol=1e-3,
                                       atol=1e-12)
        assert len(client.initial) == 1  # frames 0, 1, 2 agree: sent at frame 2 only
        assert stamp_to_ns(client.initial[0][1].header.stamp) == stamp_to_ns(image_msg(data[2][1], 2).header.stamp)

        def last_diag():
            return {v.key: v.value for v in client.diag[-1][1].status[0].values}

        assert client.wait(lambda: "disagrees with the odometry" in last_diag()["initialpose"], 5), last_diag()
        assert last_diag()["calibrated"] == "True" and last_diag()["initialposes sent"] == "1"
        cli = client.node.create_client(Trigger, "/relocalization_node/publish_initialpose")
        assert cli.wait_for_service(timeout_sec=10)
        fut = cli.call_async(Trigger.Request())
        assert client.wait(lambda: fut.done(), 10) and fut.result().success, fut.result()
        assert client.wait(lambda: len(client.initial) == 2, 5)
        assert stamp_to_ns(client.initial[1][1].header.stamp) == stamp_to_ns(client.poses[-1][1].header.stamp)
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "calibration" in out and "publish threshold" in out and "/initialpose sent" in out


@pytest.mark.parametrize("refiner", ["pnp", "lm", "dro"])
def test_refiner_poses_match_offline_and_need_intrinsics(refiner, tmp_path, env, tiny_model, tiny_kp_db,
                                                         tiny_dense_db, tiny_scene, request):
    """A refiner over DDS: the node's poses are the offline localizer's refined poses (with
    PnP far closer to the truth than the fused ones); without intrinsics it publishes nothing
    and says why. The queries are map frames: the tiny scene's test frames lie 0.36 m or
    more from every map frame, too far for SIFT at 80x60."""
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.geometry import make_pose, pose_errors, quat_from_ros
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene, read_color
    from reloc_ros.ros.messages import stamp_to_ns

    intr = Scene(tiny_scene).color_intrinsics
    ci = f"camera_intrinsics:=[{intr.fx},{intr.fy},{intr.cx},{intr.cy},{float(intr.width)},{float(intr.height)}]"
    db = tiny_kp_db if refiner == "pnp" else tiny_dense_db
    dro = request.getfixturevalue("tiny_dro") if refiner == "dro" else None
    offline = Localizer.from_files(tiny_model, db, LocalizerConfig(
        top_k=5, fusion=FusionConfig(min_inliers=1), refiner=refiner), device="cpu", dro_path=dro)
    extra = (f"dro_path:={dro}",) if dro else ()
    tol = (1e-5, 1e-3, 1e-3) if dro else (1e-6, 1e-4, 1e-6)  # DRO runs in float32
    K = intr.scaled(*offline.refine_image_size).K
    sc = Scene(tiny_scene)
    data = [(f, read_color(f.color_path), sc.pose(f)) for f in sc.frames("train")[::6]]
    refs = [offline.localize(rgb, K) for _, rgb, _ in data]
    good = [k for k, r in enumerate(refs) if r.ok]
    assert len(good) >= 4 and all(r.refinement["ok"] for r in refs if r.ok)
    for k in good if refiner == "pnp" else []:  # the refined pose: at the truth, where the fused one is not
        fused = offline.fuse(refs[k].hypotheses)
        assert pose_errors(refs[k].pose, data[k][2])[0] < min(0.02, pose_errors(fused.pose, data[k][2])[0])
    # pnp takes its intrinsics from camera_info (messages.camera_info_to_intrinsics), the others from
    # the camera_intrinsics parameter; lm also runs without any, and must then publish nothing
    runs = {"pnp": [(("use_camera_info:=true",), len(good))], "lm": [((ci,), len(good)), ((), 0)],
            "dro": [((ci,), len(good))]}[refiner]
    for params, expect in runs:
        proc = start_node(tmp_path, env, tiny_model, db, f"refiner:={refiner}", "max_rate_hz:=0.0",
                          "image_reliable:=true", "min_inliers:=1", *extra, *params)
        client = Client(env)
        try:
            client.wait_for_node(proc)
            info = None
            if "use_camera_info:=true" in params:
                info = client.node.create_publisher(CameraInfo, "/camera_info", 10)
                for _ in range(10):
                    info.publish(camera_info_msg(intr, 999.0, CAMERA_FRAME))
                    time.sleep(0.1)
            for k, (_, rgb, _) in enumerate(data):
                if info is not None:
                    info.publish(camera_info_msg(intr, 1000.0 + 0.1 * k, CAMERA_FRAME))
                client.pub_image.publish(image_msg(rgb, k))
                time.sleep(0.3)
            client.wait(lambda: len(client.poses) >= expect, 20)
            time.sleep(0.5)
            assert len(client.poses) == expect
            stamps = [stamp_to_ns(m.header.stamp) for _, m in client.poses]
            for k, (_, m) in zip(good, client.poses):
                assert stamps.count(stamp_to_ns(image_msg(data[k][1], k).header.stamp)) == 1
                p, o = m.pose.pose.position, m.pose.pose.orientation
                te, re = pose_errors(make_pose([p.x, p.y, p.z], quat_from_ros(o.x, o.y, o.z, o.w)), refs[k].pose)
                assert te < tol[0] and re < tol[1]
                np.testing.assert_allclose(np.array(m.pose.covariance).reshape(6, 6), refs[k].covariance,
                                           rtol=tol[2], atol=1e-15)
        finally:
            client.close()
            out = stop_node(proc)
        assert proc.returncode == 0 and "Traceback" not in out, out
        if not params:
            assert "no camera intrinsics" in out
        if "use_camera_info:=true" in params:
            assert "intrinsics from camera_info" in out


def test_on_demand_publishes_only_after_trigger(tmp_path, env, tiny_model, tiny_db, tiny_scene):
    from std_srvs.srv import Trigger

    proc = start_node(tmp_path, env, tiny_model, tiny_db, "mode:=on_demand", "min_inliers:=1", "top_k:=100000")
    client = Client(env)
    try:
        client.wait_for_node(proc)
        data = frames_of(tiny_scene, 4)
        stop = threading.Event()

        def stream():
            k = 0
            while not stop.is_set():
                client.pub_image.publish(image_msg(data[k % len(data)][1], k))
                k += 1
                time.sleep(0.1)

        th = threading.Thread(target=stream, daemon=True)
        th.start()
        time.sleep(2.0)
        assert len(client.poses) == 0  # nothing before the trigger
        cli = client.node.create_client(Trigger, "/relocalization_node/relocalize")
        assert cli.wait_for_service(timeout_sec=10)
        fut = cli.call_async(Trigger.Request())
        assert client.wait(lambda: fut.done(), 20)
        res = fut.result()
        assert res.success, res.message
        assert "localized" in res.message and "inliers" in res.message
        time.sleep(1.0)
        assert len(client.poses) == 1  # exactly one localization per trigger
        stop.set()
        th.join()
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert re.search(r"top_k 100000 is larger than the database \(\d+ frames\): using top_k \d+", out), out


def malformed_images(n, seed=0):
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(seed)
    encodings = ["rgb8", "bgr8", "mono8", "mono16", "16UC1", "rgba8", "yuv422", "garbage", "", "32FC1"]
    out = []
    for i in range(n):
        m = Image()
        m.encoding = str(rng.choice(encodings))
        m.width, m.height = int(rng.integers(0, 80)), int(rng.integers(0, 60))
        m.step = int(rng.integers(0, 300))
        m.data = rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()
        m.header.stamp.sec = 5000 + i
        m.header.frame_id = CAMERA_FRAME
        out.append(m)
    return out


#: Folder of the test plugins (``plugins:=[slow_localize]``).
PLUGINS = Path(__file__).resolve().parent / "plugins"


def frames_accounted_for(kv: dict) -> bool:
    """Every frame the node received is in exactly one place (the identity of
    :mod:`reloc_ros.ros.diagnostics`), in one /diagnostics message."""
    def c(key):
        return int(kv[key])

    frames = (c("frames processed") + c("frames malformed") + c("frames failed") + c("frames dropped")
              + c("frames without intrinsics") + c("frames skipped (rate limit / on demand)") + c("frames cleared (deactivated)")
              + c("frames queued") + c("frames in flight"))
    poses = c("poses published") + c("poses rejected") + c("poses discarded (deactivated)")
    return c("frames received") == frames and c("frames processed") == poses


def flood(client, frames, rate_hz: float, seconds: float, start: int, pid=None) -> tuple[int, list[float]]:
    """Publish ``frames`` in turn at ``rate_hz`` for ``seconds``: (frames sent, RSS samples of ``pid``)."""
    rss, k, t0 = [], 0, time.time()
    while time.time() - t0 < seconds:
        client.pub_image.publish(image_msg(frames[k % len(frames)], start + k))
        k += 1
        if pid is not None and k % 250 == 0:
            rss.append(rss_mb(pid))
        time.sleep(max(0.0, t0 + k / rate_hz - time.time()))
    return k, rss


@pytest.mark.timeout(300)
def test_fuzz_and_flood_keep_the_node_up_and_bounded(tmp_path, env, tiny_model, tiny_db, tiny_scene):
    """Malformed input, then a 100 Hz flood, then a flood while localization is slowed down on
    purpose (a test plugin), checked by what holds on any machine: the node stays up, every
    frame received is accounted for in every /diagnostics message, nothing stays queued,
    memory stays flat, latency stays within two processing times; and, with the slowdown,
    frames are dropped and /diagnostics says so, then turns OK once the input is quiet."""
    from diagnostic_msgs.msg import DiagnosticStatus

    slow = tmp_path / "slow_s"
    slow.write_text("0")
    env = {**env, "PYTHONPATH": os.pathsep.join([str(PLUGINS), env.get("PYTHONPATH", "")]),
           "RELOC_TEST_SLOW_FILE": str(slow)}
    proc = start_node(tmp_path, env, tiny_model, tiny_db, "max_rate_hz:=0.0", "min_inliers:=1",
                      "diagnostics_period_s:=0.5", "image_reliable:=true", "plugins:=[slow_localize]")
    client = Client(env)

    def last_kv():
        return {v.key: v.value for v in client.diag[-1][1].status[0].values}

    def quiet_kv():
        """The counters once the node has settled: two reports in a row with the same count."""
        n = len(client.diag)
        assert client.wait(lambda: len(client.diag) >= n + 2, 10)
        before = last_kv()
        assert client.wait(lambda: len(client.diag) >= n + 4, 10)
        kv = last_kv()
        assert kv["frames received"] == before["frames received"], (before, kv)  # nothing still arriving
        assert kv["frames queued"] == "0" and kv["frames in flight"] == "0", kv  # nothing waiting
        return kv

    try:
        client.wait_for_node(proc)
        # 1. several hundred malformed images, then a valid one still gets a pose
        for m in malformed_images(400):  # paced, so that DDS delivers them to the node's (keep-last) reader
            client.pub_image.publish(m)
            time.sleep(0.02)
        rgb = frames_of(tiny_scene, 1)[0][1]
        time.sleep(0.5)
        client.pub_image.publish(image_msg(rgb, 0))
        assert client.wait(lambda: len(client.poses) >= 1, 20), "no pose after the fuzz set"
        assert proc.poll() is None
        kv = quiet_kv()
        assert int(kv["frames malformed"]) >= 1 and int(kv["poses published"]) >= 1, kv
        print(f"fuzz: 400 sent, {kv['frames received']} received, {kv['frames malformed']} malformed, "
              f"{kv['frames dropped']} dropped, {kv['frames processed']} processed")
        warned = [m.status[0].message for _, m in client.diag if m.status[0].level == DiagnosticStatus.WARN]
        assert any(re.search(r"\d+ malformed frame\(s\) skipped \(\d+ in all\)", w) for w in warned), warned[-5:]

        # 2. a flood at 100 Hz: the node takes what it can (only the newest frame waits)
        data = [f[1] for f in frames_of(tiny_scene, 8)]
        n0 = len(client.poses)
        sent, rss = flood(client, data, 100.0, 8.0, 100, proc.pid)
        kv = quiet_kv()
        assert proc.poll() is None and len(client.poses) > n0
        assert 0 < int(kv["frames received"]) <= 402 + sent
        # the newest frame waits at most one processing time, then takes one
        assert float(kv["latency ms (max of last 100)"]) <= 2 * float(kv["processing ms (max of last 100)"]) + 500, kv
        assert max(rss) - rss[0] < 60, rss  # no growth beyond noise
        print(f"flood: {sent} frames sent in 8 s, {len(client.poses) - n0} poses, {kv['frames dropped']} dropped, "
              f"latency median {kv['latency ms (median of last 100)']} ms max {kv['latency ms (max of last 100)']} "
              f"ms, rss {rss[0]:.0f} -> {max(rss):.0f} MB")

        # 3. localization slowed to 0.25 s a frame, frames at 40 Hz: most must be dropped, and said so
        dropped0 = int(kv["frames dropped"])
        slow.write_text("0.25")
        sent_slow, _ = flood(client, data, 40.0, 4.0, 100 + sent)
        slow.write_text("0")
        kv = quiet_kv()
        assert int(kv["frames dropped"]) > dropped0, kv
        assert float(kv["processing ms (max of last 100)"]) >= 250, kv
        assert float(kv["latency ms (max of last 100)"]) <= 2 * float(kv["processing ms (max of last 100)"]) + 500, kv
        warned = [m.status[0].message for _, m in client.diag if m.status[0].level == DiagnosticStatus.WARN]
        assert any(re.search(r"\d+ frame\(s\) dropped: input faster than processing", w) for w in warned), warned
        # once the input is quiet again, the status is OK
        assert client.wait(lambda: client.diag[-1][1].status[0].level == DiagnosticStatus.OK, 5), \
            client.diag[-1][1].status[0].message
        # every frame accounted for, in every report
        reports = [{v.key: v.value for v in m.status[0].values} for _, m in client.diag]
        bad = [r for r in reports if "frames received" in r and not frames_accounted_for(r)]
        assert not bad and len(reports) > 20, bad[:2]
        print(f"slowed: {sent_slow} frames sent in 4 s, {int(kv['frames dropped']) - dropped0} dropped")
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "malformed image skipped" in out  # throttled warning was logged


@pytest.mark.parametrize("kind", ["directory", "fifo", "unreadable"])
def test_an_unusable_model_or_database_path_is_one_line(kind, tmp_path, monkeypatch, tiny_model, tiny_db):
    """A path that is not a readable regular file: ``<path>: <problem>``, for the model and
    the database (a FIFO is never opened: reading it would block)."""
    for load, error, what, src in ((load_model, ModelFileError, "model file", tiny_model),
                                   (FrameDatabase.load, DatabaseError, "database", tiny_db)):
        path = tmp_path / f"{what.replace(' ', '_')}.{kind}"
        if kind == "directory":
            path.mkdir()
            expect = f"{path}: is a directory, not a {what}"
        elif kind == "fifo":
            os.mkfifo(path)
            expect = f"{path}: is a FIFO (named pipe), not a {what}"
        else:  # tests run as root, which reads any file: the read itself fails
            path.write_bytes(src.read_bytes())
            real = Path.read_bytes

            def denied(self, _path=path, _real=real):
                if self == _path:
                    raise PermissionError(13, "Permission denied", str(self))
                return _real(self)

            monkeypatch.setattr(Path, "read_bytes", denied)
            expect = f"{path}: cannot read the {what} (Permission denied)"
        with pytest.raises(error) as e:
            load(path)
        assert str(e.value) == expect


@pytest.mark.parametrize("case", ["missing_model", "truncated_model", "empty_model", "truncated_db", "mismatched_db",
                                  "bad_parameter", "cuda_device", "wrong_type", "bad_plugin"])
def test_startup_failures_name_the_file_and_publish_nothing(case, tmp_path, env, tiny_model, tiny_db):
    from reloc_ros.core.model import ModelConfig, RelPoseNet, save_model

    model, db, extra, expect = tiny_model, tiny_db, [], []
    if case == "wrong_type":  # an integer for a double, and an unknown refiner: every problem in one line
        extra = ["max_rate_hz:=5", "warn_throttle_s:=2", "refiner:=nope"]
        expect = ["invalid parameters", "max_rate_hz must be a double (got integer 5)",
                  "warn_throttle_s must be a double (got integer 2)", "refiner", "'nope'", "pnp"]
    elif case == "bad_plugin":
        extra = ["plugins:=[no_such_plugin_module]"]
        expect = ["plugin module 'no_such_plugin_module' could not be imported", "ModuleNotFoundError"]
    elif case == "missing_model":
        model = tmp_path / "nope.pt"
        expect = [str(model), "does not exist"]
    elif case == "truncated_model":
        model = tmp_path / "cut.pt"
        model.write_bytes(tiny_model.read_bytes()[:5000])
        expect = [str(model), "model file is truncated (5000 bytes"]
    elif case == "empty_model":
        model = tmp_path / "empty.pt"
        model.write_bytes(b"")
        expect = [str(model), "model file is empty (0 bytes)"]
    elif case == "cuda_device":
        extra = ["device:=cuda:3"]
        expect = ["device 'cuda:3' requested"]
    elif case == "truncated_db":
        db = tmp_path / "cut.db.pt"
        db.write_bytes(tiny_db.read_bytes()[:3000])
        expect = [str(db), "truncated"]
    elif case == "mismatched_db":
        model = tmp_path / "other.pt"
        save_model(model, RelPoseNet(ModelConfig(arch="resnet18", input_size=(48, 64), head_hidden=64)))
        expect = [str(tiny_db), "does not match the model", "fingerprint"]
    else:
        extra = ["fusion.method:=median", "top_k:=0"]
        expect = ["invalid parameters", "fusion.method", "top_k must be >= 1"]
    proc = start_node(tmp_path, env, model, db, *extra)
    out = proc.communicate(timeout=90)[0]
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "cannot start" in out and all(e in out for e in expect), out
    assert "ready:" not in out
    (line,) = [ln for ln in out.splitlines() if "cannot start" in ln]
    # one line a user can read (paths aside), not the library's text
    assert len(re.sub(r"/[^\s)]+", "PATH", line)) < 300, line
