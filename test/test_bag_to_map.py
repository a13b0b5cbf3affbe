"""Bag to map (reloc_ros.tools.bag.to_map) on robot-like bags (reloc_ros.tools.bag.robot):
round trips against the source scene, the frame filters, depth registration, undistortion
and every bad input the converter must refuse."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reloc_ros.core.model import load_model
from reloc_ros.core.geometry import invert, pose_errors
from reloc_ros.data.sevenscenes import Scene, read_color, read_depth_raw, read_pose
from reloc_ros.ros.messages import encode_compressed
from reloc_ros.tools.bag import robot
from reloc_ros.tools.bag.to_map import BagMapError, MapConfig, cli, main, read_tum, split_blocks

#: Time blocks small enough for the tiny scene's 1-second run (32 frames at 30 Hz).
BLOCKS = dict(test_block_s=0.3, test_every=3, guard_s=0.05)
SEQS = [1, 2]
DEPTH = "/camera/depth/image_rect_raw"


@pytest.fixture(scope="module")
def rbag(tiny_scene, tmp_path_factory):
    """A robot bag of the tiny scene's sequences 1 and 2 (mcap), depth from a separate
    optical frame 2.5 cm beside the colour one, and the TUM trajectory."""
    d = tmp_path_factory.mktemp("robot")
    info = robot.write_robot_bag(tiny_scene, d / "bag", robot.RobotBagOptions(
        sequences=SEQS, depth=True, depth_frame="separate", tum=d / "traj.tum"))
    return d / "bag", d / "traj.tum", info


def _kept(scene_dir: Path) -> list[tuple[int, Path, str]]:
    """(image index in the bag, frame stem, role) of every frame written."""
    rows = list(csv.DictReader(open(scene_dir / "frames.csv")))
    out = []
    t0 = 1_700_000_000 * 10**9
    for r in rows:
        if r["role"] == "guard":
            continue
        i = round((int(r["stamp_ns"]) - t0) / (1e9 / 30))
        out.append((i, scene_dir / f"seq-{int(r['seq']):02d}" / f"frame-{int(r['frame']):06d}", r["role"]))
    return out


def _color(stem: Path) -> np.ndarray:
    p = stem.with_name(stem.name + ".color.png")
    return read_color(p if p.exists() else stem.with_name(stem.name + ".color.jpg"))


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_tf_round_trip_poses_images_depth_and_splits(rbag, tiny_scene, tmp_path):
    bag, _, info = rbag
    out = tmp_path / "map"
    s = main(MapConfig(depth_topic=DEPTH, keyframes=False, **BLOCKS), bag, out, progress=False, log=None)
    src = Scene(tiny_scene).frames(SEQS)
    kept = _kept(out)
    assert s["images_read"] == 32 and s["skipped"]["no pose"] == 0 and s["skipped"]["blurred"] == 0
    # every image is written or dropped in a guard gap, nothing else
    assert len(kept) + s["skipped"]["in a guard gap"] == 32 and s["skipped"]["in a guard gap"] > 0
    sc = Scene(out)
    assert sc.color_intrinsics == Scene(tiny_scene).color_intrinsics and sc.camera["depth_registered"]
    d_max = r_max = 0.0
    valid = []
    for i, stem, role in kept:
        d, r = pose_errors(read_pose(stem.with_name(stem.name + ".pose.txt"))[None], read_pose(src[i].pose_path)[None])
        d_max, r_max = max(d_max, d[0]), max(r_max, np.radians(r[0]))
        assert np.array_equal(_color(stem), read_color(src[i].color_path))  # raw: bit for bit
        a = read_depth_raw(stem.with_name(stem.name + ".depth.png")).astype(int)
        b = read_depth_raw(src[i].depth_path).astype(int)
        both = (a > 0) & (b > 0) & (b < 65535)
        valid.append(both.sum() / ((b > 0) & (b < 65535)).sum())
        # depth went into a camera 2.5 cm away and back: where both have it, it is the same
        assert np.abs(a - b)[both].max() <= 1
    assert d_max < 1e-6 and r_max < 1e-6
    assert min(valid) > 0.85  # the holes are the disocclusions of the 2.5 cm baseline
    # splits: test frames are the 3rd 0.3 s block, in their own sequence; guards dropped
    roles = {role for _, _, role in kept}
    assert roles == {"train", "test"}
    assert sc.sequences("test") and set(sc.sequences("test")).isdisjoint(sc.sequences("train"))
    sec = [(t - info["stamps_ns"][0]) / 1e9 for t in info["stamps_ns"]]
    t_test = [sec[i] for i, _, role in kept if role == "test"]
    assert t_test and all(0.6 <= t < 0.9 for t in t_test)
    assert all(not (0.55 < sec[i] < 0.95) for i, _, role in kept if role == "train")
    assert s["coverage"]["queries"] == len(t_test)
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("source", ["slam_pose", "odom", "tum"])
def test_pose_sources_and_compressed_images(rbag, tiny_scene, tmp_path, source):
    bag, tum, info = rbag
    conf = {"slam_pose": dict(pose_source="topic", pose_topic="/slam/pose"),
            "odom": dict(pose_source="topic", pose_topic="/odom"),
            "tum": dict(pose_source="tum", trajectory=str(tum))}[source]
    out = tmp_path / "map"
    s = main(MapConfig(image_topic="/camera/color/image_raw/compressed", keyframes=False, test_every=0, **conf),
             bag, out, progress=False, log=None)
    src = Scene(tiny_scene).frames(SEQS)
    kept = _kept(out)
    assert len(kept) == 32 and s["map_frame"] == ("odom" if source == "odom" else "map")
    for k, (i, stem, _) in enumerate(kept):
        T_gt = read_pose(src[i].pose_path)
        if source == "odom":  # /odom is in the odom frame: the map pose seen from odom
            T_gt = invert(robot.map_to_odom(info["stamps_ns"][i] / 1e9 - info["stamps_ns"][0] / 1e9)) @ T_gt
        d, r = pose_errors(read_pose(stem.with_name(stem.name + ".pose.txt"))[None], T_gt[None])
        assert d[0] < 1e-6 and np.radians(r[0]) < 1e-6
        # the bag's JPEG is stored as it is (no second lossy step), within JPEG tolerance of the source
        jpg = stem.with_name(stem.name + ".color.jpg").read_bytes()
        assert jpg == encode_compressed(read_color(src[i].color_path), "jpeg", 95)
        mse = np.mean((_color(stem).astype(float) - read_color(src[i].color_path)) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30  # PSNR, dB


def test_sqlite3_bag_and_databases_from_each_side_localize_the_same(tiny_scene, tiny_model, tmp_path):
    from reloc_ros.core.localizer import Localizer
    from reloc_ros.core.model import load_model
    from reloc_ros.mapping.database import build_database

    robot.write_robot_bag(tiny_scene, tmp_path / "bag", robot.RobotBagOptions(sequences=SEQS, storage="sqlite3"))
    main(MapConfig(keyframes=False, test_every=0), tmp_path / "bag", tmp_path / "map", progress=False, log=None)
    model, info = load_model(tiny_model)
    db_src = build_database(model, info, [Scene(tiny_scene)], SEQS, progress=False)
    db_bag = build_database(model, info, [Scene(tmp_path / "map")], "all", progress=False)
    assert len(db_src) == len(db_bag) == 32
    assert np.allclose(db_src.poses.numpy(), db_bag.poses.numpy(), atol=1e-8)
    a, b = Localizer(model, db_src, device="cpu"), Localizer(model, db_bag, device="cpu")
    for f in Scene(tiny_scene).frames("test")[::4]:
        img = read_color(f.color_path)
        ra, rb = a.localize(img), b.localize(img)
        assert ra.ok == rb.ok and ra.pose is not None
        assert np.allclose(ra.pose, rb.pose, atol=1e-6)


def test_blur_keyframes_and_cap(tiny_scene, tmp_path):
    robot.write_robot_bag(tiny_scene, tmp_path / "bag", robot.RobotBagOptions(sequences=SEQS, blur=[5, 20]))
    s = main(MapConfig(keyframes=False, test_every=0), tmp_path / "bag", tmp_path / "a", progress=False, log=None)
    assert s["skipped"]["blurred"] == 2
    assert sorted({i for i, _, _ in _kept(tmp_path / "a")} ^ set(range(32))) == [5, 20]
    # keyframes: every kept frame moved 0.3 m or turned 5 degrees from the one before
    s = main(MapConfig(keyframe_m=0.3, keyframe_deg=20.0, blur_ratio=0, test_every=0), tmp_path / "bag",
             tmp_path / "b", progress=False, log=None)
    poses = [read_pose(stem.with_name(stem.name + ".pose.txt")) for _, stem, _ in _kept(tmp_path / "b")]
    assert 3 <= len(poses) < 32 and s["skipped"]["not a keyframe"] == 32 - len(poses)
    d, r = pose_errors(np.stack(poses[1:]), np.stack(poses[:-1]))
    assert np.all((d >= 0.3) | (r >= 20.0))
    s = main(MapConfig(keyframes=False, max_frames=10, blur_ratio=0, test_every=0), tmp_path / "bag",
             tmp_path / "c", progress=False, log=None)
    assert s["frames_kept"] == 10 and s["skipped"]["over the cap"] == 22


def test_depth_in_the_colour_frame_at_another_size_is_resampled(tiny_scene, tmp_path):
    robot.write_robot_bag(tiny_scene, tmp_path / "bag", robot.RobotBagOptions(
        sequences=[1], depth=True, depth_frame="color", depth_size=(40, 30), depth_encoding="32FC1"))
    main(MapConfig(depth_topic=DEPTH, keyframes=False, test_every=0), tmp_path / "bag", tmp_path / "map",
         progress=False, log=None)
    src = Scene(tiny_scene).frames([1])
    for i, stem, _ in _kept(tmp_path / "map"):
        a = read_depth_raw(stem.with_name(stem.name + ".depth.png")).astype(int)
        b = read_depth_raw(src[i].depth_path).astype(int)
        assert a.shape == b.shape == (60, 80)
        # each 2x2 block of the source became one depth pixel (its nearest surface), then
        # was resampled back: every pixel holds the nearest depth of its 2x2 block
        bb = np.where((b > 0) & (b < 65535), b, 10**9).reshape(30, 2, 40, 2).min(axis=(1, 3))
        expect = np.repeat(np.repeat(np.where(bb == 10**9, 0, bb), 2, 0), 2, 1)
        assert np.mean(a == expect) > 0.97


def test_distorted_images_are_undistorted_or_refused(tiny_scene, tmp_path):
    D = [-0.25, 0.08, 0.0, 0.0, 0.0]
    robot.write_robot_bag(tiny_scene, tmp_path / "bag", robot.RobotBagOptions(sequences=[1], distortion=D))
    with pytest.raises(BagMapError, match="camera_info.*distortion.*refuse"):
        main(MapConfig(distortion="refuse", test_every=0), tmp_path / "bag", tmp_path / "x", progress=False, log=None)
    assert not (tmp_path / "x").exists()
    s = main(MapConfig(keyframes=False, test_every=0), tmp_path / "bag", tmp_path / "map", progress=False, log=None)
    assert s["undistorted"]
    src = Scene(tiny_scene).frames([1])
    errs, raw = [], []
    import cv2

    from reloc_ros.tools.bag.robot import distort_image

    intr = Scene(tiny_scene).color_intrinsics
    low = (lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5))  # compare geometry, not resampling
    for i, stem, _ in _kept(tmp_path / "map"):
        gt = read_color(src[i].color_path)
        errs.append(np.abs(low(_color(stem)) - low(gt)).mean())
        raw.append(np.abs(low(distort_image(gt, intr, D)) - low(gt)).mean())
    assert np.mean(errs) < 0.15 * np.mean(raw)


# --------------------------------------------------------------------------- bad input
def _rewrite(src: Path, dst: Path, fn) -> None:
    """Copy a bag, passing each (topic, message, log time) through ``fn``, which returns
    the (message, log time) to write or None to drop it."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    from reloc_ros.ros.messages import rosbags_types

    store = rosbags_types().store
    with AnyReader([src], default_typestore=store) as r:
        w = Writer(dst, version=9)
        w.open()
        conns = {c.topic: w.add_connection(c.topic, c.msgtype, typestore=store) for c in r.connections}
        for c, t, raw in r.messages():
            got = fn(c.topic, r.deserialize(raw, c.msgtype), t)
            if got is not None:
                w.write(conns[c.topic], got[1], store.serialize_cdr(got[0], c.msgtype))
        w.close()


def _refused(bag: Path, tmp_path: Path, conf: MapConfig, *patterns: str) -> str:
    out = tmp_path / "out"
    with pytest.raises(BagMapError) as e:
        main(conf, bag, out, progress=False, log=None)
    msg = str(e.value)
    assert str(bag) in msg
    for p in patterns:
        assert p in msg, msg
    assert not out.exists()
    _no_leftovers(tmp_path)
    return msg


def test_no_tf_path_to_the_camera(rbag, tmp_path):
    bag = tmp_path / "nostatic"
    _rewrite(rbag[0], bag, lambda topic, m, t: None if topic == "/tf_static" else (m, t))
    _refused(bag, tmp_path, MapConfig(), "/tf:", "no transform from 'map' to the camera frame "
             "'camera_color_optical_frame'", "does not exist", "odom -> base_link")


def test_missing_topic(rbag, tmp_path):
    _refused(rbag[0], tmp_path, MapConfig(depth_topic="/camera/aligned_depth/image_raw"),
             "/camera/aligned_depth/image_raw:", "topic is not in the bag")
    _refused(rbag[0], tmp_path, MapConfig(pose_source="topic", pose_topic="/slam/pose", image_topic="/odom"),
             "/odom:", "has type nav_msgs/msg/Odometry")


def test_truncated_file(rbag, tmp_path):
    bag = tmp_path / "cut"
    shutil.copytree(rbag[0], bag)
    f = next(bag.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 6 // 10])
    msg = _refused(bag, tmp_path, MapConfig())
    assert "cannot" in msg and ("truncated" in msg or "open" in msg)


def test_depth_in_another_frame_without_an_extrinsic(rbag, tmp_path):
    bag = tmp_path / "noextrinsic"

    def drop_depth_link(topic, m, t):
        if topic == "/tf_static":
            m.transforms = [x for x in m.transforms if x.child_frame_id != "camera_depth_optical_frame"]
        return m, t

    _rewrite(rbag[0], bag, drop_depth_link)
    _refused(bag, tmp_path, MapConfig(depth_topic=DEPTH), f"{DEPTH}:", "depth is in frame 'camera_depth_optical_frame'",
             "no extrinsic")


def test_non_monotonic_stamps(rbag, tmp_path):
    bag = tmp_path / "backwards"

    def swap(topic, m, t):
        if topic == "/camera/color/image_raw" and m.header.stamp.sec * 10**9 + m.header.stamp.nanosec \
                == 1_700_000_000 * 10**9 + 10 * round(1e9 / 30):
            m.header.stamp.sec -= 1  # frame 10 claims to be a second older
        return m, t

    _rewrite(rbag[0], bag, swap)
    _refused(bag, tmp_path, MapConfig(), "/camera/color/image_raw:", "header stamps go backwards")


def test_split_blocks_and_tum_reader(tmp_path):
    t = [int(i * 1e8) for i in range(100)]  # 10 s at 10 Hz
    roles = split_blocks(t, block_s=1.0, every=5, guard_s=0.25)
    # blocks 4 and 9 are test; training frames within 0.25 s of them are guard
    assert [k for k, r in enumerate(roles) if r == "test"] == list(range(40, 50)) + list(range(90, 100))
    assert [k for k, r in enumerate(roles) if r == "guard"] == [38, 39, 50, 51, 52, 88, 89]
    p = tmp_path / "t.tum"
    p.write_text("# c\n1.5 1 2 3 0 0 0 1\n2.000000001 0 0 0 0 0 1 0\n")
    stamps, poses = read_tum(p)
    assert stamps == [1_500_000_000, 2_000_000_001] and np.allclose(poses[0][:3, 3], [1, 2, 3])
    assert np.allclose(poses[1][:3, :3], np.diag([-1, -1, 1]))
    p.write_text("2 0 0 0 0 0 0 1\n1 0 0 0 0 0 0 1\n")
    with pytest.raises(ValueError, match="t.tum:2: stamps go backwards"):
        read_tum(p)


def test_cli_writes_a_scene_and_a_database(rbag, tiny_model, tmp_path, capsys):
    from reloc_ros.core.database import FrameDatabase

    bag = rbag[0]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("test_block_s: 0.3\ntest_every: 3\nguard_s: 0.05\nkeyframes: false\n")
    rc = cli([str(bag), "--out", str(tmp_path / "map"), "--config", str(cfg), "--depth-topic", DEPTH,
              "--database", str(tmp_path / "map.db.pt"), "--model", str(tiny_model), "--dense", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "read 32 images" in printed and "coverage of the test blocks" in printed
    db = FrameDatabase.load(tmp_path / "map.db.pt")
    conv = json.loads((tmp_path / "map" / "conversion.json").read_text())
    assert len(db) == conv["train_frames"] and db.dense is not None
    # an existing output is kept unless --overwrite
    assert cli([str(bag), "--out", str(tmp_path / "map"), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["corrupt model", "database is a folder"])
def test_bad_inputs_stop_the_command_before_converting(rbag, tmp_path, case, capsys, monkeypatch):
    """A model file that does not load (or a database path that is a folder) stops the
    command before it reads the bag: one line on stderr naming the file, exit status 2, no
    scene, database or temporary folder left behind."""
    import tempfile

    from reloc_ros.tools.bag import to_map

    bag = rbag[0]
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    model, db, out = work / "model.pt", work / "map.db.pt", work / "map"
    model.write_bytes(np.random.default_rng(0).bytes(16))  # a few random bytes
    if case == "database is a folder":
        db.mkdir()
    code = to_map.cli([str(bag), "--database", str(db), "--model", str(model), "--quiet", "--out", str(out)])
    r = capsys.readouterr()
    assert code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    bad = db if case == "database is a folder" else model
    assert lines[0].startswith("error: ") and str(bad) in lines[0], lines[0]
    if case == "database is a folder":
        assert "is a folder" in lines[0] and db.is_dir() and not any(db.iterdir())
    else:
        assert "not a model file" in lines[0] and not db.exists(), lines[0]
    # it failed fast: nothing was converted, no scene or temporary folder was made
    assert not out.exists()
    assert sorted(p.name for p in work.iterdir()) == sorted(p.name for p in (model, db) if p.exists())
    assert list(tmp.iterdir()) == []
    assert "read " not in r.out and "images" not in r.out


def test_config_file_is_the_defaults():
    import yaml

    repo = Path(__file__).resolve().parents[1]
    assert MapConfig.from_dict(yaml.safe_load((repo / "config" / "bag_to_map.yaml").read_text())) == MapConfig()


def _readme_commands() -> list[list[str]]:
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("<!-- own-robot-commands -->")[1].split("<!-- /own-robot-commands -->")[0]
    block = block.replace("\\\n", " ")  # a command continued over several lines is one line
    return [shlex.split(line)[2:] for line in block.splitlines() if line.startswith("python -m ")]


def test_readme_own_robot_commands(tiny_scene, tmp_path, monkeypatch):
    """The README's convert, build and fine-tune commands, as written, with sizes for a test:
    the map's database is built with the shipped generic model, which then localizes in it."""
    from reloc_ros.core.localizer import Localizer
    from reloc_ros.eval import calibrate as calibrate_cli
    from reloc_ros.mapping import database as database_cli
    from reloc_train import recipes
    from reloc_ros.tools.bag import to_map

    cmds = _readme_commands()
    assert [c[0] for c in cmds] == ["reloc_ros.tools.bag.to_map", "reloc_ros.mapping.database",
                                    "reloc_ros.eval.calibrate", "reloc_train.recipes"]
    robot.write_robot_bag(tiny_scene, tmp_path / "my_run", robot.RobotBagOptions(
        sequences=SEQS, depth=True, depth_frame="separate"))
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "config").symlink_to(repo / "config")
    (tmp_path / "models").symlink_to(repo / "models")
    monkeypatch.chdir(tmp_path)
    sizes = {
        "reloc_ros.tools.bag.to_map": ["--test-block-s", "0.3", "--test-every", "3", "--guard-s", "0.05", "--quiet"],
        "reloc_ros.mapping.database": [],
        "reloc_ros.eval.calibrate": ["--min-poses", "10", "--device", "cpu"],  # a tiny map: no bound means much
        "reloc_train.recipes": [a for kv in ["optim.epochs=1", "run.max_steps_per_epoch=2", "optim.batch_size=4",
                                             "eval.max_frames=4", "run.workers=0", "data.pairs.max_distance_m=1.5",
                                             "data.pairs.max_angle_deg=45", "data.pairs.min_distance_m=0"]
                                for a in ("--set", kv)] + ["--device", "cpu"],
    }
    runners = {"reloc_ros.tools.bag.to_map": to_map.cli, "reloc_ros.mapping.database": database_cli.main,
               "reloc_ros.eval.calibrate": calibrate_cli.main, "reloc_train.recipes": recipes.main}
    for module, *args in cmds:
        assert runners[module](args + sizes[module]) == 0, module
    conv = json.loads((tmp_path / "maps" / "my_run" / "conversion.json").read_text())
    assert conv["test_frames"] > 0 and conv["depth"]
    loc = Localizer.from_files(tmp_path / "models" / "generic" / "model.pt", tmp_path / "maps" / "my_run.db.pt",
                               device="cpu")
    assert len(loc.db) == conv["train_frames"] and loc.db.keypoints is not None
    cal = json.loads((tmp_path / "maps" / "my_run.calibration.json").read_text())
    assert cal["info"]["holdout"]["method"] == "crossfit" and cal["info"]["queries"] == conv["train_frames"]
    r = loc.localize(read_color(Scene(tiny_scene).frames("test")[0].color_path))
    assert r.pose is not None and np.isfinite(r.pose).all()
    # the fine-tuned model starts from the generic one: same network, new weights
    tuned = load_model(tmp_path / "runs" / "my_run" / "model.pt")[1]
    assert tuned.config == loc.model_info.config and tuned.fingerprint != loc.model_info.fingerprint
    assert f"models/generic/model.pt (fingerprint {loc.model_info.fingerprint[:12]})" in tuned.meta["encoder_init"]


def test_robot_bag_looks_like_a_robots(rbag):
    from rosbags.highlevel import AnyReader

    from reloc_ros.ros.messages import rosbags_types, stamp_to_ns

    bag, _, info = rbag
    edges: dict[tuple[str, str], list[int]] = {}
    images: dict[str, list[int]] = {}
    static = []
    with AnyReader([bag], default_typestore=rosbags_types().store) as r:
        for c, _, raw in r.messages():
            m = r.deserialize(raw, c.msgtype)
            if c.topic in ("/tf", "/tf_static"):
                for tr in m.transforms:
                    (static if c.topic == "/tf_static" else edges.setdefault(
                        (tr.header.frame_id, tr.child_frame_id), [])).append(
                        (tr.header.frame_id, tr.child_frame_id) if c.topic == "/tf_static" else stamp_to_ns(tr.header.stamp))
            elif "image" in c.topic:
                images.setdefault(c.topic, []).append(stamp_to_ns(m.header.stamp))
    rate = {k: (len(v) - 1) / ((v[-1] - v[0]) / 1e9) for k, v in edges.items()}
    assert set(rate) == {("map", "odom"), ("odom", "base_link")}
    assert rate[("map", "odom")] == pytest.approx(5, rel=0.01) and rate[("odom", "base_link")] == pytest.approx(100, rel=0.01)
    assert set(static) == {("base_link", "camera_link"), ("camera_link", "camera_color_optical_frame"),
                           ("camera_link", "camera_depth_optical_frame")}
    assert images["/camera/color/image_raw"] == images["/camera/color/image_raw/compressed"] == info["stamps_ns"]
    pose_stamps = set(edges[("map", "odom")]) | set(edges[("odom", "base_link")])
    assert not pose_stamps & set(info["stamps_ns"])  # no pose shares an image's stamp


@pytest.mark.parametrize("image_topic", ["/camera/color/image_raw", "/camera/color/image_raw/compressed"])
def test_images_that_do_not_match_their_camera_info(rbag, tmp_path, image_topic):
    bag = tmp_path / "wrongsize"

    def widen(topic, m, t):
        if topic == "/camera/color/camera_info":
            m.width += 8
        return m, t

    _rewrite(rbag[0], bag, widen)
    _refused(bag, tmp_path, MapConfig(image_topic=image_topic), f"{image_topic}:",
             "image is 80x60, its camera info says 88x60")
