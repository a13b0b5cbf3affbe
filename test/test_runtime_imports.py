"""The node imports only the runtime: started in a fresh process, after it has loaded a model
and a database and answered a frame, none of the offline code is in ``sys.modules``."""

import json
import subprocess
import sys
import textwrap

import pytest

from rosutil import ros_env

#: Modules (and packages, with their submodules) that the running node must not import.
#: (``scipy.stats`` is not offline code, but importing it costs the node's startup about 0.6 s.)
OFFLINE = ["skimage", "reloc_sim", "reloc_train", "reloc_ros.data", "reloc_ros.tools", "reloc_ros.eval",
           "reloc_ros.mapping", "rosbags", "matplotlib", "tensorboard", "torchjd", "cvxpy", "scipy.stats"]

DRIVER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from reloc_ros.ros.messages import rgb_to_image_msg
    from reloc_ros.ros.node import RelocalizationNode

    model, db = sys.argv[1:3]
    rclpy.init(args=["--ros-args", "-p", f"model_path:={model}", "-p", f"database_path:={db}", "-p", "device:=cpu",
                     "-p", "min_inliers:=1", "-p", "max_rate_hz:=0.0", "-p", "warmup_iterations:=1",
                     "-r", "image:=/probe/image"])
    node = RelocalizationNode()
    probe = rclpy.create_node("probe")
    poses = []
    probe.create_subscription(PoseWithCovarianceStamped, "/relocalization_node/pose", poses.append, 10)
    pub = probe.create_publisher(Image, "/probe/image", 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(probe)
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    deadline = time.time() + 60
    k = 0
    while not poses and time.time() < deadline:
        pub.publish(rgb_to_image_msg(rgb, stamp=1.0 + k, frame_id="camera"))
        k += 1
        end = time.time() + 0.5
        while not poses and time.time() < end:
            ex.spin_once(timeout_sec=0.05)
    print("RESULT " + json.dumps({"poses": len(poses), "modules": sorted(sys.modules)}), flush=True)
    node.shutdown()
    node.destroy_node()
    probe.destroy_node()
    rclpy.try_shutdown()
""")


@pytest.mark.timeout(180)
def test_running_node_imports_no_offline_code(tmp_path, tiny_model, tiny_db):
    r = subprocess.run([sys.executable, "-c", DRIVER, str(tiny_model), str(tiny_db)], env=ros_env(tmp_path),
                       capture_output=True, text=True, timeout=170)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(lines[0][7:])
    assert res["poses"] >= 1, "the node answered no frame"
    mods = set(res["modules"])
    assert {"reloc_ros.core.localizer", "reloc_ros.ros.node", "torch", "rclpy"} <= mods  # the check can see
    found = sorted(m for m in mods if any(m == p or m.startswith(p + ".") for p in OFFLINE))
    assert not found, f"the running node imported offline code: {found}"
