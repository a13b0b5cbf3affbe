"""reloc_ros.ros.tf: message conversions, the fallback buffer's logic fed directly
(chains, both directions, interpolation, expiry, threads), broadcaster plumbing, and a real
Fast DDS exchange between two nodes in one process (fallback forced)."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped

from reloc_ros.core import geometry as geo
from reloc_ros.ros import messages as msgs
from reloc_ros.ros.messages import stamp_to_ns
from reloc_ros.ros.messages import time_msg as stamp_to_msg
from reloc_ros.ros import tf as tfc
from reloc_ros.ros.tf import FallbackTfBuffer, TfLookupError, TransformStore, tf_backend


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def pose(t=(0, 0, 0), R=None) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.eye(3) if R is None else R
    T[:3, 3] = t
    return T


def yaw_deg(T: np.ndarray) -> float:
    return math.degrees(math.atan2(T[1, 0], T[0, 0]))


# --------------------------------------------------------------------------- time helpers
def test_stamp_helpers():
    assert stamp_to_ns(None) == 0
    assert stamp_to_ns(12) == 12  # ints are nanoseconds, floats seconds
    assert stamp_to_ns(12.0) == 12_000_000_000
    assert stamp_to_ns(1.25) == 1_250_000_000
    assert stamp_to_ns(1_700_000_000.123456789) == pytest.approx(1_700_000_000_123_456_789, abs=500)
    m = stamp_to_msg(3.5)
    assert (m.sec, m.nanosec) == (3, 500_000_000)
    assert stamp_to_ns(m) == 3_500_000_000
    from rclpy.time import Time

    assert stamp_to_ns(Time(nanoseconds=42)) == 42
    for bad in (-1.0, float("nan"), "1.0", True):
        with pytest.raises(ValueError):
            stamp_to_ns(bad)
    with pytest.raises(ValueError):
        stamp_to_msg(2.0**31)


# --------------------------------------------------------------------------- conversions
def test_make_transform_stamped_fields_and_quaternion_order():
    T = pose((1.5, -2.0, 0.25), rot_z(90))
    msg = msgs.transform_stamped_msg(T, 1234.5, "map", "camera")
    assert isinstance(msg, TransformStamped)
    assert (msg.header.frame_id, msg.child_frame_id) == ("map", "camera")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 500_000_000)
    tr = msg.transform
    assert (tr.translation.x, tr.translation.y, tr.translation.z) == (1.5, -2.0, 0.25)
    h = math.sqrt(0.5)  # 90 deg about z: (x, y, z, w) = (0, 0, sin 45, cos 45) in ROS order
    np.testing.assert_allclose([tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w],
                               [0, 0, h, h], atol=1e-12)
    np.testing.assert_allclose(msgs.transform_to_matrix(msg), T, atol=1e-12)
    np.testing.assert_allclose(msgs.transform_to_matrix(msg.transform), T, atol=1e-12)


def test_conversion_round_trip_random_poses():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = geo.normalize_quat(rng.normal(size=4))
        T = geo.make_pose(rng.normal(size=3) * 5, q)
        back = msgs.transform_to_matrix(msgs.transform_stamped_msg(T, 0.0, "a", "b"))
        np.testing.assert_allclose(back, T, atol=1e-12)


@pytest.mark.parametrize("T, parent, child", [
    (np.eye(3), "a", "b"),
    (np.full((4, 4), np.nan), "a", "b"),
    (np.diag([2.0, 1, 1, 1]), "a", "b"),
    (np.eye(4), "", "b"),
    (np.eye(4), "a", "a"),
    (np.eye(4), "/a", "b"),
])
def test_make_transform_stamped_rejects(T, parent, child):
    with pytest.raises(ValueError):
        msgs.transform_stamped_msg(T, 0.0, parent, child)


def test_transform_to_matrix_rejects_zero_quaternion():
    msg = msgs.transform_stamped_msg(np.eye(4), 0.0, "a", "b")
    msg.transform.rotation.w = 0.0
    with pytest.raises(ValueError):
        msgs.transform_to_matrix(msg)


# --------------------------------------------------------------------------- fallback logic
T0, T1 = 100.0, 101.0
M = pose((10.0, 5.0, 0.0), rot_z(30))  # map -> odom, constant but dynamic
ODOM_BASE_0 = pose((0.0, 0.0, 0.0))
ODOM_BASE_1 = pose((2.0, 0.0, 0.0), rot_z(90))
CAM = pose((0.1, 0.0, 0.5), rot_x(-90) @ rot_z(0))  # base -> camera, static
IMU = pose((0.0, 0.2, 0.1), rot_z(180))  # base -> imu, static


def tree(cache_time_s: float = 10.0, tol: float = 0.01) -> TransformStore:
    s = TransformStore(cache_time_s, tol)
    for t in (T0, T1):
        s.set_matrix("map", "odom", t, M)
    s.set_matrix("odom", "base", T0, ODOM_BASE_0)
    s.set_matrix("odom", "base", T1, ODOM_BASE_1)
    s.set_matrix("base", "camera", 5.0, CAM, static=True)
    s.set_matrix("base", "imu", 5.0, IMU, static=True)
    return s


def test_chain_lookup_at_a_sample_both_directions():
    s = tree()
    want = M @ ODOM_BASE_1 @ CAM
    np.testing.assert_allclose(s.lookup("map", "camera", T1), want, atol=1e-12)
    np.testing.assert_allclose(s.lookup("camera", "map", T1), geo.invert(want), atol=1e-12)
    np.testing.assert_allclose(s.lookup("odom", "camera", T0), ODOM_BASE_0 @ CAM, atol=1e-12)
    np.testing.assert_allclose(s.lookup("base", "odom", T1), geo.invert(ODOM_BASE_1), atol=1e-12)


def test_sibling_frames_meet_at_the_common_ancestor():
    s = tree()
    np.testing.assert_allclose(s.lookup("camera", "imu", T0), geo.invert(CAM) @ IMU, atol=1e-12)
    np.testing.assert_allclose(s.lookup("imu", "camera", T0), geo.invert(IMU) @ CAM, atol=1e-12)


def test_interpolation_at_mid_stamp_is_lerp_and_slerp():
    s = tree()
    mid = s.lookup("odom", "base", (T0 + T1) / 2)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)  # translation midpoint
    assert yaw_deg(mid) == pytest.approx(45.0, abs=1e-9)  # slerp: half the angle
    np.testing.assert_allclose(mid[:3, :3], rot_z(45), atol=1e-12)
    quarter = s.lookup("odom", "base", T0 + 0.25)
    np.testing.assert_allclose(quarter[:3, 3], [0.5, 0.0, 0.0], atol=1e-12)
    assert yaw_deg(quarter) == pytest.approx(22.5, abs=1e-9)
    # through the whole chain, both directions
    full = s.lookup("map", "camera", (T0 + T1) / 2)
    np.testing.assert_allclose(full, M @ pose((1, 0, 0), rot_z(45)) @ CAM, atol=1e-12)
    back = s.lookup("camera", "map", (T0 + T1) / 2)
    np.testing.assert_allclose(back, geo.invert(full), atol=1e-12)


def test_slerp_takes_the_short_way_when_quaternion_signs_differ():
    s = TransformStore()
    s.set_matrix("a", "b", 1.0, pose(R=rot_z(170)))
    msg = msgs.transform_stamped_msg(pose(R=rot_z(-170)), 2.0, "a", "b")
    r = msg.transform.rotation  # the same rotation with the opposite quaternion sign
    r.x, r.y, r.z, r.w = -r.x, -r.y, -r.z, -r.w
    assert s.set_transform(msg)
    assert abs(yaw_deg(s.lookup("a", "b", 1.5))) == pytest.approx(180.0, abs=1e-9)  # not 0


def test_out_of_range_stamps_and_tolerance():
    s = tree(tol=0.01)
    assert s.lookup("map", "base", T1 + 0.005) is not None  # within 10 ms: nearest sample
    np.testing.assert_allclose(s.lookup("map", "base", T1 + 0.005), M @ ODOM_BASE_1, atol=1e-12)
    np.testing.assert_allclose(s.lookup("map", "base", T0 - 0.009), M @ ODOM_BASE_0, atol=1e-12)
    for t in (T1 + 0.02, T0 - 0.02, 50.0, 1000.0):
        with pytest.raises(TfLookupError, match="extrapolation"):
            s.lookup("map", "base", t)
    strict = tree(tol=0.0)
    with pytest.raises(TfLookupError):
        strict.lookup("map", "base", T1 + 1e-6)
    # static-only paths are valid at any time
    np.testing.assert_allclose(s.lookup("base", "camera", 1e6), CAM, atol=1e-12)
    np.testing.assert_allclose(s.lookup("imu", "camera", 0.001), geo.invert(IMU) @ CAM, atol=1e-12)


def test_latest_time_lookup():
    s = tree()
    s.set_matrix("odom", "base", T1 + 0.5, pose((3.0, 0, 0)))
    # latest common time of map->odom (101.0) and odom->base (101.5) is 101.0
    np.testing.assert_allclose(s.lookup("map", "base", None), M @ ODOM_BASE_1, atol=1e-12)
    np.testing.assert_allclose(s.lookup("map", "base", 0), M @ ODOM_BASE_1, atol=1e-12)
    np.testing.assert_allclose(s.lookup("odom", "base"), pose((3.0, 0, 0)), atol=1e-12)


def test_unconnected_and_unknown_frames():
    s = tree()
    s.set_matrix("world", "other", T0, np.eye(4))
    with pytest.raises(TfLookupError, match="not connected"):
        s.lookup("map", "other", T0)
    with pytest.raises(TfLookupError, match="does not exist"):
        s.lookup("map", "nowhere", T0)
    np.testing.assert_allclose(s.lookup("camera", "camera", T0), np.eye(4))
    with pytest.raises(TfLookupError):
        s.lookup("ghost", "ghost", T0)
    assert s.frames() == {"map", "odom", "base", "camera", "imu", "world", "other"}


def test_cache_expiry_keeps_cache_time_before_the_newest_sample():
    s = TransformStore(cache_time_s=2.0, extrapolation_tolerance_s=0.0)
    for k in range(11):  # 0..10 s, one per second
        s.set_matrix("odom", "base", float(k), pose((float(k), 0, 0)))
    assert s._dynamic["base"].times[0] == 8 * 10**9 and len(s._dynamic["base"].times) == 3
    with pytest.raises(TfLookupError, match="extrapolation"):
        s.lookup("odom", "base", 5.0)
    np.testing.assert_allclose(s.lookup("odom", "base", 9.5)[:3, 3], [9.5, 0, 0], atol=1e-12)
    # an out-of-order sample inside the window is inserted in order
    s.set_matrix("odom", "base", 9.25, pose((100.0, 0, 0)))
    assert s.lookup("odom", "base", 9.25)[0, 3] == pytest.approx(100.0)
    # a sample older than the whole window means time jumped back (bag loop): history restarts
    s.set_matrix("odom", "base", 1.0, pose((-1.0, 0, 0)))
    assert s._dynamic["base"].times == [10**9]
    assert s.lookup("odom", "base", 1.0)[0, 3] == pytest.approx(-1.0)


def test_reparenting_and_static_dynamic_switch():
    s = tree()
    s.set_matrix("map", "base", T0, pose((7.0, 0, 0)))  # base gets a new parent: map
    np.testing.assert_allclose(s.lookup("map", "camera", T0), pose((7.0, 0, 0)) @ CAM, atol=1e-12)
    # odom -> base is gone: odom and camera now meet at map
    np.testing.assert_allclose(s.lookup("odom", "camera", T0),
                               geo.invert(M) @ pose((7.0, 0, 0)) @ CAM, atol=1e-12)
    s.set_matrix("base", "camera", T0, pose((1.0, 0, 0)))  # camera becomes dynamic
    with pytest.raises(TfLookupError):
        s.lookup("base", "camera", T0 + 5)
    s.set_matrix("base", "camera", 0.0, CAM, static=True)  # and static again
    np.testing.assert_allclose(s.lookup("base", "camera", T0 + 5), CAM, atol=1e-12)


def test_loop_in_the_tree_is_reported_not_hung():
    s = TransformStore()
    s.set_matrix("a", "b", 1.0, np.eye(4), static=True)
    s.set_matrix("b", "c", 1.0, np.eye(4), static=True)
    s.set_matrix("c", "a", 1.0, np.eye(4), static=True)
    with pytest.raises(TfLookupError, match="loop"):
        s.lookup("a", "b", 1.0)


def test_malformed_transforms_are_rejected_and_counted():
    s = TransformStore()
    good = msgs.transform_stamped_msg(np.eye(4), 1.0, "a", "b")
    assert s.set_transform(good)

    def variant(**kw):
        m = msgs.transform_stamped_msg(np.eye(4), 1.0, "a", "b")
        for path, v in kw.items():
            obj = m
            *head, last = path.split(".")
            for h in head:
                obj = getattr(obj, h)
            setattr(obj, last, v)
        return m

    bad = [variant(**{"header.frame_id": ""}), variant(child_frame_id="a"),
           variant(child_frame_id="/b"), variant(**{"transform.translation.x": float("nan")}),
           variant(**{"transform.rotation.w": 0.0}), variant(**{"header.frame_id": None}),
           SimpleNamespace(header=None)]
    assert not any(s.set_transform(m) for m in bad)
    assert s.rejected == len(bad)


def test_lookup_waits_for_data_from_another_thread():
    s = TransformStore()
    s.set_matrix("odom", "base", 1.0, pose((1.0, 0, 0)))

    def later():
        time.sleep(0.15)
        s.set_matrix("odom", "base", 2.0, pose((3.0, 0, 0)))

    th = threading.Thread(target=later)
    start = time.monotonic()
    th.start()
    with pytest.raises(TfLookupError):
        s.lookup("odom", "base", 1.5, timeout_s=0.0)  # not yet
    got = s.lookup("odom", "base", 1.5, timeout_s=5.0)
    waited = time.monotonic() - start
    th.join()
    assert got[0, 3] == pytest.approx(2.0)
    assert 0.1 < waited < 2.0  # woken by the insert, not by the timeout
    t = time.monotonic()
    with pytest.raises(TfLookupError):
        s.lookup("odom", "base", 50.0, timeout_s=0.2)
    assert 0.15 < time.monotonic() - t < 1.5


def test_concurrent_writers_and_readers():
    s = TransformStore(cache_time_s=1.0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(child):
        try:
            for k in range(1500):
                s.set_matrix("odom", child, k * 0.01, pose((k * 0.01, 0, 0), rot_z(k % 360)))
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    def reader():
        try:
            while not stop.is_set():
                for target, source in (("odom", "base"), ("base", "other"), ("other", "odom")):
                    try:
                        T = s.lookup(target, source, None)
                        assert geo.is_rigid(T, 1e-9)
                    except TfLookupError:
                        pass
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(c,)) for c in ("base", "other")]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads + readers:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    for th in readers:
        th.join()
    assert not errors, errors
    assert len(s._dynamic["base"].times) == 101  # 1 s of 100 Hz data (both ends included)


def test_tf_buffer_without_node_is_fed_directly():
    buf = FallbackTfBuffer(None, cache_time_s=5.0)
    assert buf.backend == "fallback"
    buf.set_transform(msgs.transform_stamped_msg(M, T0, "map", "odom"))
    buf.set_transform(msgs.transform_stamped_msg(ODOM_BASE_0, T0, "odom", "base"))
    buf.set_transform(msgs.transform_stamped_msg(CAM, 0.0, "base", "camera"), static=True)
    np.testing.assert_allclose(buf.lookup("map", "camera", T0), M @ ODOM_BASE_0 @ CAM, atol=1e-12)
    assert buf.lookup("map", "camera", T0 + 1.0) is None
    assert buf.lookup("map", "nowhere", T0) is None
    assert buf.lookup("map", "camera", -5.0) is None  # bad stamp: None, not an exception
    with pytest.raises(TfLookupError, match="extrapolation"):
        buf.lookup_or_raise("map", "camera", T0 + 1.0)
    assert issubclass(TfLookupError, LookupError)


def test_backend_selection():
    assert tfc.BACKEND in ("tf2_ros", "fallback") and tfc.BACKEND_NOTE
    with pytest.raises(ValueError):
        tf_backend("nope")
    if tfc._tf2_ros is None:
        with pytest.raises(ImportError):
            tf_backend("tf2_ros")


# --------------------------------------------------------------------------- tf2_ros plumbing
class _FakePub:
    def __init__(self):
        self.sent = []

    def publish(self, msg):
        self.sent.append([t.child_frame_id for t in msg.transforms])
        self.last = msg


class _AppendOnlyStaticBroadcaster:
    """Mimics rclpy's tf2_ros.StaticTransformBroadcaster (accumulates, keeps the first pose
    of a child frame)."""

    instances: list = []

    def __init__(self, node):
        from tf2_msgs.msg import TFMessage

        self.instances.append(self)
        self.pub_tf = _FakePub()
        self.net_message = TFMessage()
        self._child_frame_ids = set()

    def sendTransform(self, transform):
        for t in transform:
            if t.child_frame_id not in self._child_frame_ids:
                self._child_frame_ids.add(t.child_frame_id)
                self.net_message.transforms.append(t)
        self.pub_tf.publish(self.net_message)


class _PassThroughStaticBroadcaster:
    """Mimics older releases that publish only what they are given."""

    instances: list = []

    def __init__(self, node):
        self.instances.append(self)
        self.pub_tf = _FakePub()

    def sendTransform(self, transform):
        from tf2_msgs.msg import TFMessage

        self.pub_tf.publish(TFMessage(transforms=list(transform)))


@pytest.mark.parametrize("impl", [_AppendOnlyStaticBroadcaster, _PassThroughStaticBroadcaster])
def test_static_broadcaster_over_tf2_ros_accumulates_and_replaces(monkeypatch, impl):
    monkeypatch.setattr(tfc, "_tf2_ros", SimpleNamespace(StaticTransformBroadcaster=impl))
    b = tfc.StaticTfBroadcaster(None, backend="tf2_ros")
    b.send(msgs.transform_stamped_msg(CAM, 0.0, "base", "camera"))
    b.send([msgs.transform_stamped_msg(IMU, 0.0, "base", "imu")])
    new_cam = pose((9.0, 0, 0))
    b.send([msgs.transform_stamped_msg(new_cam, 0.0, "base", "camera")])
    last = impl.instances[-1].pub_tf.last
    assert sorted(t.child_frame_id for t in last.transforms) == ["camera", "imu"]
    got = {t.child_frame_id: msgs.transform_to_matrix(t) for t in last.transforms}
    np.testing.assert_allclose(got["camera"], new_cam, atol=1e-12)
    np.testing.assert_allclose(got["imu"], IMU, atol=1e-12)
    assert len(b.transforms) == 2


def test_broadcaster_over_tf2_ros_passes_lists(monkeypatch):
    calls = []
    fake = SimpleNamespace(TransformBroadcaster=lambda node: SimpleNamespace(
        sendTransform=lambda lst: calls.append([t.child_frame_id for t in lst])))
    monkeypatch.setattr(tfc, "_tf2_ros", fake)
    b = tfc.TfBroadcaster(None, backend="tf2_ros")
    b.send(msgs.transform_stamped_msg(CAM, 0.0, "base", "camera"))
    b.send([])
    b.send([msgs.transform_stamped_msg(IMU, 0.0, "base", "imu"),
            msgs.transform_stamped_msg(CAM, 0.0, "base", "camera")])
    assert calls == [["camera"], ["imu", "camera"]]


# --------------------------------------------------------------------------- real DDS
@pytest.fixture
def ros_context(tmp_path, monkeypatch):
    """A private rclpy context on a random domain, loopback only, logs in tmp."""
    import rclpy

    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    if not os.environ.get("HOME"):
        monkeypatch.setenv("HOME", str(tmp_path))
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        ctx.try_shutdown()


def _wait_for(cond, timeout_s: float, tick=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        v = cond()
        if v is not None and v is not False:
            return v
        time.sleep(0.05)
    return None


@pytest.mark.timeout(60)
def test_broadcast_and_listen_over_fast_dds(ros_context):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    talker = rclpy.create_node("reloc_tf_talker", context=ros_context)
    static = tfc.StaticTfBroadcaster(talker, backend="fallback")
    dynamic = tfc.TfBroadcaster(talker, backend="fallback")
    # Static transforms sent in two calls before any listener exists: the transient-local
    # /tf_static (depth 1) must deliver both, so every publication must carry both.
    static.send(msgs.transform_stamped_msg(CAM, 0.0, "base", "camera"))
    static.send([msgs.transform_stamped_msg(IMU, 0.0, "base", "imu")])

    listener = rclpy.create_node("reloc_tf_listener", context=ros_context)
    buf = tf_backend("fallback").buffer(listener, cache_time_s=10.0)
    executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
    executor.add_node(talker)
    executor.add_node(listener)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        got_static = _wait_for(lambda: buf.lookup("imu", "camera"), 20.0)
        assert got_static is not None, "static transforms never arrived (transient local)"
        np.testing.assert_allclose(got_static, geo.invert(IMU) @ CAM, atol=1e-9)

        def publish_dynamic():  # /tf is volatile: keep publishing until the listener has it
            dynamic.send([msgs.transform_stamped_msg(M, t, "map", "odom") for t in (T0, T1)]
                         + [msgs.transform_stamped_msg(ODOM_BASE_0, T0, "odom", "base")])
            dynamic.send([msgs.transform_stamped_msg(ODOM_BASE_1, T1, "odom", "base")])

        mid = (T0 + T1) / 2
        got = _wait_for(lambda: buf.lookup("map", "camera", mid, timeout_s=0.05), 20.0,
                        tick=publish_dynamic)
        assert got is not None, "dynamic transforms never arrived over /tf"
        np.testing.assert_allclose(got, M @ pose((1, 0, 0), rot_z(45)) @ CAM, atol=1e-9)
        np.testing.assert_allclose(buf.lookup("camera", "map", T1),
                                   geo.invert(M @ ODOM_BASE_1 @ CAM), atol=1e-9)

        # a later static update for the same child replaces the earlier one
        new_cam = pose((0.3, 0.0, 0.4), rot_x(-90))
        static.send(msgs.transform_stamped_msg(new_cam, 0.0, "base", "camera"))
        updated = _wait_for(
            lambda: (lambda T: T if T is not None and np.allclose(T, new_cam, atol=1e-9) else None)(
                buf.lookup("base", "camera")), 10.0)
        assert updated is not None
        assert buf.lookup("base", "imu") is not None  # still there
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)
        buf.destroy()
        listener.destroy_node()
        talker.destroy_node()


def test_slerp_is_exact_at_small_angles_too():
    # a constant-rate turn: slerp at a fraction a must give a times the angle; the former
    # normalised-lerp shortcut below 3.6 degrees was 1e-6 rad off
    from reloc_ros.ros.tf_store import slerp

    for angle in (0.0626, 1e-3, 1e-6):
        q0, q1 = np.array([1.0, 0, 0, 0]), np.array([math.cos(angle / 2), 0, 0, math.sin(angle / 2)])
        for a in (0.1, 0.25, 0.7):
            q = slerp(q0, q1, a)
            assert 2 * math.atan2(q[3], q[0]) == pytest.approx(a * angle, abs=1e-15)


def test_sample_tolerance_refuses_gaps_and_path_problem_explains():
    s = TransformStore(sample_tolerance_s=0.05, extrapolation_tolerance_s=0.05)
    s.set_matrix("odom", "base", 1.0, pose((0, 0, 0)))
    s.set_matrix("odom", "base", 1.04, pose((0.04, 0, 0)))
    s.set_matrix("odom", "base", 2.0, pose((1.0, 0, 0)))  # a 0.96 s dropout
    np.testing.assert_allclose(s.lookup("odom", "base", 1.02)[:3, 3], [0.02, 0, 0], atol=1e-12)
    np.testing.assert_allclose(s.lookup("odom", "base", 1.09)[:3, 3], [0.09, 0, 0], atol=1e-12)  # 0.05 from a sample
    with pytest.raises(TfLookupError, match="gap: 'odom' -> 'base' has no sample within 0.050 s"):
        s.lookup("odom", "base", 1.5)
    plain = TransformStore()  # tf2: interpolates across any gap
    plain.set_matrix("odom", "base", 1.0, pose((0, 0, 0)))
    plain.set_matrix("odom", "base", 2.0, pose((1.0, 0, 0)))
    np.testing.assert_allclose(plain.lookup("odom", "base", 1.5)[:3, 3], [0.5, 0, 0], atol=1e-12)
    s.set_matrix("map", "odom", 1.0, pose((0, 0, 0)), static=True)
    assert s.path_problem("map", "base") is None
    assert s.path_problem("map", "camera") == "frame 'camera' does not exist"
    s.set_matrix("robot2", "camera", 1.0, pose((0, 0, 0)), static=True)
    assert "not connected" in s.path_problem("map", "camera")
    assert ("odom", "base", "3 samples") in s.edges() and ("map", "odom", "static") in s.edges()
