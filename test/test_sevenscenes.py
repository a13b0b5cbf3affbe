"""Tests of the 7-Scenes reader on the real 12-frame 'stairs' sample and on broken copies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reloc_ros.core import geometry as g
from reloc_ros.data import sevenscenes as s7
from reloc_ros.data.sevenscenes import (
    Dataset,
    Intrinsics,
    Scene,
    SevenScenesError,
    format_pose_text,
    format_split_text,
    open_scenes,
    parse_pose_text,
    parse_split_text,
    read_color,
    read_depth,
    read_depth_raw,
    read_pose,
)

POSE_FILES = [f"seq-{s:02d}/frame-{i:06d}.pose.txt" for s in (1, 2, 3, 4) for i in range(3)]


def _text(path: Path) -> str:
    """File text with its line ends untouched (read_text would turn CRLF into LF)."""
    return path.read_bytes().decode("ascii")


# --------------------------------------------------------------------------- the real sample
def test_scene_splits_and_frames(sample_dir):
    scene = Scene(sample_dir)
    assert scene.name == sample_dir.resolve().name
    assert Scene(sample_dir, name="stairs").name == "stairs"
    assert scene.splits == {"train": [2, 3], "test": [1, 4]}
    assert scene.sequences("train") == [2, 3]
    assert scene.sequences("test") == [1, 4]
    assert scene.sequences("all") == [1, 2, 3, 4]
    assert scene.sequences([4, 1]) == [4, 1]
    with pytest.raises(ValueError, match="unknown split"):
        scene.sequences("val")

    train, test, every = scene.frames("train"), scene.frames("test"), scene.frames("all")
    assert [(f.seq, f.index) for f in train] == [(2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]
    assert [(f.seq, f.index) for f in test] == [(1, 0), (1, 1), (1, 2), (4, 0), (4, 1), (4, 2)]
    assert len(every) == 12
    assert [f.id for f in every] == [p.removesuffix(".pose.txt") for p in POSE_FILES]
    assert len(scene.frames([3])) == 3
    f = every[0]
    assert f.scene == scene.name
    assert f.pose_path == sample_dir / "seq-01" / "frame-000000.pose.txt"
    assert f.color_path == sample_dir / "seq-01" / "frame-000000.color.jpg"
    assert f.depth_path == sample_dir / "seq-01" / "frame-000000.depth.png"
    assert scene.validate() == 12
    assert scene.validate("test", images=False) == 6


def test_scene_poses_match_the_files(sample_dir):
    scene = Scene(sample_dir)
    frames = scene.frames("all")
    P = scene.poses(frames)
    assert P.shape == (12, 4, 4) and P.dtype == np.float64
    for f, T in zip(frames, P):
        assert g.is_rigid(T)
        # the printed 8 digits drift by up to ~2e-4 from orthonormality in this sample
        assert 1e-6 < g.rigidity_error(T) < 5e-4
        # independent parser: numpy on the raw text
        assert np.array_equal(T, np.loadtxt(f.pose_path))
    T0 = P[0]
    assert T0[0, 0] == 0.93817085
    assert T0[0, 3] == -1.4903377
    assert T0[2, 3] == -5.4694783e-002
    assert np.array_equal(T0[3], [0.0, 0.0, 0.0, 1.0])
    assert scene.poses([]).shape == (0, 4, 4)
    # pose() hands out copies: changing one does not change the cache
    a = scene.pose(frames[0])
    a[0, 0] = 99.0
    assert scene.pose(frames[0])[0, 0] == 0.93817085
    assert np.array_equal(read_pose(frames[5].pose_path), P[5])


def test_scene_summary(sample_dir):
    scene = Scene(sample_dir, name="stairs")
    summ = scene.summary("train")
    assert summ["scene"] == "stairs" and summ["frames"] == 6 and summ["sequences"] == [2, 3]
    assert summ["intrinsics"] == "7-Scenes defaults"
    P = scene.poses(scene.frames("train"))[:, :3, 3]
    assert summ["extent_m"] == (P.max(0) - P.min(0)).round(3).tolist()


def test_color_images(sample_dir):
    scene = Scene(sample_dir)
    for f in scene.frames("all"):
        assert f.color_path.suffix == ".jpg"
        img = scene.color(f)
        assert img.dtype == np.uint8 and img.shape == (480, 640, 3)
        with Image.open(f.color_path) as im:
            assert im.format == "JPEG"
            assert np.array_equal(img, np.asarray(im.convert("RGB")))
    assert img.std() > 5.0  # a real picture, not a blank


def test_depth_images(sample_dir):
    scene = Scene(sample_dir)
    n_invalid = n_65535 = 0
    for f in scene.frames("all"):
        raw = read_depth_raw(f.depth_path)
        assert raw.dtype == np.uint16 and raw.shape == (480, 640)
        with Image.open(f.depth_path) as im:
            assert np.array_equal(raw, np.asarray(im).astype(np.uint16))
        d = scene.depth(f)
        assert d.dtype == np.float32 and d.shape == (480, 640)
        invalid = (raw == 0) | (raw == 65535)  # seq-02..04 of the sample hold 65535 too
        assert np.array_equal(np.isnan(d), invalid)
        assert np.allclose(d[~invalid], raw[~invalid].astype(np.float32) / 1000.0)
        n_invalid += int(invalid.sum())
        n_65535 += int((raw == 65535).sum())
    # the sample does have holes of both kinds, so the NaN check means something
    assert n_invalid > 0 and n_65535 > 0
    # seq-01 frame 0: a stairs scene between about 0.8 m and 2.7 m
    raw0 = read_depth_raw(sample_dir / "seq-01" / "frame-000000.depth.png")
    assert raw0[raw0 > 0].min() == 801 and raw0.max() == 2722
    d0 = read_depth(sample_dir / "seq-01" / "frame-000000.depth.png")
    assert np.nanmin(d0) == pytest.approx(0.801) and np.nanmax(d0) == pytest.approx(2.722)
    assert int((raw0 == 0).sum()) == 26256


def test_default_intrinsics(sample_dir):
    scene = Scene(sample_dir)
    cam = scene.camera
    assert cam["source"] == "7-Scenes defaults"
    assert cam["depth_registered"] is False
    c, d = scene.color_intrinsics, scene.depth_intrinsics
    assert (c.fx, c.fy, c.cx, c.cy, c.width, c.height) == (525.0, 525.0, 320.0, 240.0, 640, 480)
    assert (d.fx, d.fy, d.cx, d.cy, d.width, d.height) == (585.0, 585.0, 320.0, 240.0, 640, 480)
    assert np.array_equal(c.K, [[525.0, 0, 320.0], [0, 525.0, 240.0], [0, 0, 1]])


def test_dataset_orders_scenes(sample_dir, copy_sample, tmp_path):
    root = tmp_path / "7scenes"
    root.mkdir()
    os.symlink(sample_dir, root / "stairs", target_is_directory=True)
    copy_sample(root / "chess")
    copy_sample(root / "aaa_custom")
    (root / "notes").mkdir()  # no split file: not a scene
    (root / "README.txt").write_text("x")

    ds = Dataset(root)
    assert ds.names == ["chess", "stairs", "aaa_custom"]
    assert len(ds) == 3
    scenes = list(ds)
    assert [sc.name for sc in scenes] == ["chess", "stairs", "aaa_custom"]
    assert ds["stairs"] is ds["stairs"]
    # a symlinked scene keeps the name it has in the root
    assert {f.scene for f in ds["stairs"].frames("all")} == {"stairs"}
    assert len(ds["chess"].frames("test")) == 6
    with pytest.raises(KeyError, match="fire"):
        ds["fire"]

    got = open_scenes(root)
    assert [sc.name for sc in got] == ["chess", "stairs", "aaa_custom"]
    assert [sc.name for sc in open_scenes(root, names=["stairs"])] == ["stairs"]
    one = open_scenes(root / "chess")
    assert len(one) == 1 and one[0].name == "chess" and one[0].root == root / "chess"
    assert [sc.name for sc in open_scenes(sample_dir)] == [sample_dir.resolve().name]
    with pytest.raises(SevenScenesError, match="not one of"):
        open_scenes(root / "chess", names=["fire"])


def test_dataset_errors(tmp_path):
    with pytest.raises(SevenScenesError, match="dataset folder does not exist") as e:
        Dataset(tmp_path / "nope")
    assert e.value.path == tmp_path / "nope"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SevenScenesError, match="no scene folder") as e:
        open_scenes(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)


# --------------------------------------------------------------------------- byte-exact writer
@pytest.mark.parametrize("rel", POSE_FILES)
def test_format_pose_text_reproduces_the_file(sample_dir, rel):
    path = sample_dir / rel
    raw = path.read_bytes()
    T = parse_pose_text(raw.decode("ascii"), path)
    assert format_pose_text(T).encode("ascii") == raw


@pytest.mark.parametrize("name, seqs", [("TrainSplit.txt", [2, 3]), ("TestSplit.txt", [1, 4])])
def test_format_split_text_reproduces_the_file(sample_dir, name, seqs):
    raw = (sample_dir / name).read_bytes()
    assert raw.endswith(b"\r\n")
    parsed = parse_split_text(raw.decode("ascii"), sample_dir / name)
    assert parsed == seqs
    assert format_split_text(parsed).encode("ascii") == raw


def test_format_values():
    assert s7._fmt_float(0.93817085) == "9.3817085e-001"
    assert s7._fmt_float(-1.4903377) == "-1.4903377e+000"
    assert s7._fmt_float(0.0) == "0.0000000e+000"
    assert s7._fmt_float(1.5e-120) == "1.5000000e-120"
    text = format_pose_text(np.eye(4))
    lines = text.split("\r\n")
    assert len(lines) == 5 and lines[-1] == ""
    assert lines[0] == "  1.0000000e+000\t  0.0000000e+000\t  0.0000000e+000\t  0.0000000e+000\t"
    with pytest.raises(ValueError):
        format_pose_text(np.eye(3))
    assert format_split_text([1, 12]) == "sequence1\r\nsequence12\r\n"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
        lambda v: np.linalg.norm(v) > 1e-3
    ),
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=3),
)
def test_pose_text_round_trip(q, t):
    T = g.make_pose(t, q)
    text = format_pose_text(T)
    back = parse_pose_text(text)
    assert np.allclose(back, T, rtol=1e-7, atol=1e-7)
    # the text is a fixed point of parse+format
    assert format_pose_text(back) == text
    # LF-only and space-separated text parses the same
    assert np.array_equal(parse_pose_text(text.replace("\r\n", "\n").replace("\t", " ")), back)


def test_parse_split_text_variants():
    assert parse_split_text("sequence2\nseq-03\r\n\r\nSeq4\n  sequence10  \n") == [2, 3, 4, 10]
    with pytest.raises(SevenScenesError, match="names no sequence"):
        parse_split_text("\r\n\r\n", "x/TestSplit.txt")
    assert parse_split_text("", "x/TestSplit.txt") == []  # a map-only scene's test split


# --------------------------------------------------------------------------- intrinsics
def test_intrinsics_scaled():
    K = Intrinsics(525.0, 520.0, 320.0, 240.0, 640, 480)
    h = K.scaled(320, 240)
    assert (h.fx, h.fy) == (262.5, 260.0)
    assert h.cx == (320.0 + 0.5) / 2 - 0.5 == 159.75
    assert h.cy == (240.0 + 0.5) / 2 - 0.5 == 119.75
    assert (h.width, h.height) == (320, 240)
    assert K.scaled(640, 480) == K
    d = K.scaled(1280, 960)
    assert (d.fx, d.cx, d.cy) == (1050.0, 640.5, 480.5)
    assert Intrinsics.from_dict(K.as_dict()) == K


def test_valid_intrinsics_yaml_is_honoured(scene_copy):
    path = scene_copy / "intrinsics.yaml"
    path.write_text(
        "color: {fx: 600.0, fy: 601.0, cx: 319.5, cy: 239.5, width: 640, height: 480}\n"
        "depth_registered: true\n"
    )
    scene = Scene(scene_copy)
    assert scene.camera["source"] == str(path)
    assert scene.camera["depth_registered"] is True
    c = scene.color_intrinsics
    assert (c.fx, c.fy, c.cx, c.cy, c.width, c.height) == (600.0, 601.0, 319.5, 239.5, 640, 480)
    assert scene.depth_intrinsics == c  # no depth entry: registered depth uses the colour camera
    half = c.scaled(320, 240)
    assert (half.fx, half.fy, half.cx, half.cy) == (300.0, 300.5, 159.5, 119.5)
    assert scene.summary()["intrinsics"] == str(path)

    path.write_text(
        "color: {fx: 500, fy: 500, cx: 300, cy: 200, width: 600, height: 400}\n"
        "depth: {fx: 585, fy: 585, cx: 320, cy: 240, width: 640, height: 480}\n"
    )
    scene = Scene(scene_copy)
    assert scene.color_intrinsics.width == 600 and scene.depth_intrinsics.fx == 585.0
    assert scene.camera["depth_registered"] is False


@pytest.mark.parametrize(
    "content, problem",
    [
        ("color: {fx: 525, fy: [\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping with a 'color' entry"),
        ("depth: {fx: 585}\n", "expected a mapping with a 'color' entry"),
        ("color: {fx: 525, fy: 525, cx: 320, width: 640, height: 480}\n", "bad intrinsics entry"),
        ("color: {fx: abc, fy: 525, cx: 320, cy: 240, width: 640, height: 480}\n", "bad intrinsics entry"),
    ],
)
def test_invalid_intrinsics_yaml(scene_copy, content, problem):
    path = scene_copy / "intrinsics.yaml"
    path.write_text(content)
    scene = Scene(scene_copy)
    with pytest.raises(SevenScenesError, match=problem) as e:
        scene.color_intrinsics
    assert e.value.path == path
    assert str(path) in str(e.value)


# --------------------------------------------------------------------------- malformed scenes
def _raises_naming(path: Path, problem: str, fn, *args):
    with pytest.raises(SevenScenesError) as e:
        fn(*args)
    assert e.value.path == path, str(e.value)
    msg = str(e.value)
    assert str(path) in msg and problem in msg, msg
    assert isinstance(e.value, ValueError)
    return e.value


def test_missing_split_file(scene_copy):
    (scene_copy / "TrainSplit.txt").unlink()
    _raises_naming(scene_copy / "TrainSplit.txt", "train split file is missing", Scene, scene_copy)
    # open_scenes still sees a scene (TestSplit.txt is there) and reports the same
    _raises_naming(scene_copy / "TrainSplit.txt", "is missing", open_scenes, scene_copy)


def test_bad_split_line(scene_copy):
    path = scene_copy / "TestSplit.txt"
    path.write_bytes(b"sequence1\r\nfoo\r\n")
    _raises_naming(path, "line 2: expected 'sequenceN', got 'foo'", Scene, scene_copy)


def test_split_names_sequence_without_folder(scene_copy):
    (scene_copy / "TrainSplit.txt").write_bytes(b"sequence2\r\nsequence7\r\n")
    _raises_naming(scene_copy / "seq-07", "has no folder", Scene, scene_copy)


def test_scene_folder_does_not_exist(tmp_path):
    _raises_naming(tmp_path / "stairs", "scene folder does not exist", Scene, tmp_path / "stairs")


def _replace_pose(scene_dir: Path, text: str) -> Path:
    path = scene_dir / "seq-02" / "frame-000001.pose.txt"
    path.write_bytes(text.encode("ascii"))
    return path


def test_pose_with_15_numbers(scene_copy):
    orig = _text(scene_copy / "seq-02" / "frame-000001.pose.txt")
    path = _replace_pose(scene_copy, orig.rsplit("1.0000000e+000", 1)[0] + "\t\r\n")
    scene = Scene(scene_copy)
    frame = [f for f in scene.frames("train") if f.id == "seq-02/frame-000001"][0]
    _raises_naming(path, "must hold 16 numbers (4x4), found 15", scene.pose, frame)
    _raises_naming(path, "found 15", scene.validate)
    _raises_naming(path, "found 15", read_pose, path)
    # the test split does not touch that file
    assert scene.validate("test") == 6


def test_pose_with_non_numeric_value(scene_copy):
    orig = _text(scene_copy / "seq-02" / "frame-000001.pose.txt")
    path = _replace_pose(scene_copy, orig.replace("8.3777380e-001", "8.37773BADe-001"))
    _raises_naming(path, "non-numeric value", read_pose, path)
    _raises_naming(path, "non-numeric value", Scene(scene_copy).validate)


def test_pose_not_rigid(scene_copy):
    T = read_pose(scene_copy / "seq-02" / "frame-000001.pose.txt")
    T[:3, :3] *= 1.05
    path = _replace_pose(scene_copy, format_pose_text(T))
    err = _raises_naming(path, "not a rigid transform", read_pose, path)
    assert "deviation" in str(err)
    _raises_naming(path, "not a rigid transform", Scene(scene_copy).validate)
    # a reflection is not a rotation either
    T = read_pose(scene_copy / "seq-02" / "frame-000000.pose.txt")
    T[:3, 2] *= -1
    path = _replace_pose(scene_copy, format_pose_text(T))
    _raises_naming(path, "not a rigid transform", read_pose, path)


def test_pose_file_missing_or_not_ascii(scene_copy):
    path = scene_copy / "seq-01" / "frame-000009.pose.txt"
    _raises_naming(path, "file is missing", read_pose, path)
    bad = _replace_pose(scene_copy, "x")
    bad.write_bytes("  9.38e-001\u00e9".encode("utf-8"))
    _raises_naming(bad, "not ASCII", read_pose, bad)


def test_corrupt_color_image(scene_copy):
    path = scene_copy / "seq-03" / "frame-000002.color.jpg"
    path.write_bytes(b"this is not a JPEG at all" * 40)
    _raises_naming(path, "unreadable image", read_color, path)
    scene = Scene(scene_copy)
    frame = scene.frames([3])[2]
    _raises_naming(path, "unreadable image", scene.color, frame)
    _raises_naming(path, "unreadable image", scene.validate)
    # poses only: the image is not opened
    assert scene.validate(images=False) == 12


def test_truncated_color_image(scene_copy):
    path = scene_copy / "seq-04" / "frame-000001.color.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises_naming(path, "unreadable image", read_color, path)


def test_truncated_depth_image(scene_copy):
    path = scene_copy / "seq-01" / "frame-000002.depth.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises_naming(path, "unreadable depth image", read_depth, path)
    _raises_naming(path, "unreadable image", Scene(scene_copy).validate)


def test_missing_color_image(scene_copy):
    (scene_copy / "seq-04" / "frame-000001.color.jpg").unlink()
    scene = Scene(scene_copy)
    assert len(scene.frames("train")) == 6  # other split unaffected
    _raises_naming(
        scene_copy / "seq-04" / "frame-000001.color.png", "colour image (.color.png or .color.jpg) is missing",
        scene.frames, "test",
    )
    _raises_naming(scene_copy / "nope.png", "image file is missing", read_color, scene_copy / "nope.png")


def test_missing_depth_image(scene_copy):
    (scene_copy / "seq-01" / "frame-000001.depth.png").unlink()
    scene = Scene(scene_copy)
    frame = scene.frames([1])[1]
    assert frame.depth_path is None
    path = scene_copy / "seq-01" / "frame-000001.depth.png"
    _raises_naming(path, "depth file is missing", scene.depth, frame)
    _raises_naming(path, "depth file is missing", read_depth_raw, path)
    assert scene.validate() == 12  # depth is optional for validation


def test_sequence_without_frames(scene_copy):
    for p in (scene_copy / "seq-04").iterdir():
        p.unlink()
    scene = Scene(scene_copy)
    _raises_naming(scene_copy / "seq-04", "holds no frame", scene.frames, "test")


def test_depth_must_be_single_channel(scene_copy):
    path = scene_copy / "seq-01" / "frame-000000.depth.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    _raises_naming(path, "16-bit single-channel", read_depth_raw, path)


# --------------------------------------------------------------------------- formats
def test_color_png_preferred_over_jpg(scene_copy):
    png = scene_copy / "seq-02" / "frame-000001.color.png"
    Image.fromarray(np.full((480, 640, 3), (10, 200, 30), np.uint8)).save(png)
    scene = Scene(scene_copy)
    frames = {f.id: f for f in scene.frames("train")}
    f = frames["seq-02/frame-000001"]
    assert f.color_path == png
    img = scene.color(f)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert np.all(img == np.array([10, 200, 30], np.uint8))
    assert frames["seq-02/frame-000000"].color_path.suffix == ".jpg"
    assert scene.validate() == 12


def test_depth_65535_and_0_are_invalid(tmp_path):
    raw = np.array([[0, 65535, 1234], [1, 65534, 5000]], dtype=np.uint16)
    path = tmp_path / "frame-000000.depth.png"
    Image.fromarray(raw).save(path)
    assert np.array_equal(read_depth_raw(path), raw)
    d = read_depth(path)
    assert d.dtype == np.float32
    assert np.isnan(d[0, 0]) and np.isnan(d[0, 1])
    assert d[0, 2] == np.float32(1.234) and d[1, 0] == np.float32(0.001)
    assert d[1, 1] == np.float32(65.534) and d[1, 2] == np.float32(5.0)
    assert int(np.isnan(d).sum()) == 2
    assert set(s7.INVALID_DEPTH_VALUES) == {0, 65535}
    assert float(np.nanmin(d)) == pytest.approx(0.001)


def test_scene_name_from_relative_and_symlinked_paths(sample_dir, tmp_path, monkeypatch):
    link = tmp_path / "stairs"
    os.symlink(sample_dir, link, target_is_directory=True)
    assert Scene(link).name == "stairs"
    assert [f.scene for f in Scene(link).frames("test")] == ["stairs"] * 6
    monkeypatch.chdir(tmp_path)
    assert Scene(Path("stairs")).name == "stairs"
    assert Scene(Path("stairs/seq-01/..")).name == "stairs"
    assert len(Scene(Path("stairs/seq-01/..")).frames("all")) == 12
    monkeypatch.chdir(sample_dir)  # the OS gives the cwd with symlinks resolved
    assert Scene(Path(".")).name == sample_dir.resolve().name


@pytest.mark.parametrize("version", [0, 3, "two"])
def test_scene_metadata_of_another_version_is_refused_in_one_line(scene_copy, version):
    """intrinsics.yaml carries a format version: an older or newer one names the file and
    the commands that write it again; one without a version is version 1, and versions 1
    and 2 (which adds depth_to_color) are both read."""
    from reloc_ros.data.sevenscenes import INTRINSICS_FILE, SCENE_FORMAT_VERSION, Scene, SevenScenesError

    cam = {"fx": 525.0, "fy": 525.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480}
    path = scene_copy / INTRINSICS_FILE
    path.write_text(yaml.safe_dump({"color": cam}))
    assert Scene(scene_copy).color_intrinsics.fx == 525.0 and SCENE_FORMAT_VERSION == 2
    path.write_text(yaml.safe_dump({"format_version": 2, "color": cam}))
    assert Scene(scene_copy).color_intrinsics.fx == 525.0
    path.write_text(yaml.safe_dump({"format_version": version, "color": cam}))
    with pytest.raises(SevenScenesError) as e:
        Scene(scene_copy).color_intrinsics
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "reloc_sim.synthetic" in msg and "to_map" in msg
    assert ("newer" if version == 3 else "older") in msg
