"""Gravity alignment of a visual map from its camera poses (reloc_ros.tools.gravity)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reloc_ros.core.geometry import estimate_up, gravity_alignment
from reloc_ros.tools import gravity


def _upright_cameras(n, roll_deg, rng):
    """Camera-to-world poses in a z-up world: optical axis near horizontal, x axis rolled by
    at most ``roll_deg`` out of the horizontal plane, y axis pointing down."""
    poses = np.tile(np.eye(4), (n, 1, 1))
    base = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T  # camera x=east, y=down, z=north
    for i in range(n):
        yaw, pitch, roll = rng.uniform(-180, 180), rng.uniform(-20, 20), rng.uniform(-roll_deg, roll_deg)
        R = Rotation.from_euler("zx", [yaw, pitch], degrees=True).as_matrix() @ base
        poses[i, :3, :3] = R @ Rotation.from_euler("z", roll, degrees=True).as_matrix()
        poses[i, :3, 3] = rng.normal(size=3)
    return poses


def test_up_is_recovered_in_a_rotated_world():
    rng = np.random.default_rng(0)
    poses = _upright_cameras(300, 5.0, rng)
    R_world = Rotation.random(random_state=1).as_matrix()  # the visual map: an arbitrary frame
    moved = poses.copy()
    moved[:, :3, :3] = R_world @ poses[:, :3, :3]
    up, tilt = estimate_up(moved)
    true_up = R_world @ [0, 0, 1.0]
    assert np.degrees(np.arccos(np.clip(up @ true_up, -1, 1))) < 1.0
    assert 0 < tilt < 8.0  # the cameras roll by up to 5° and pitch by up to 20°
    R = gravity_alignment(up)
    assert np.allclose(R @ up, [0, 0, 1], atol=1e-9) and np.isclose(np.linalg.det(R), 1)
    # aligned, the cameras' y axes point down again
    assert np.all((R @ moved[:, :3, 1].T)[2] < 0)


def test_sign_follows_the_cameras_y_axes_and_bad_input_is_refused():
    rng = np.random.default_rng(2)
    poses = _upright_cameras(50, 3.0, rng)
    flipped = poses.copy()
    flipped[:, :3, :3] = Rotation.from_euler("x", 180, degrees=True).as_matrix() @ poses[:, :3, :3]
    assert estimate_up(poses)[0][2] > 0.99 and estimate_up(flipped)[0][2] < -0.99
    with pytest.raises(ValueError, match="N >= 2"):
        estimate_up(poses[:1])


def test_command_on_a_synthetic_scene_finds_z_up(tiny_scene, tmp_path, capsys):
    """The synthetic scenes are z-up: the command recovers it from the training cameras."""
    scene = tiny_scene
    (row,) = gravity.alignments(scene)
    assert row["up"][2] > np.cos(np.radians(5)) and row["frames"] > 0
    assert gravity.main([str(scene)]) == 0
    out = capsys.readouterr().out
    assert "static_transform_publisher" in out and "--child-frame-id reloc_map" in out
    assert gravity.main([str(tmp_path / "nothing")]) == 2
