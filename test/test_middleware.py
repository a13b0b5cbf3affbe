"""The ROS 2 middleware is real: two processes exchange an Image and a /tf over Fast DDS."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rosutil import ros_env, run_python

PEER = str(Path(__file__).with_name("ros_peer.py"))
OFFICIAL_TF_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_core_imports_without_rclpy():
    """geometry and the data layer must not pull in rclpy."""
    code = (
        "import sys; import reloc_ros.core.geometry, reloc_ros.data.sevenscenes, reloc_train.pairs; "
        "bad = [m for m in sys.modules if m.startswith('rclpy')]; assert not bad, bad; print('ok')"
    )
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_tf2_msgs_is_the_official_type():
    """The tf2_msgs we carry hashes to the official TFMessage (rosbags as the oracle)."""
    from rosbags.typesys import Stores, get_typestore
    from tf2_msgs.msg import TFMessage  # noqa: F401  (must import)

    assert get_typestore(Stores.ROS2_KILTED).hash_rihs01("tf2_msgs/msg/TFMessage") == OFFICIAL_TF_HASH


@pytest.mark.timeout(120)
def test_image_and_tf_round_trip_between_processes(tmp_path):
    env = ros_env(tmp_path)
    out = tmp_path / "received.json"
    listener = run_python([PEER, "listener", str(out)], env)
    talker = run_python([PEER, "talker", str(out)], env)
    try:
        l_out, _ = listener.communicate(timeout=60)
        t_out, _ = talker.communicate(timeout=60)
    finally:
        for p in (listener, talker):
            if p.poll() is None:
                p.kill()
    assert listener.returncode == 0, f"listener failed:\n{l_out}\ntalker:\n{t_out}"
    assert talker.returncode == 0, t_out
    got = json.loads(out.read_text())

    sys.path.insert(0, str(Path(PEER).parent))
    from ros_peer import pattern

    img = got["image"]
    assert (img["width"], img["height"], img["encoding"], img["step"]) == (640, 480, "rgb8", 1920)
    assert img["nbytes"] == 640 * 480 * 3
    assert img["sha256"] == hashlib.sha256(pattern().tobytes()).hexdigest()
    assert img["stamp"] == [1234, 5678] and img["frame_id"] == "camera"

    tf = got["tf"]
    assert (tf["n"], tf["parent"], tf["child"], tf["stamp"]) == (1, "map", "camera", [1234, 5678])
    np.testing.assert_allclose(tf["t"], [1.5, -2.0, 0.25])
    np.testing.assert_allclose(tf["q_xyzw"], [0.0, 0.0, 0.6, 0.8])

    # The graph reports the official type hash for /tf (the talker's endpoint).
    assert got["type_hashes"]["/tf"] == [OFFICIAL_TF_HASH]
    assert got["type_hashes"]["/reloc_test/image"][0].startswith("RIHS01_")
