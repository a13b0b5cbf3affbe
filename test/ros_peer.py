"""A ROS 2 peer process for test_middleware.py: ``python ros_peer.py talker|listener OUT``.

talker: publishes a 640x480 rgb8 ``sensor_msgs/Image`` and a ``tf2_msgs/TFMessage`` on /tf
        at 10 Hz (reliable QoS) until the file OUT exists (written by the listener).
listener: waits for one message of each, writes their fields (and the type hashes seen in
        the graph) as JSON to OUT, and exits 0; exits 1 after 40 s without them.
"""

import hashlib
import json
import sys
import time

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

W, H = 640, 480
IMAGE_TOPIC = "/reloc_test/image"


def pattern() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x * 7 + y) % 256, (y * 3) % 256, (x ^ y) % 256], -1).astype(np.uint8)


def talker(out: str) -> int:
    import os

    rclpy.init()
    node = rclpy.create_node("reloc_test_talker")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub_img = node.create_publisher(Image, IMAGE_TOPIC, qos)
    pub_tf = node.create_publisher(TFMessage, "/tf", qos)
    img = Image(height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3)
    img.header.stamp.sec, img.header.stamp.nanosec = 1234, 5678
    img.header.frame_id = "camera"
    img.data = pattern().tobytes()
    t = TransformStamped()
    t.header.stamp.sec, t.header.stamp.nanosec = 1234, 5678
    t.header.frame_id, t.child_frame_id = "map", "camera"
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = 1.5, -2.0, 0.25
    t.transform.rotation.x, t.transform.rotation.y = 0.0, 0.0
    t.transform.rotation.z, t.transform.rotation.w = 0.6, 0.8
    deadline = time.time() + 45
    while not os.path.exists(out) and time.time() < deadline:
        pub_img.publish(img)
        pub_tf.publish(TFMessage(transforms=[t]))
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def listener(out: str) -> int:
    rclpy.init()
    node = rclpy.create_node("reloc_test_listener")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    got: dict = {}

    def on_image(m: Image):
        if "image" not in got:
            got["image"] = {
                "width": m.width, "height": m.height, "encoding": m.encoding, "step": m.step,
                "is_bigendian": m.is_bigendian, "frame_id": m.header.frame_id,
                "stamp": [m.header.stamp.sec, m.header.stamp.nanosec],
                "sha256": hashlib.sha256(bytes(m.data)).hexdigest(), "nbytes": len(m.data),
            }

    def on_tf(m: TFMessage):
        if "tf" not in got:
            tr = m.transforms[0]
            got["tf"] = {
                "n": len(m.transforms), "parent": tr.header.frame_id, "child": tr.child_frame_id,
                "stamp": [tr.header.stamp.sec, tr.header.stamp.nanosec],
                "t": [tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z],
                "q_xyzw": [tr.transform.rotation.x, tr.transform.rotation.y, tr.transform.rotation.z,
                           tr.transform.rotation.w],
            }

    node.create_subscription(Image, IMAGE_TOPIC, on_image, qos)
    node.create_subscription(TFMessage, "/tf", on_tf, qos)
    deadline = time.time() + 40
    while time.time() < deadline and not ("image" in got and "tf" in got):
        rclpy.spin_once(node, timeout_sec=0.1)
    ok = "image" in got and "tf" in got
    if ok:
        got["type_hashes"] = {
            topic: sorted({str(i.topic_type_hash) for i in node.get_publishers_info_by_topic(topic)})
            for topic in ("/tf", IMAGE_TOPIC)
        }
    node.destroy_node()
    rclpy.shutdown()
    with open(out + ".tmp", "w") as f:
        json.dump(got, f)
    import os

    os.replace(out + ".tmp", out)
    return 0 if ok else 1


if __name__ == "__main__":
    role, out = sys.argv[1], sys.argv[2]
    sys.exit(talker(out) if role == "talker" else listener(out))
