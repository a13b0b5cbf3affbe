"""The /initialpose gate (reloc_ros.core.initialpose): N consecutive poses that agree with odometry."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reloc_ros.core.geometry import invert
from reloc_ros.core.initialpose import GateConfig, InitialPoseGate


def _path(n, rng):
    """Camera poses along a walk (1 Hz, 0.3 m and a few degrees per step), in the map."""
    T = np.tile(np.eye(4), (n, 1, 1))
    for i in range(1, n):
        step = np.eye(4)
        step[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.05, size=3)).as_matrix()
        step[:3, 3] = [0.0, 0.0, 0.3]
        T[i] = T[i - 1] @ step
    return T


def test_sends_after_n_agreeing_poses_and_only_then():
    rng = np.random.default_rng(0)
    T_map = _path(10, rng)
    T_map_odom = np.eye(4)
    T_map_odom[:3, :3] = Rotation.from_euler("z", 40, degrees=True).as_matrix()
    T_map_odom[:3, 3] = [5.0, -2.0, 0.0]
    T_odom = invert(T_map_odom) @ T_map  # odometry: the same motion in another frame
    gate = InitialPoseGate(GateConfig(n_consecutive=3, min_interval_s=100))
    d = [gate.offer(float(i), T_map[i], T_odom[i]) for i in range(6)]
    assert [x.send for x in d] == [False, False, True, False, False, False]
    assert "1 of 3" in d[0].reason and "2 of 3" in d[1].reason and "1 of 3" in d[3].reason  # window emptied
    assert "min interval" in d[5].reason
    assert gate.sent == 1


def test_a_wrong_pose_is_never_sent_and_restarts_the_window():
    rng = np.random.default_rng(1)
    T_map = _path(12, rng)
    T_odom = T_map.copy()
    wrong = T_map.copy()
    wrong[4] = wrong[4] @ np.array([[1, 0, 0, 0.8], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])  # 0.8 m off
    gate = InitialPoseGate(GateConfig(n_consecutive=3, min_interval_s=0))
    sent = [i for i in range(2, 12) if gate.offer(float(i), wrong[i], T_odom[i]).send]
    # 2, 3 agree; 4 is wrong (restarts the window with itself); 5 disagrees with 4 and restarts;
    # 5, 6, 7 agree: the first send is at 7, never at a window holding 4.
    assert sent[0] == 7 and 4 not in sent


def test_no_odometry_or_a_gap_restarts():
    rng = np.random.default_rng(2)
    T = _path(6, rng)
    gate = InitialPoseGate(GateConfig(n_consecutive=2, max_gap_s=1.5, min_interval_s=0))
    assert "no odometry" in gate.offer(0.0, T[0], None).reason
    assert not gate.offer(1.0, T[1], T[1]).send
    assert not gate.offer(5.0, T[2], T[2]).send  # 4 s gap: a new window
    assert gate.offer(6.0, T[3], T[3]).send


def test_odometry_drift_is_allowed_in_proportion_to_the_distance():
    rng = np.random.default_rng(3)
    T = _path(3, rng)
    odo = T.copy()
    odo[2, :3, 3] += [0.0, 0.0, 0.18]  # 0.18 m over 0.6 m: above 0.15 + 0.05 * 0.6 + ...
    gate = InitialPoseGate(GateConfig(n_consecutive=3, max_t_m=0.15, drift_per_m=0.05))
    assert [gate.offer(float(i), T[i], odo[i]).send for i in range(3)] == [False, False, False]
    gate = InitialPoseGate(GateConfig(n_consecutive=3, max_t_m=0.15, drift_per_m=0.1))
    assert [gate.offer(float(i), T[i], odo[i]).send for i in range(3)] == [False, False, True]


def test_bad_config():
    with pytest.raises(ValueError, match="n_consecutive"):
        GateConfig(n_consecutive=0)
    with pytest.raises(ValueError, match="max_r_deg"):
        GateConfig(max_r_deg=float("nan"))


def test_summary_counts_every_decision_by_kind():
    from reloc_ros.core.geometry import make_pose

    gate = InitialPoseGate(GateConfig(n_consecutive=2, min_interval_s=100.0))
    path = [make_pose([0.1 * i, 0.0, 0.0], [1, 0, 0, 0]) for i in range(6)]
    gate.offer(0.0, path[0], None)  # no odometry
    for i in range(1, 4):  # agree: waiting, sent, then waiting again (the window restarts)
        gate.offer(float(i), path[i], path[i])
    gate.offer(4.0, path[4], path[4])  # agrees, but within the min interval
    gate.offer(5.0, path[5], make_pose([3.0, 0.0, 0.0], [1, 0, 0, 0]))  # 2.5 m off the odometry
    assert gate.sent == 1
    assert dict(gate.counts) == {"no odometry": 1, "waiting for agreement": 2, "sent": 1,
                                 "within the min interval": 1, "disagree with the odometry": 1}
    assert gate.summary().startswith("6 poses offered, 1 sent, 1 disagree with the odometry")
