"""The managed (lifecycle) relocalization node, driven over real Fast DDS from this process
through ``~/change_state`` and ``~/get_state``, as nav2_lifecycle_manager drives it."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter

from reloc_ros.tools.lifecycle_benchmark import LifecycleClient
from rosutil import Client, frames_of, image_msg, ros_env, start_node, stop_node

pytestmark = pytest.mark.timeout(300)

NODE = "/relocalization_node"


class Lifecycle(LifecycleClient):
    """``ros2 lifecycle set / get`` (the benchmark's client) and the node's trigger."""

    def __init__(self, client: Client):
        from std_srvs.srv import Trigger

        super().__init__(client.node, NODE)
        self.trigger = client.node.create_client(Trigger, f"{NODE}/relocalize")

    def relocalize(self):
        from std_srvs.srv import Trigger

        return self._call(self.trigger, Trigger.Request(), 60.0)


class Flood(threading.Thread):
    """Publishes frames at ``rate_hz``; ``sent[stamp ns] = wall time`` of each."""

    def __init__(self, client: Client, frames, rate_hz: float, start: int = 0):
        super().__init__(daemon=True)
        self.client, self.frames, self.period, self.k = client, frames, 1.0 / rate_hz, start
        self.sent: dict[int, float] = {}
        self.halt = threading.Event()

    def run(self):
        from reloc_ros.ros.messages import stamp_to_ns

        while not self.halt.is_set():
            m = image_msg(self.frames[self.k % len(self.frames)], self.k)
            self.sent[stamp_to_ns(m.header.stamp)] = time.time()
            self.client.pub_image.publish(m)
            self.k += 1
            time.sleep(self.period)


def _diag_states(client: Client) -> list[str]:
    """(Called inside ``client.wait``, which holds the client's lock, or outside it: a list
    copy is atomic.)"""
    return [kv.value for _, d in list(client.diag) for st in d.status for kv in st.values
            if kv.key == "lifecycle state"]


def _poses(client: Client) -> list:
    return list(client.poses)


@pytest.fixture
def env(tmp_path):
    return ros_env(tmp_path)


def test_full_cycle_twice_poses_only_while_active(tmp_path, env, tiny_model, tiny_db, tiny_scene):
    frames = [f[1] for f in frames_of(tiny_scene, 4)]
    proc = start_node(tmp_path, env, tiny_model, tiny_db, "max_rate_hz:=0.0", "min_inliers:=1",
                      "image_reliable:=true", "diagnostics_period_s:=0.2", managed=True)
    client = Client(env)
    life = Lifecycle(client)
    try:
        assert life.state() == "unconfigured"
        assert client.wait(lambda: "unconfigured" in _diag_states(client), 10)  # diagnostics before configure
        for cycle in range(2):
            assert life.set("configure") and life.state() == "inactive"
            res = life.relocalize()
            assert not res.success and "inactive" in res.message
            n0 = len(_poses(client))
            flood = Flood(client, frames, 20, start=1000 * cycle)
            flood.start()
            time.sleep(1.5)
            assert len(_poses(client)) == n0  # configured but inactive: nothing
            assert life.set("activate") and life.state() == "active"
            assert client.wait(lambda: len(_poses(client)) >= n0 + 3, 30)
            assert life.relocalize().success
            assert life.set("deactivate") and life.state() == "inactive"
            t_inactive = time.time()
            n = len(_poses(client))
            time.sleep(1.5)
            late = [t for t, _ in _poses(client)[n:] if t > t_inactive + 0.2]
            assert late == []  # nothing while inactive
            flood.halt.set()
            flood.join()
            assert life.set("cleanup") and life.state() == "unconfigured"
        assert client.wait(lambda: "active" in _diag_states(client) and "inactive" in _diag_states(client), 5)
        assert life.set("shutdown") and life.state() == "finalized"
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert out.count("cleaned up: model and database freed") == 2


def test_configure_fails_on_a_wrong_typed_parameter_then_a_corrupt_model_then_succeeds(tmp_path, env, tiny_model,
                                                                                      tiny_db, tiny_scene):
    """Each failed configure gives one line in the log and in /diagnostics and leaves the node
    up and unconfigured: first ``-p max_rate_hz:=5`` (an integer for a double), fixed with
    ``ros2 param set``; then a corrupt model file, fixed on disk; then it configures, activates
    and answers a frame."""
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model")
    proc = start_node(tmp_path, env, model, tiny_db, "max_rate_hz:=5", "min_inliers:=1", "diagnostics_period_s:=0.2",
                      managed=True)
    client = Client(env)
    life = Lifecycle(client)
    line = "invalid parameters: max_rate_hz must be a double (got integer 5)"
    try:
        assert not life.set("configure")
        assert life.state() == "unconfigured" and proc.poll() is None  # it does not exit
        assert client.wait(lambda: any(st.level == DiagnosticStatus.ERROR and line in st.message
                                       for _, d in client.diag for st in d.status), 10)
        set_parameters = client.node.create_client(SetParameters, f"{NODE}/set_parameters")
        res = life._call(set_parameters, SetParameters.Request(
            parameters=[Parameter("max_rate_hz", value=0.0).to_parameter_msg()]), 30.0)
        assert res.results[0].successful, res
        assert not life.set("configure") and life.state() == "unconfigured"
        assert client.wait(lambda: any("configure failed" in st.message and str(model) in st.message
                                       for _, d in client.diag for st in d.status), 10)
        shutil.copyfile(tiny_model, model)
        assert life.set("configure") and life.set("activate")
        client.pub_image.publish(image_msg(frames_of(tiny_scene, 1)[0][1], 0))
        assert client.wait(lambda: len(client.poses) == 1, 30)
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert f"cannot configure: {line}" in out and f"cannot configure: {model}" in out, out


def test_deactivate_during_a_100hz_flood_then_reactivate(tmp_path, env, tiny_model, tiny_db, tiny_scene):
    from reloc_ros.ros.messages import stamp_to_ns

    frames = [f[1] for f in frames_of(tiny_scene, 4)]
    proc = start_node(tmp_path, env, tiny_model, tiny_db, "max_rate_hz:=0.0", "min_inliers:=1", managed=True)
    client = Client(env)
    life = Lifecycle(client)
    try:
        assert life.set("configure") and life.set("activate")
        flood = Flood(client, frames, 100)
        flood.start()
        assert client.wait(lambda: len(client.poses) >= 5, 30)
        t_deact = time.time()
        assert life.set("deactivate")
        t_inactive = time.time()
        time.sleep(2.0)  # the flood goes on while inactive
        t_react = time.time()
        n_before = len(_poses(client))
        assert life.set("activate")
        assert client.wait(lambda: len(client.poses) >= n_before + 5, 30)
        flood.halt.set()
        flood.join()
        time.sleep(0.5)
        poses = _poses(client)
        # nothing received while inactive (a pose published before deactivate returned may
        # still be on the wire for a few ms)
        assert not [t for t, _ in poses if t_inactive + 0.2 < t < t_react]
        # after re-activation, every pose is of a frame sent after re-activation began
        after = [stamp_to_ns(m.header.stamp) for t, m in poses if t > t_react]
        assert after and all(flood.sent[s] > t_react for s in after)
        # and every pose before it is of a frame sent before deactivation completed
        assert all(flood.sent[stamp_to_ns(m.header.stamp)] < t_inactive for t, m in poses if t < t_deact)
        assert life.state() == "active" and proc.poll() is None
    finally:
        client.close()
        out = stop_node(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
