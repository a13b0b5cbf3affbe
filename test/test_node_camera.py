"""The node on a real camera stream: lens distortion from camera_info, camera_info from every
QoS profile that drivers use, and the frames that come before the first camera_info.

First the core's undistorter and the CameraInfo reader (no ROS); then the node as a separate
process over real Fast DDS, as in test_node.py (a per-run ROS_DOMAIN_ID, loopback
discovery, the test process as a second participant).
"""

from __future__ import annotations

import re
import time

import cv2
import numpy as np
import pytest
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.distortion import DISTORTION_MODELS, UndistortCache, Undistorter, undistort_color
from reloc_ros.core.geometry import make_pose, pose_errors, quat_from_ros
from reloc_ros.data.sevenscenes import Scene, read_color
from reloc_ros.ros.diagnostics import Snapshot, Stats, report
from reloc_ros.ros.messages import CameraCalibration, camera_info_msg, camera_info_to_calibration, stamp_to_ns
from reloc_ros.tools.lifecycle_benchmark import LifecycleClient
from rosutil import CAMERA_FRAME, Client, image_msg, ros_env, start_node, stop_node
from test_node import frames_accounted_for

#: One camera of each model at 160x120 (the tiny scene's K, doubled), with a distortion as
#: strong as a wide-angle webcam's.
K = np.array([[131.25, 0.0, 79.625], [0.0, 131.25, 59.625], [0.0, 0.0, 1.0]])
SIZE = (160, 120)
DISTORTIONS = {
    "plumb_bob": [-0.28, 0.07, 0.001, -0.0005, 0.0],
    "rational_polynomial": [-0.3, 0.1, 0.0005, -0.0003, 0.0, 0.05, 0.02, 0.0],
    "equidistant": [-0.013, 0.02, -0.01, 0.002],
}
#: Iterate cv2's point undistortion to convergence (its default stops after 5 iterations).
CONVERGED = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


def _undistort_points(pts: np.ndarray, D, model: str) -> np.ndarray:
    """OpenCV's undistortion of pixel positions (N, 2), back to pixels with the same K."""
    pts = np.asarray(pts, np.float64).reshape(-1, 1, 2)
    if model == "equidistant":
        return cv2.fisheye.undistortPoints(pts, K, np.asarray(D, np.float64), P=K, criteria=CONVERGED).reshape(-1, 2)
    return cv2.undistortPoints(pts, K, np.asarray(D, np.float64), R=None, P=K, criteria=CONVERGED).reshape(-1, 2)


def _pixels(w: int, h: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return np.stack([u.ravel(), v.ravel()], 1)


def _distort(img: np.ndarray, D, model: str) -> np.ndarray:
    """What a camera with distortion ``D`` would see of the pinhole image ``img``: each
    distorted pixel samples ``img`` where OpenCV undistorts it to (bilinear, black outside)."""
    h, w = img.shape[:2]
    src = _undistort_points(_pixels(w, h), D, model).reshape(h, w, 2).astype(np.float32)
    return cv2.remap(img, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


# --------------------------------------------------------------------------- the undistorter
@pytest.mark.parametrize("model", DISTORTION_MODELS)
def test_undistorter_inverts_opencvs_distortion(model):
    """Each undistorted pixel samples the distorted image where cv2.undistortPoints (or its
    fisheye twin) sends back to that very pixel; and an image distorted with OpenCV comes
    back: within one grey level where the round trip stays inside the image, while the
    distorted image itself is tens of levels off."""
    D = DISTORTIONS[model]
    und = Undistorter(K, D, model, SIZE)
    w, h = SIZE
    src = np.stack([und._mx.ravel(), und._my.ravel()], 1)  # where each output pixel samples
    back = _undistort_points(src, D, model)
    assert np.abs(back - _pixels(w, h)).max() < 1e-3
    assert np.abs(src - _pixels(w, h)).max() > 5  # a real distortion: pixels move by several pixels

    yy, xx = np.mgrid[0:h, 0:w]
    grey = (127 + 60 * np.sin(xx / 9.0) + 50 * np.cos(yy / 7.0 + xx / 23.0)).clip(0, 255).astype(np.uint8)
    img = np.dstack([grey, 255 - grey, grey // 2])
    distorted = _distort(img, D, model)
    out = und(distorted)
    assert out.shape == img.shape and out.dtype == np.uint8
    valid = und(_distort(np.full((h, w), 255, np.uint8), D, model)) == 255  # no black border blended in
    assert valid.mean() > 0.9
    err = np.abs(out.astype(int) - img.astype(int))[valid]
    assert err.max() <= 2 and err.mean() < 0.5, (err.max(), err.mean())
    assert np.abs(distorted.astype(int) - img.astype(int))[valid].mean() > 10
    np.testing.assert_array_equal(undistort_color(distorted, K, D, model), out)  # the one-image helper agrees


@pytest.mark.parametrize("model", DISTORTION_MODELS)
def test_zero_distortion_is_the_identity_without_a_copy(model):
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    n = len(DISTORTIONS[model])
    assert Undistorter(K, [0.0] * n, model, SIZE)(img) is img
    assert Undistorter(K, [], model, SIZE)(img) is img
    assert undistort_color(img, K, [0.0] * n, model) is img
    cache = UndistortCache()
    assert cache(img, K, [0.0] * n, model) is img and cache.builds == 0


@pytest.mark.parametrize("model, D, expect", [
    ("kannala_brandt", [0.1, 0.0, 0.0, 0.0], "unsupported distortion model 'kannala_brandt'"),
    ("plumb_bob", [0.1, 0.0, 0.0], "plumb_bob with 3 coefficients"),
    ("equidistant", [0.1, 0.0, 0.0, 0.0, 0.0], "equidistant distortion needs 4 coefficients, got 5"),
    ("plumb_bob", [0.1, float("nan"), 0.0, 0.0, 0.0], "not finite"),
])
def test_a_distortion_that_cannot_be_undone_is_one_clear_error(model, D, expect):
    with pytest.raises(ValueError, match=re.escape(expect)):
        Undistorter(K, D, model, SIZE)
    img = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(ValueError, match=re.escape(expect)):
        UndistortCache()(img, K, D, model)


def test_the_tables_are_built_once_per_camera_and_image_size():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    D = DISTORTIONS["plumb_bob"]
    cache = UndistortCache()
    first = cache(img, K, D, "plumb_bob")
    for _ in range(5):
        np.testing.assert_array_equal(cache(img, K.copy(), list(D), "plumb_bob"), first)
    assert cache.builds == 1
    cache(img, K, [-0.2, 0.05, 0.0, 0.0, 0.0], "plumb_bob")  # a new calibration
    assert cache.builds == 2
    small = cv2.resize(img, (80, 60))
    K2 = Intrinsics(131.25, 131.25, 79.625, 59.625, 160, 120).scaled(80, 60).K
    assert cache(small, K2, D, "plumb_bob").shape == small.shape  # a new image size
    assert cache.builds == 3
    with pytest.raises(ValueError, match="image is 80x60, the undistortion tables are for 160x120"):
        Undistorter(K, D, "plumb_bob", SIZE)(small)


# --------------------------------------------------------------------------- CameraInfo
def _info(intr: Intrinsics, D=None, model: str = "plumb_bob", stamp: float = 1.0) -> CameraInfo:
    msg = camera_info_msg(intr, stamp, CAMERA_FRAME)
    if D is not None:
        msg.d = [float(d) for d in D]
        msg.distortion_model = model
    return msg


def test_camera_info_gives_intrinsics_and_distortion():
    intr = Intrinsics(131.25, 131.0, 79.625, 59.5, 160, 120)
    cal = camera_info_to_calibration(_info(intr, DISTORTIONS["rational_polynomial"], "rational_polynomial"))
    assert cal == CameraCalibration(intr, "rational_polynomial", tuple(DISTORTIONS["rational_polynomial"]))
    assert cal.distorted and "rational_polynomial distortion" in cal.describe()
    plain = camera_info_to_calibration(_info(intr))
    assert plain.intrinsics == intr and plain.D == (0.0,) * 5 and not plain.distorted
    assert plain.describe() == "fx 131.2 fy 131.0 cx 79.6 cy 59.5 (160x120), no distortion"
    # repeated messages of one camera compare equal (the node rebuilds nothing for them)
    assert camera_info_to_calibration(_info(intr, stamp=2.0)) == plain
    # an uncalibrated driver's empty model and D: a pinhole camera
    msg = _info(intr)
    msg.distortion_model, msg.d = "", []
    assert not camera_info_to_calibration(msg).distorted


@pytest.mark.parametrize("model, D, expect", [
    ("kannala_brandt", [0.1, 0.0, 0.0, 0.0], "unsupported distortion model 'kannala_brandt'"),
    ("plumb_bob", [0.1, 0.2], "distortion model plumb_bob with 2 coefficients"),
    ("equidistant", [float("inf"), 0.0, 0.0, 0.0], "distortion coefficients are not finite"),
])
def test_camera_info_with_a_bad_distortion_is_one_line(model, D, expect):
    with pytest.raises(ValueError) as e:
        camera_info_to_calibration(_info(Intrinsics(131.25, 131.25, 79.6, 59.6, 160, 120), D, model))
    text = str(e.value)
    assert "CameraInfo" in text and expect in text and "\n" not in text, text


def test_diagnostics_count_frames_without_intrinsics():
    """The new outcome is in the report, and in the identity every frame satisfies."""
    stats = Stats()
    stats.count.update(received=7, no_intrinsics=3, processed=4, published=4, camera_info=9, camera_info_ignored=2)
    kv = report(Snapshot(state="active", configured=True, stats=stats, distortion="plumb_bob", undistort_builds=1,
                         camera=Intrinsics(131.25, 131.25, 79.6, 59.6, 160, 120)))
    assert kv["frames without intrinsics"] == 3 and kv["camera info messages"] == 9
    assert kv["camera info ignored"] == 2 and kv["undistortion tables built"] == 1
    assert kv["camera info"] == "160x120 fx 131.2, distortion plumb_bob"
    assert frames_accounted_for({k: str(v) for k, v in kv.items()})


# --------------------------------------------------------------------------- the node over DDS
def _kv(client: Client) -> dict:
    return {v.key: v.value for v in client.diag[-1][1].status[0].values} if client.diag else {}


def _settled(client: Client, received: int, timeout: float = 60.0) -> dict:
    """The node's counters once it has received ``received`` frames and finished them all."""
    def done():
        kv = _kv(client)
        return kv.get("frames received") == str(received) and kv["frames queued"] == "0" \
            and kv["frames in flight"] == "0"

    assert client.wait(done, timeout), _kv(client)
    kv = _kv(client)
    assert frames_accounted_for(kv), kv
    return kv


def _send(client: Client, rgb: np.ndarray, k: int, received: int) -> dict:
    """Publish one frame (stamp from ``k``) and wait until the node is done with it: no frame
    is ever dropped, however slow the machine."""
    client.pub_image.publish(image_msg(rgb, k))
    return _settled(client, received)


def _until_diag(client: Client, publish, cond, timeout: float = 20.0) -> dict:
    """Call ``publish()`` every 0.1 s until ``cond(kv)`` holds for the node's counters."""
    end = time.time() + timeout
    while time.time() < end:
        publish()
        if client.wait(lambda: bool(_kv(client)) and cond(_kv(client)), 0.1):
            return _kv(client)
    raise AssertionError(f"condition not met within {timeout:g} s: {_kv(client)}")


def _info_publisher(client: Client, qos: QoSProfile):
    """A camera_info publisher with ``qos``. Every volatile one is incompatible with the
    node's latched subscription, by design; rclpy's default handler of that event logs with
    the deprecated ``logger.warn``, which under pytest's warning capture raises on its second
    call and ends the client's executor thread. So this one is silenced."""
    return client.node.create_publisher(CameraInfo, "/camera_info", qos,
                                        event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda _e: None))


def _pose_of(m) -> np.ndarray:
    p, o = m.pose.pose.position, m.pose.pose.orientation
    return make_pose([p.x, p.y, p.z], quat_from_ros(o.x, o.y, o.z, o.w))


@pytest.fixture
def env(tmp_path):
    return ros_env(tmp_path)


#: Published poses of the undistorted stream and of the original one agree this well, frame
#: by frame (see the test's docstring).
TOL_T_M, TOL_R_DEG = 0.03, 2.0


@pytest.mark.timeout(240)
def test_a_distorted_stream_is_undistorted_with_its_camera_info(tmp_path, env, tiny_model, tiny_kp_db, tiny_scene):
    """The PnP refiner on a plumb_bob stream (D = [-0.28, 0.07, 0.001, -0.0005, 0], corners
    moved by about 14 pixels at 160x120), in one node, three phases of the same six map views:

    A. the pinhole images with a D = 0 camera_info (the reference);
    B. the distorted images with a D = 0 camera_info (the distortion ignored);
    C. the distorted images with their camera_info's D: the node undistorts them.

    C's poses agree with A's within 3 cm and 2° on every frame. That tolerance is the blur of
    two bilinear remaps (distorting, then undistorting) seen by SIFT at the refiner's
    160x120: offline the same pipeline gives at most 1.5 cm and 1.1° (median 0.6 cm and
    0.3°). B's median translation difference exceeds the same 3 cm (offline about 7 cm): the
    geometry of an ignored distortion is wrong, and the test can fail.

    Before any camera_info, with no camera_intrinsics parameter, the first frames are not
    localized and are counted as frames without intrinsics. The D = 0 camera_info comes
    from a best-effort (sensor-data) publisher, the distorted one from a reliable, volatile
    one: both reach the node. The images are 160x120 (the tiny scene's, upsampled), so that
    the remaps blur at the refiner's own resolution."""
    sc = Scene(tiny_scene)
    intr = sc.color_intrinsics.scaled(*SIZE)
    D = DISTORTIONS["plumb_bob"]
    views = [cv2.resize(read_color(f.color_path), SIZE, interpolation=cv2.INTER_CUBIC)
             for f in sc.frames("train")[::6]]
    distorted = [_distort(rgb, D, "plumb_bob") for rgb in views]
    proc = start_node(tmp_path, env, tiny_model, tiny_kp_db, "refiner:=pnp", "use_camera_info:=true",
                      "max_rate_hz:=0.0", "image_reliable:=true", "min_inliers:=1", "diagnostics_period_s:=0.2")
    client = Client(env)
    try:
        client.wait_for_node(proc)
        best_effort = _info_publisher(client, qos_profile_sensor_data)
        reliable = _info_publisher(client, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                                      durability=DurabilityPolicy.VOLATILE))
        received = 0
        for k in range(3):  # no camera_info yet: held back and counted
            received += 1
            kv = _send(client, views[k], k, received)
        assert kv["frames without intrinsics"] == "3" and kv["frames processed"] == "0", kv
        assert len(client.poses) == 0

        def stream(frames, publisher, info, first):
            nonlocal received
            _until_diag(client, lambda: publisher.publish(info), lambda kv: kv["camera info"] == expect_info)
            for k, rgb in enumerate(frames):
                publisher.publish(info)
                received += 1
                kv = _send(client, rgb, first + k, received)
            return kv

        expect_info = f"160x120 fx {intr.fx:.1f}, distortion none"
        stream(views, best_effort, _info(intr), 100)  # A
        stream(distorted, best_effort, _info(intr), 200)  # B
        expect_info = f"160x120 fx {intr.fx:.1f}, distortion plumb_bob"
        kv = stream(distorted, reliable, _info(intr, D, "plumb_bob"), 300)  # C
        assert kv["frames without intrinsics"] == "3" and int(kv["camera info messages"]) >= 3 * len(views), kv
        assert kv["undistortion tables built"] == "1", kv  # once, for all of C's camera_info messages
        assert client.wait(lambda: len(client.poses) == int(_kv(client)["poses published"]), 5)
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "no camera intrinsics for the refiner (waiting for camera_info): frame not localized; 1 so far" in out
    assert out.count(f"camera_info: now using fx {intr.fx:.1f}") >= 1 and "no distortion" in out

    poses = {stamp_to_ns(m.header.stamp): _pose_of(m) for _, m in client.poses}

    def phase(first):
        return {k: poses.get(stamp_to_ns(image_msg(views[0], first + k).header.stamp)) for k in range(len(views))}

    A, B, C = phase(100), phase(200), phase(300)
    both = [k for k in range(len(views)) if A[k] is not None and C[k] is not None]
    assert len(both) >= 4, (A, C)
    errs = [pose_errors(C[k], A[k]) for k in both]
    assert all(t <= TOL_T_M and r <= TOL_R_DEG for t, r in errs), errs
    ignored = [pose_errors(B[k], A[k])[0] for k in range(len(views)) if A[k] is not None and B[k] is not None]
    assert len(ignored) >= 4 and np.median(ignored) > TOL_T_M, ignored
    print(f"undistorted vs pinhole: {[(round(float(t), 4), round(float(r), 2)) for t, r in errs]}; "
          f"distortion ignored: {[round(float(t), 4) for t in ignored]} m")


@pytest.mark.timeout(240)
def test_camera_info_of_each_qos_and_the_parameter_until_it_arrives(tmp_path, env, tiny_model, tiny_kp_db,
                                                                   tiny_scene):
    """The managed node with the PnP refiner, use_camera_info and the camera_intrinsics
    parameter: frames before any camera_info are localized with the parameter (said once);
    then camera_info from a latched publisher (reliable, transient local) that published
    once while the node was inactive (not subscribed), then from a reliable, volatile one and
    from a best-effort one: the node takes each (the diagnostics show each one's distinct
    fx). A camera_info with an unsupported distortion model is ignored with one warning that
    names it, and the parameter is used again."""
    sc = Scene(tiny_scene)
    intr = sc.color_intrinsics
    param = f"camera_intrinsics:=[{intr.fx},{intr.fy},{intr.cx},{intr.cy},{float(intr.width)},{float(intr.height)}]"
    views = [read_color(f.color_path) for f in sc.frames("train")[::6]][:3]
    proc = start_node(tmp_path, env, tiny_model, tiny_kp_db, "refiner:=pnp", "use_camera_info:=true", param,
                      "max_rate_hz:=0.0", "image_reliable:=true", "min_inliers:=1", "diagnostics_period_s:=0.2",
                      "warn_throttle_s:=60.0", managed=True)
    client = Client(env)
    life = LifecycleClient(client.node, "/relocalization_node")
    latched_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
    try:
        assert life.set("configure") and life.set("activate")
        client.wait_for_node(proc)
        received = 0
        for k, rgb in enumerate(views):
            received += 1
            kv = _send(client, rgb, k, received)
        assert kv["frames processed"] == "3" and kv["frames without intrinsics"] == "0", kv  # all localized
        assert int(kv["poses published"]) >= 1 and kv["camera info"] == "none", kv

        assert life.set("deactivate")  # unsubscribed: the latched message is published meanwhile
        latched = _info_publisher(client, latched_qos)
        latched.publish(_info(Intrinsics(70.0, 70.0, intr.cx, intr.cy, 80, 60)))
        time.sleep(0.5)
        assert life.set("activate")
        assert client.wait(lambda: _kv(client).get("camera info") == "80x60 fx 70.0, distortion none", 20), _kv(client)

        for fx, qos in ((71.0, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)),
                        (72.0, qos_profile_sensor_data)):
            pub = _info_publisher(client, qos)
            msg = _info(Intrinsics(fx, fx, intr.cx, intr.cy, 80, 60))
            _until_diag(client, lambda: pub.publish(msg), lambda kv: kv["camera info"] == f"80x60 fx {fx:.1f}, "
                                                                                        "distortion none")
            client.node.destroy_publisher(pub)

        bad = _info(intr, [0.1, 0.0, 0.0, 0.0], "kannala_brandt")
        pub = _info_publisher(client, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        kv = _until_diag(client, lambda: pub.publish(bad), lambda kv: int(kv["camera info ignored"]) >= 3)
        assert kv["camera info"] == "none", kv
        received += 1
        kv = _send(client, views[0], 10, received)  # the parameter again
        assert kv["frames processed"] == "4" and kv["frames without intrinsics"] == "0", kv
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert out.count("using the camera_intrinsics parameter until camera_info arrives") == 1, out
    assert out.count("camera_info: now using fx 70.0 fy 70.0") == 1, out  # the latched one, said once
    ignored = [ln for ln in out.splitlines() if "camera_info ignored" in ln]
    assert len(ignored) == 1, ignored  # throttled
    assert "unsupported distortion model 'kannala_brandt'" in ignored[0]
    assert "the camera_intrinsics parameter is used until a usable one arrives" in ignored[0]
