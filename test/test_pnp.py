"""SIFT + PnP-RANSAC against the database depth (reloc_ros.core.pnp), and the database's keypoints."""

import numpy as np
import pytest
import torch

from reloc_ros.core.geometry import pose_errors
from reloc_ros.core.pnp import KeypointSet, PnPConfig, PnPRefiner, extract_sift, lift


def test_lift_back_projects_valid_depth_and_rejects_holes():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    depth = np.full((24, 32), 2.0)  # half the resolution of the 64x48 keypoint image
    depth[0, 0] = np.nan
    uv = np.array([[31.5, 23.5], [131.5 - 100, 23.5], [0.0, 0.0]])
    xyz, ok = lift(uv, depth, K, (64, 48))
    assert ok.tolist() == [True, True, False]
    np.testing.assert_allclose(xyz[0], [0, 0, 2.0])
    np.testing.assert_allclose(xyz[1], [0.0, 0, 2.0], atol=1e-6)  # u = cx: on the axis
    assert np.all(xyz[2] == 0)


def test_keypoint_set_packs_and_concatenates():
    cfg = PnPConfig(image_size=(64, 48))
    a = KeypointSet.pack([(np.ones((3, 3)), np.full((3, 128), 7)), (np.zeros((0, 3)), np.zeros((0, 128)))], cfg)
    b = KeypointSet.pack([(np.full((2, 3), 5.0), np.full((2, 128), 9))], cfg)
    c = KeypointSet.concat([a, b])
    assert len(c) == 3 and c.offsets.tolist() == [0, 3, 3, 5]
    assert c.frame(1)[0].shape == (0, 3) and np.all(c.frame(2)[0] == 5.0) and np.all(c.frame(2)[1] == 9)
    with pytest.raises(ValueError, match="offsets"):
        KeypointSet(torch.tensor([0, 4]), c.xyz, c.desc, cfg)


@pytest.fixture(scope="module")
def kp_db(tiny_kp_db):
    from reloc_ros.core.database import FrameDatabase

    return tiny_kp_db, FrameDatabase.load(tiny_kp_db)


def test_database_keeps_its_keypoints_and_checks_them(kp_db, tmp_path):
    from reloc_ros.core.database import DatabaseError, FrameDatabase

    path, db = kp_db
    k = db.keypoints
    assert k is not None and len(k) == len(db) and k.config.image_size == (160, 120)
    n = np.diff(k.offsets.numpy())
    assert n.max() <= 200 and n.mean() > 20  # textured synthetic frames: keypoints with depth
    assert np.all(k.xyz[:, 2].numpy() > 0)  # only valid depth is kept
    raw = torch.load(path, weights_only=False)
    raw["tensors"]["kp_desc"][0, 0] ^= 1
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(DatabaseError, match="checksum"):
        FrameDatabase.load(tmp_path / "edited.pt")


def test_pnp_recovers_a_map_frame_exactly_and_a_neighbour_closely(kp_db, tiny_scene):
    """A database frame matched against itself gives its own pose (depth quantisation
    only): the world / camera conventions are right. A frame matched against the other
    frames of the map gives a pose far better than theirs."""
    from reloc_ros.data.sevenscenes import Scene, read_color

    _, db = kp_db
    sc = Scene(tiny_scene)
    frames = sc.frames("train")
    poses = db.poses.numpy()
    ref = PnPRefiner(db.keypoints, poses)
    K = sc.color_intrinsics.scaled(160, 120).K
    i = 5
    r = ref.refine(read_color(frames[i].color_path), K, [i])
    assert r.ok, r.reason
    te, re = pose_errors(r.pose, poses[i])
    assert te < 0.01 and re < 0.5 and r.inliers >= 20 and r.reproj_rms_px < 1.0
    # the nearest other map frames by position, as retrieval would give them
    d = np.linalg.norm(poses[:, :3, 3] - poses[i, :3, 3], axis=1)
    d[i] = np.inf
    rows = np.argsort(d)[:3]
    r2 = ref.refine(read_color(frames[i].color_path), K, rows)
    assert r2.ok, r2.reason
    te2, re2 = pose_errors(r2.pose, poses[i])
    te_nn, _ = pose_errors(poses[rows[0]], poses[i])
    assert te2 < 0.5 * te_nn and re2 < 3.0


def test_pnp_refuses_a_blank_query_and_frames_without_keypoints():
    cfg = PnPConfig(image_size=(64, 48))
    blank = np.full((48, 64, 3), 128, np.uint8)
    uv, desc = extract_sift(blank, cfg)
    assert uv.shape == (0, 2) and desc.shape == (0, 128)
    kp = KeypointSet.pack([(np.zeros((0, 3)), np.zeros((0, 128)))], cfg)
    r = PnPRefiner(kp, np.eye(4)[None]).refine(blank, np.eye(3), [0])
    assert not r.ok and r.pose is None and "query keypoints" in r.reason
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    r = PnPRefiner(kp, np.eye(4)[None]).refine(textured, np.eye(3), [0])
    assert not r.ok and ("matches" in r.reason or "query keypoints" in r.reason)
    with pytest.raises(ValueError, match="image size"):
        PnPRefiner(kp, np.eye(4)[None], PnPConfig(image_size=(320, 240)))


def test_reprojection_covariance_matches_the_spread_of_noisy_solutions():
    """Oracle: solve PnP many times from points with 1 px noise; the spread of the solved
    6-vectors (camera centre, map-axes rotation) matches the Gauss-Newton covariance."""
    import cv2

    from reloc_ros.core.geometry import make_pose, pose_error_vector
    from reloc_ros.core.pnp import reprojection_covariance

    rng = np.random.default_rng(3)
    K = np.array([[260.0, 0, 160], [0, 260.0, 120], [0, 0, 1]])
    q = np.array([np.cos(0.2), 0.1, np.sin(0.2), 0.0])
    T = make_pose([0.3, -0.2, 0.1], q / np.linalg.norm(q))
    Xc = np.c_[rng.uniform(-1, 1, (60, 2)) * 1.5, rng.uniform(2, 4, 60)]
    X = Xc @ T[:3, :3].T + T[:3, 3]
    x = Xc @ K.T
    u = x[:, :2] / x[:, 2:3]
    errs = []
    for _ in range(300):
        un = u + rng.normal(size=u.shape)
        ok, rv, tv = cv2.solvePnP(X, un, K, None, flags=cv2.SOLVEPNP_ITERATIVE)
        R = cv2.Rodrigues(rv)[0]
        est = np.eye(4)
        est[:3, :3], est[:3, 3] = R.T, -R.T @ tv.ravel()
        errs.append(pose_error_vector(est, T))
    emp = np.cov(np.array(errs).T)
    cov, s = reprojection_covariance(T, X, u + rng.normal(size=u.shape), K)
    assert 0.8 < s < 1.2
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), np.sqrt(np.diag(emp)), rtol=0.25)


def test_localizer_refiner_needs_keypoints_intrinsics_and_its_own_calibration(tmp_path, tiny_model, tiny_db,
                                                                              tiny_kp_db, tiny_scene):
    from reloc_ros.core.calibration import CalibrationError, fit_calibration
    from reloc_ros.core.refiners.pnp import SIGNALS as PNP_SIGNALS
    from reloc_ros.core.database import DatabaseError, FrameDatabase
    from reloc_ros.core.fusion import FusionConfig
    from reloc_ros.core.localizer import Localizer, LocalizerConfig
    from reloc_ros.data.sevenscenes import Scene, read_color

    with pytest.raises(DatabaseError, match=r"tiny.db.pt.*no keypoints.*--keypoints"):
        Localizer.from_files(tiny_model, tiny_db, LocalizerConfig(refiner="pnp"), "cpu")
    rng = np.random.default_rng(0)
    n = 100
    X = rng.normal(size=(n, len(PNP_SIGNALS)))
    E = np.c_[rng.normal(size=(n, 3)) * 0.01, rng.normal(size=(n, 3)) * 0.002]
    cfg = LocalizerConfig(refiner="pnp", fusion=FusionConfig(min_inliers=1), min_confidence=0.0)
    binding = Localizer.from_files(tiny_model, tiny_kp_db, cfg, "cpu").calibration_binding()
    assert binding["refiner_settings"]["pnp"]["image_size"] == [160, 120]  # the unit's declared settings
    cal = fit_calibration(X, E, np.ones(n, bool), signal_names=PNP_SIGNALS,
                          info={"fusion_method": "consensus", "refiner": "pnp", "binding": binding})
    path = tmp_path / "pnp_calibration.json"
    cal.save(path, FrameDatabase.load(tiny_kp_db))
    with pytest.raises(CalibrationError, match=r"pnp_calibration.json.*fitted for refiner 'pnp'.*'none'"):
        Localizer.from_files(tiny_model, tiny_kp_db, LocalizerConfig(), "cpu", path)
    loc = Localizer.from_files(tiny_model, tiny_kp_db, cfg, "cpu", path)
    sc = Scene(tiny_scene)
    fr = sc.frames("train")[3]
    rgb = read_color(fr.color_path)
    assert not loc.localize(rgb).ok and "no camera intrinsics" in loc.localize(rgb).reason
    r = loc.localize(rgb, sc.color_intrinsics.scaled(*loc.refine_image_size).K)
    assert r.ok and r.calibrated and r.refinement["ok"] and r.signals.shape == (len(PNP_SIGNALS),)
    assert r.confidence == cal.confidence(r.signals)
    np.testing.assert_allclose(r.covariance, cal.covariance(r.signals, r.pose[:3, :3]))
    assert pose_errors(r.pose, sc.pose(fr))[0] < 0.02 and "refine" in r.timings_ms
