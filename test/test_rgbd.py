"""Depth registered to colour (reloc_ros.data.rgbd): the fit, the registration, the scene
format, and the check on real Kinect frames (fit on some training blocks, scored on others)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import invert, pose_errors
from reloc_ros.data.rgbd import DepthToColor, check_pairs, fit_from_poses, match_residuals, register_depth

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _rigid(rotvec_deg, t):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec_deg, degrees=True).as_matrix()
    T[:3, 3] = t
    return T


def test_fit_recovers_a_known_offset_and_reports_its_spread():
    rng = np.random.default_rng(0)
    T_dc = _rigid([0.3, -0.5, 0.2], [0.025, 0.001, -0.002])
    Td = np.stack([_rigid(rng.normal(0, 30, 3), rng.normal(0, 1, 3)) for _ in range(50)])
    noisy = np.stack([T @ T_dc @ _rigid(rng.normal(0, 0.01, 3), rng.normal(0, 1e-4, 3)) for T in Td])
    calib, spread = fit_from_poses(Td, noisy)
    t, r = pose_errors(invert(calib.T_color_depth), T_dc)
    assert t < 5e-5 and r < 0.01
    assert 0.05 < spread["rms_mm"] < 0.5 and spread["frames"] == 50 and abs(spread["baseline_mm"] - 25.1) < 0.1
    with pytest.raises(ValueError, match="rigid"):
        DepthToColor(np.diag([1.0, 1.0, 2.0, 1.0]))


def test_registration_matches_the_analytic_depth_of_a_plane():
    """A fronto-parallel plane at 2 m seen by a depth camera (f 585) 2.5 cm beside the colour
    camera (f 525): registered, every covered colour pixel reads 2 m, and the left border that
    the baseline hides stays unknown."""
    dep, col = Intrinsics(585, 585, 320, 240, 640, 480), Intrinsics(525, 525, 320, 240, 640, 480)
    calib = DepthToColor(_rigid([0, 0, 0], [-0.025, 0, 0]))  # colour camera 2.5 cm to the right
    out = register_depth(np.full((480, 640), 2.0, np.float32), dep, col, calib)
    assert out.shape == (480, 640)
    valid = np.isfinite(out)
    np.testing.assert_allclose(out[valid], 2.0, atol=1e-3)
    # depth pixel u lands at colour u' = 525 * ((u - 320) / 585 * 2 - 0.025) / 2 + 320
    def u_col(u):
        return 525 * ((u - 320) / 585 * 2 - 0.025) / 2 + 320

    cols = np.nonzero(valid[240])[0]
    assert abs(cols.min() - u_col(0)) <= 1.5 and abs(cols.max() - u_col(639)) <= 1.5
    rows = np.nonzero(valid[:, 320])[0]
    assert abs(rows.min() - (240 - 240 * 525 / 585)) <= 1.5
    assert valid[rows.min():rows.max() + 1, cols.min():cols.max() + 1].mean() > 0.999  # no holes inside


def test_scene_records_the_calibration_and_gives_colour_poses_and_registered_depth(scene_copy):
    from reloc_ros.data.sevenscenes import INTRINSICS_FILE, Scene, SevenScenesError

    T_cd = _rigid([0.1, 0.6, -0.2], [-0.0255, 0.0001, 0.002])
    cam = {"fx": 525.0, "fy": 525.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480}
    meta = {"format_version": 2, "color": cam, "depth": {**cam, "fx": 585.0, "fy": 585.0},
            "pose_camera": "depth", "depth_to_color": DepthToColor(T_cd, "test").as_dict()}
    (scene_copy / INTRINSICS_FILE).write_text(yaml.safe_dump(meta))
    sc = Scene(scene_copy)
    fr = sc.frames("train")[0]
    np.testing.assert_allclose(sc.pose(fr), sc.raw_pose(fr) @ invert(T_cd), atol=1e-9)
    raw, reg = sc.depth(fr, registered=False), sc.depth(fr)
    assert raw.shape == reg.shape and np.isfinite(reg).mean() > 0.5 * np.isfinite(raw).mean()
    assert not np.allclose(np.nan_to_num(raw), np.nan_to_num(reg))
    meta.pop("depth_to_color")
    (scene_copy / INTRINSICS_FILE).write_text(yaml.safe_dump(meta))
    with pytest.raises(SevenScenesError, match="pose_camera: depth needs"):
        Scene(scene_copy).pose(fr)


@pytest.mark.timeout(300)
def test_real_kinect_fit_on_some_blocks_lowers_the_residual_on_others(tmp_path):
    """Fit on training blocks 1, 2 and 4 of the real scene, then score blocks 5 and 7 with a
    measure the fit never saw: SIFT matches between map frames, lifted with one frame's depth and
    projected into the other. Registered depth and colour-camera poses bring them closer."""
    from reloc_ros.data import rgbd
    from reloc_ros.data.sevenscenes import Scene

    src = REAL / "independent"
    if not (src / "TrainSplit.txt").is_file():
        pytest.skip("the real scene (shared/data/independent) is not here")
    view = tmp_path / "v"
    assert rgbd.main(["fit", "--scene", str(src), "--color-poses", str(REAL / "7scenes-poses" / "redkitchen_train.txt"),
                      "--frame-map", str(src / "frames.csv"), "--split", "1,2,4", "--out", str(view)]) == 0
    sc = Scene(view)
    assert abs(np.linalg.norm(sc.camera["depth_to_color"].T_color_depth[:3, 3]) - 0.0256) < 0.001
    raw = Scene(view)
    raw.__dict__["camera"] = {**sc.camera, "depth_to_color": None, "pose_camera": "color"}
    pairs = check_pairs(sc, [5, 7], gap=8, stride=30)
    r_raw, r_reg = match_residuals(raw, pairs), match_residuals(sc, pairs)
    assert len(r_reg) > 300 and len(r_raw) > 300
    assert np.median(r_reg) < 0.95 * np.median(r_raw), (np.median(r_reg), np.median(r_raw))
