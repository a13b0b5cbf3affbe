"""Tests of the synthetic 7-Scenes-format scene generator (reloc_sim.synthetic).

The 'tiny' scene of the shared ``tiny_scene`` fixture (preset 'tiny', seed 0) is read back
with the 7-Scenes reader and checked for the dataset's byte quirks, determinism, the
geometric consistency of depth and poses, and plausible handheld camera paths.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from reloc_ros.core import geometry as g
from reloc_sim import synthetic as syn
from reloc_ros.data.sevenscenes import DEFAULT_COLOR_INTRINSICS, Dataset, Intrinsics, Scene, read_depth_raw

TINY = syn.PRESETS["tiny"]
POSE_LINE = re.compile(r"^(?: *-?\d\.\d{7}e[+-]\d{3}\t){4}$")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _positions(scene: Scene, split: str) -> dict[int, np.ndarray]:
    return {s: scene.poses(scene.frames([s])) for s in scene.sequences(split)}


def _reprojection_errors(scene: Scene, fi, fj, T_j=None) -> tuple[np.ndarray, int]:
    """Relative depth disagreement of frame i's depth moved into frame j, and the number of
    valid pixels of frame i."""
    K = scene.depth_intrinsics
    Di, Dj = scene.depth(fi), scene.depth(fj)
    Ti = scene.pose(fi)
    Tj = scene.pose(fj) if T_j is None else T_j
    v, u = np.nonzero(np.isfinite(Di))
    z = Di[v, u].astype(np.float64)
    Xc = np.stack([(u - K.cx) / K.fx * z, (v - K.cy) / K.fy * z, z])
    Xw = Ti[:3, :3] @ Xc + Ti[:3, 3:4]
    Tji = g.invert(Tj)
    Xj = Tji[:3, :3] @ Xw + Tji[:3, 3:4]
    front = Xj[2] > 0.1
    uj = np.rint(K.fx * Xj[0, front] / Xj[2, front] + K.cx).astype(int)
    vj = np.rint(K.fy * Xj[1, front] / Xj[2, front] + K.cy).astype(int)
    zj = Xj[2, front]
    inside = (uj >= 0) & (uj < K.width) & (vj >= 0) & (vj < K.height)
    d = Dj[vj[inside], uj[inside]]
    ok = np.isfinite(d)
    return np.abs(zj[inside][ok] - d[ok]) / d[ok], len(z)


# --------------------------------------------------------------------------- format
def test_scene_reads_back_with_7scenes_layout(tiny_scene):
    scene = Scene(tiny_scene)
    assert scene.name == TINY.name == "synth_a"
    assert scene.splits == {"train": [1, 2], "test": [3]}
    assert (tiny_scene / "TrainSplit.txt").read_bytes() == b"sequence1\r\nsequence2\r\n"
    assert (tiny_scene / "TestSplit.txt").read_bytes() == b"sequence3\r\n"
    assert sorted(p.name for p in tiny_scene.iterdir()) == [
        "TestSplit.txt",
        "TrainSplit.txt",
        "classes.yaml",
        "intrinsics.yaml",
        "seq-01",
        "seq-02",
        "seq-03",
        "synthetic.yaml",
    ]
    for s in (1, 2, 3):
        frames = scene.frames([s])
        assert [f.index for f in frames] == list(range(TINY.frames))
        assert all(f.depth_path is not None and f.color_path.suffix == ".png" for f in frames)
        assert all(f.label_path is not None for f in frames)
        assert len(list(scene.seq_dir(s).iterdir())) == 4 * TINY.frames
    assert scene.validate("all", images=True) == 3 * TINY.frames

    cam = scene.camera
    want = DEFAULT_COLOR_INTRINSICS.scaled(80, 60)
    assert cam["color"] == cam["depth"] == want == TINY.intrinsics
    assert cam["depth_registered"] is True
    assert want.fx == pytest.approx(525.0 / 8) and want.cx == pytest.approx(39.5625)
    prov = yaml.safe_load((tiny_scene / syn.PROVENANCE_FILE).read_text())
    assert prov["seed"] == 0 and syn.SceneConfig.from_dict(prov["config"]) == TINY


def test_frame_files_have_the_dataset_byte_quirks(tiny_scene):
    scene = Scene(tiny_scene)
    invalid = 0
    for f in scene.frames("all"):
        with Image.open(f.color_path) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (80, 60))
        with Image.open(f.depth_path) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "I;16", (80, 60))
        raw = read_depth_raw(f.depth_path)
        assert raw.dtype == np.uint16 and not (raw == 0).any()
        invalid += int((raw == syn.INVALID_DEPTH).sum())
        assert (raw != syn.INVALID_DEPTH).mean() > 0.6
        valid = raw[raw != syn.INVALID_DEPTH]
        assert (
            valid.min() >= 1000 * TINY.sensor.min_depth and valid.max() <= 1000 * TINY.sensor.max_depth + 50
        )

        data = f.pose_path.read_bytes()
        assert data.endswith(b"\r\n") and data.count(b"\r\n") == 4 and data.count(b"\n") == 4
        lines = data.decode("ascii").split("\r\n")[:4]
        assert all(POSE_LINE.match(line) for line in lines), lines
        assert lines[3] == "  0.0000000e+000\t  0.0000000e+000\t  0.0000000e+000\t  1.0000000e+000\t"
        assert g.rigidity_error(scene.pose(f)) < 1e-6
    assert invalid > 0  # depth edges and grazing surfaces give no reading


# --------------------------------------------------------------------------- determinism
def test_same_seed_is_byte_identical_for_any_worker_count(tiny_scene, tmp_path):
    again = syn.generate_scene(tmp_path / "w2", TINY, seed=0, workers=2, progress=False)
    assert again == tmp_path / "w2" / "synth_a"
    a, b = _files(tiny_scene), _files(again)
    assert list(a) == list(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_other_seed_gives_other_paths_in_the_same_room(tiny_scene, tmp_path):
    other = syn.generate_scene(tmp_path, replace(TINY, frames=4), seed=1, progress=False)
    a, b = Scene(tiny_scene), Scene(other)
    for f_a, f_b in zip(a.frames([1])[:4], b.frames([1])):
        assert f_a.pose_path.read_bytes() != f_b.pose_path.read_bytes()
        assert f_a.color_path.read_bytes() != f_b.color_path.read_bytes()
        assert f_a.depth_path.read_bytes() != f_b.depth_path.read_bytes()
    room = yaml.safe_load((tiny_scene / syn.PROVENANCE_FILE).read_text())["room"]
    assert yaml.safe_load((other / syn.PROVENANCE_FILE).read_text())["room"] == room


# --------------------------------------------------------------------------- geometry
def test_depth_and_poses_are_geometrically_consistent(tiny_scene):
    scene = Scene(tiny_scene)
    checked = 0
    for s in scene.sequences("all"):
        frames = scene.frames([s])
        for i in range(0, len(frames) - 2, 3):
            for j in (i + 1, i + 2):
                err, n_valid = _reprojection_errors(scene, frames[i], frames[j])
                assert len(err) > 0.4 * n_valid, (s, i, j)
                assert np.median(err) < 0.02, (s, i, j, np.median(err))
                assert np.mean(err < 0.05) > 0.8, (s, i, j, np.mean(err < 0.05))
                checked += 1
    assert checked >= 10
    # The check has teeth: a pose 10 cm / 3 degrees off breaks it.
    f = scene.frames([1])
    Tj = scene.pose(f[1]) @ g.make_pose(
        [0.1, 0.0, 0.0], [np.cos(np.radians(1.5)), 0.0, np.sin(np.radians(1.5)), 0.0]
    )
    err, _ = _reprojection_errors(scene, f[0], f[1], Tj)
    assert np.mean(err < 0.05) < 0.6


def test_render_view_reproduces_the_files(tiny_scene):
    scene = Scene(tiny_scene)
    room = TINY.room()
    for f in scene.frames([2])[::5]:
        rgb, depth = syn.render_view(room, scene.pose(f), TINY.intrinsics, supersample=TINY.supersample)
        assert rgb.dtype == np.uint8 and rgb.shape == (60, 80, 3)
        assert depth.dtype == np.float32 and np.isfinite(depth).all()
        measured = scene.depth(f)
        ok = np.isfinite(measured)
        rel = np.abs(measured[ok] - depth[ok]) / depth[ok]
        assert np.median(rel) < 0.005 and rel.max() < 0.05
        diff = np.abs(scene.color(f).astype(int) - rgb.astype(int))
        assert diff.mean() < 12


def test_labels_are_exact_from_the_ray_caster(tiny_scene):
    """Each label image holds the class of the surface at each pixel centre: back-projected
    with the exact depth, floor pixels lie on z = 0, ceiling ones on the ceiling, wall ones
    on a wall, and furniture ones inside a box of that class."""
    scene = Scene(tiny_scene)
    assert scene.classes == list(syn.CLASSES)
    room = TINY.room()
    C = syn.CLASS_ID
    seen = set()
    for f in scene.frames("all")[::6]:
        lab = scene.labels(f)
        assert lab.dtype == np.uint8 and lab.shape == (60, 80)
        _, z, lab2 = syn.render_view(room, scene.pose(f), TINY.intrinsics, labels=True)
        assert np.array_equal(lab, lab2)  # the file is the ray caster's, bit for bit
        K, T = TINY.intrinsics.K, scene.pose(f)
        v, u = np.mgrid[0:60, 0:80]
        P = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1).reshape(-1, 3)
        W = P @ T[:3, :3].T + T[:3, 3]
        flat = lab.reshape(-1)
        seen |= set(np.unique(flat).tolist())
        tol = 2e-3 * z.reshape(-1)  # float32 ray distances
        assert np.all(np.abs(W[flat == C["floor"], 2]) < tol[flat == C["floor"]] + 1e-4)
        assert np.all(np.abs(W[flat == C["ceiling"], 2] - room.size[2]) < tol[flat == C["ceiling"]] + 1e-4)
        wall = flat == C["wall"]
        d_wall = np.min(np.abs(np.abs(W[wall, :2]) - room.size[:2] / 2), axis=1)
        assert np.all(d_wall < tol[wall] + 1e-4)
        furn = np.flatnonzero(~np.isin(flat, [C["floor"], C["ceiling"], C["wall"]]))
        box_class = room.s_class[6::6]
        for k in furn:
            inside = np.all((W[k] >= room.box_lo - tol[k] - 1e-4) & (W[k] <= room.box_hi + tol[k] + 1e-4), axis=1)
            assert flat[k] in box_class[inside], (k, syn.CLASSES[flat[k]])
    assert {C["floor"], C["wall"]} <= seen and len(seen) >= 5


def test_scenes_without_labels_mask_them_out(sample_dir):
    scene = Scene(sample_dir)  # real 7-Scenes: depth, no labels
    assert scene.classes is None
    assert all(f.label_path is None and scene.labels(f) is None for f in scene.frames("all"))


def test_sensor_model():
    room = syn.make_room(3)
    intr = Intrinsics(60.0, 60.0, 39.5, 29.5, 80, 60)
    pose = np.eye(4)
    pose[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # level, looking along +x
    pose[:3, 3] = [0.0, 0.0, 1.4]
    _, flat = syn.render_view(room, pose, intr)
    # Looking along +x from the room centre: nothing is farther than the wall x = size/2.
    assert flat.max() <= room.size[0] / 2 + 1e-3

    pose = syn.make_trajectory(TINY.room(), TINY, seed=0, seq=1)[0]
    rgb, clean = syn.render_view(TINY.room(), pose, intr)
    assert np.isfinite(clean).all()
    far = float(np.quantile(clean, 0.6))
    noisy = replace(syn.SensorNoise(), max_depth=far, edge_jump=0.0)
    rgb_n, depth = syn.render_view(TINY.room(), pose, intr, noise=noisy, rng=np.random.default_rng(1))
    valid = np.isfinite(depth)
    assert 0.3 < valid.mean() < 0.65
    assert not valid[clean > far].any()  # beyond the range
    assert valid[clean < far].mean() > 0.8  # the others, but at grazing angles
    # Millimetre quantisation; noise within 6 sigma(z) = 6 k z^2 (plus half a millimetre).
    assert np.allclose(depth[valid] * 1000, np.rint(depth[valid] * 1000), atol=1e-3)
    err = np.abs(depth[valid] - clean[valid])
    assert (err <= 6 * noisy.depth_sigma * clean[valid] ** 2 + 5e-4 + 1e-6).all()
    assert err.max() > 0
    assert not np.array_equal(rgb, rgb_n)
    # The same generator state gives the same frame.
    again = syn.render_view(TINY.room(), pose, intr, noise=noisy, rng=np.random.default_rng(1))
    assert np.array_equal(again[0], rgb_n) and np.array_equal(again[1], depth, equal_nan=True)


# --------------------------------------------------------------------------- camera paths
def _check_path(room: syn.Room, T: np.ndarray, config: syn.SceneConfig) -> None:
    """Motion per frame, free space and pose validity of one sequence."""
    assert T.shape == (config.frames, 4, 4)
    assert max(g.rigidity_error(t) for t in T) < 1e-6
    step = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1)
    turn = g.rotation_error_deg(T[:-1], T[1:])
    k = config.frame_stride  # steps of the walk between two rendered frames
    assert step.max() < 3 * k * config.step_m and step.mean() > 0.2 * config.step_m
    assert turn.max() < 3 * k * config.step_deg + 1.0
    c = T[:, :3, 3]
    assert (np.abs(c[:, :2]) < room.size[:2] / 2 - 0.4).all()
    assert (c[:, 2] > config.camera_height[0] - 0.2).all() and (c[:, 2] < config.camera_height[1] + 0.2).all()
    inside_box = ((c[:, None] > room.box_lo[None] - 0.1) & (c[:, None] < room.box_hi[None] + 0.1)).all(axis=2)
    assert not inside_box.any()
    for x0, y0, x1, y1 in room.footprints():
        assert not (
            (c[:, 0] > x0 - 0.3) & (c[:, 0] < x1 + 0.3) & (c[:, 1] > y0 - 0.3) & (c[:, 1] < y1 + 0.3)
        ).any()
    # The camera looks down the optical axis with little roll: its x axis stays level-ish
    # (roll is clipped at 3 sigma, plus the hand shake).
    assert np.abs(T[:, 2, 0]).max() < np.sin(np.radians(max(20.0, 3 * config.roll_deg + 4 * config.shake_deg)))


def _check_coverage(train: list[np.ndarray], test: list[np.ndarray], quantile: float = 1.0) -> None:
    tr = np.concatenate([T[:, :3, 3] for T in train])
    for T in test:
        d = np.linalg.norm(T[:, None, :3, 3] - tr[None], axis=2)
        # Every test camera (or a quantile of them) has a training camera near it ...
        assert np.quantile(d.min(axis=1), quantile) < 1.0
        assert d.min(axis=1).max() < 1.5
        assert d.min() > 1e-3  # ... but none at the very same place
        for Tt in train:
            n = min(len(T), len(Tt))
            assert np.linalg.norm(T[:n, :3, 3] - Tt[:n, :3, 3], axis=1).mean() > 0.05


def test_tiny_camera_paths_are_plausible(tiny_scene):
    scene = Scene(tiny_scene)
    room = TINY.room()
    for s in scene.sequences("all"):
        frames = scene.frames([s])
        _check_path(room, scene.poses(frames), TINY)
        for f in frames:
            assert 0.5 < np.nanmedian(scene.depth(f)) < 3.5
    _check_coverage(list(_positions(scene, "train").values()), list(_positions(scene, "test").values()))


@pytest.mark.parametrize("layout", [1, 4])
def test_long_camera_paths_are_plausible(layout):
    config = syn.PRESETS["demo"].replace(layout_seed=layout, frames=150, train_seqs=2, test_seqs=1)
    room = config.room()
    paths = {s: syn.make_trajectory(room, config, seed=0, seq=s) for s in (1, 2, 3)}
    intr = DEFAULT_COLOR_INTRINSICS.scaled(32, 24)  # same field of view as the config
    for T in paths.values():
        _check_path(room, T, config)
        for pose in T[::10]:
            _, depth = syn.render_view(room, pose, intr, shadows=False)
            assert 0.5 < np.median(depth) < 3.5
    _check_coverage([paths[1], paths[2]], [paths[3]], quantile=0.9)
    assert np.array_equal(syn.make_trajectory(room, config, seed=0, seq=3), paths[3])


# --------------------------------------------------------------------------- layouts
def test_layouts_differ():
    a, b = syn.make_room(0), syn.make_room(1)
    assert a.layout_seed == 0 and b.layout_seed == 1
    assert not np.allclose(a.size, b.size)
    assert a.describe() != b.describe()
    lo, hi = np.array(TINY.room_min), np.array(TINY.room_max)
    for room in (a, b):
        assert ((room.size >= lo) & (room.size <= hi)).all()
        assert len(room.groups) >= 6 and room.free_area > 2.0
        assert (room.box_lo >= room.lo - 1e-9).all() and (room.box_hi <= room.hi + 1e-9).all()
    # The same layout seed always gives the same room.
    c = syn.make_room(1)
    assert np.array_equal(b.box_lo, c.box_lo) and np.array_equal(b.s_tex, c.s_tex)
    # Seen from the same place, the rooms look different.
    intr = Intrinsics(40.0, 40.0, 31.5, 23.5, 64, 48)
    pose = np.eye(4)
    pose[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    pose[:3, 3] = [0.0, 0.0, 1.5]
    (ia, da), (ib, db) = syn.render_view(a, pose, intr), syn.render_view(b, pose, intr)
    assert np.abs(ia.astype(int) - ib.astype(int)).mean() > 20
    assert np.abs(da - db).mean() > 0.1


def test_generate_dataset_makes_distinct_scenes(tmp_path):
    cfg = replace(TINY, frames=3, train_seqs=1, test_seqs=1, scenes=2)
    dirs = syn.generate_dataset(tmp_path, cfg, seed=0, progress=False)
    assert [d.name for d in dirs] == ["synth_a", "synth_b"]
    ds = Dataset(tmp_path)
    assert ds.names == ["synth_a", "synth_b"]
    fa, fb = ds["synth_a"].frames("all"), ds["synth_b"].frames("all")
    assert len(fa) == len(fb) == 6
    assert fa[0].color_path.read_bytes() != fb[0].color_path.read_bytes()
    rooms = [yaml.safe_load((d / syn.PROVENANCE_FILE).read_text())["room"] for d in dirs]
    assert rooms[0] != rooms[1]
    # Each scene of a dataset is the scene generate_scene makes alone.
    alone = syn.generate_scene(tmp_path / "alone", syn.scene_configs(cfg)[1], seed=0, progress=False)
    assert _files(alone) == _files(dirs[1])


# --------------------------------------------------------------------------- API and CLI
def test_configs_and_presets():
    assert set(syn.PRESETS) >= {"tiny", "demo", "benchmark"}
    assert (TINY.width, TINY.height) == (80, 60) and TINY.total_frames <= 60
    assert syn.SceneConfig().width == 320 and syn.SceneConfig().height == 240
    assert syn.PRESETS["benchmark"].total_frames * syn.PRESETS["benchmark"].scenes >= 2000
    assert syn.SceneConfig(layout_seed=27).name == "synth_ab"
    assert TINY.replace(layout_seed=2).name == "synth_c" and TINY.replace(layout_seed=2, name="x").name == "x"
    assert replace(TINY, name="lab").replace(layout_seed=2).name == "lab"
    assert [c.name for c in syn.scene_configs("benchmark")] == ["synth_a", "synth_b"]
    assert [c.layout_seed for c in syn.scene_configs("benchmark")] == [0, 1]
    assert [c.name for c in syn.scene_configs(replace(TINY, name="lab", scenes=2))] == ["lab_a", "lab_b"]
    assert TINY.sequences == {"train": [1, 2], "test": [3]}
    d = TINY.as_dict()
    assert syn.SceneConfig.from_dict(yaml.safe_load(yaml.safe_dump(d))) == TINY
    assert syn.SceneConfig.from_dict({"sensor": {"max_depth": 5.0}}).sensor.max_depth == 5.0
    for bad in (
        {"width": 4},
        {"test_seqs": 0},
        {"supersample": 9},
        {"room_min": (2.0, 3.0, 2.5)},
        {"camera_height": (1.0, 5.0)},
        {"viewpoints": 1},
        {"name": "a/b"},
        {"layout_seed": -1},
    ):
        with pytest.raises(ValueError):
            replace(TINY, **bad)
    with pytest.raises(ValueError, match="unknown keys"):
        syn.SceneConfig.from_dict({"widht": 64})
    with pytest.raises(ValueError):
        syn.SensorNoise(min_depth=3.0, max_depth=2.0)
    with pytest.raises(KeyError, match="unknown preset"):
        syn.generate_scene("/nonexistent", "huge")


def test_config_file_lists_the_defaults():
    path = Path(__file__).resolve().parents[1] / "config" / "synthetic.yaml"
    d = yaml.safe_load(path.read_text())
    assert set(d) == {f for f in syn.SceneConfig().as_dict()}
    assert syn.SceneConfig.from_dict(d, base=syn.PRESETS["tiny"]) == syn.SceneConfig()


def test_overwrites_only_synthetic_scenes(tmp_path):
    cfg = replace(TINY, frames=3, train_seqs=1, test_seqs=1)
    scene_dir = syn.generate_scene(tmp_path, replace(cfg, frames=5), progress=False)
    (scene_dir / "seq-01" / "stale.txt").write_text("x")
    assert syn.generate_scene(tmp_path, cfg, progress=False) == scene_dir
    assert len(Scene(scene_dir).frames("all")) == 6
    assert not (scene_dir / "seq-01" / "stale.txt").exists()
    foreign = tmp_path / "other" / "synth_a"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        syn.generate_scene(tmp_path / "other", cfg, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="seed"):
        syn.generate_scene(tmp_path, cfg, seed=-1, progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "data"
    rc = syn.main(
        [
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--scenes",
            "1",
            "--seed",
            "3",
            "--workers",
            "1",
            "--width",
            "40",
            "--height",
            "30",
            "--frames",
            "3",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "seq-01 (train)" in text and "seq-03 (test)" in text
    assert re.search(r"wrote 9 frames in 1 scene\(s\) \(synth_a\) .* in [0-9.]+ s", text)
    scene = Scene(out / "synth_a")
    assert scene.color(scene.frames("all")[0]).shape == (30, 40, 3)
    assert yaml.safe_load((out / "synth_a" / syn.PROVENANCE_FILE).read_text())["seed"] == 3

    # A provenance file given back as --config makes the same scene again.
    rc = syn.main(
        [
            "--out",
            str(tmp_path / "again"),
            "--config",
            str(out / "synth_a" / syn.PROVENANCE_FILE),
            "--seed",
            "3",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    assert rc == 0
    assert _files(tmp_path / "again" / "synth_a") == _files(out / "synth_a")
    assert "seq-01" not in capsys.readouterr().out

    assert syn.main(["--list-presets"]) == 0
    assert "benchmark" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        syn.main(["--out", str(out), "--width", "2"])


@pytest.mark.parametrize("preset", ["demo", "benchmark"])
def test_presets_have_the_map_coverage_of_real_7scenes(preset):
    """From the trajectories alone (nothing rendered): the mean over the preset's scenes is
    within ±25% of real 7-Scenes' two medians (0.265 m, 9.9°) and within ±5 points of its
    two shares (95%, 46%)."""
    from reloc_ros.data.coverage import REAL_7SCENES
    from reloc_ros.tools.coverage import mean_coverage

    c = mean_coverage(syn.preset_coverage(preset))
    real = REAL_7SCENES
    assert abs(c.median_d_m / real.median_d_m - 1) <= 0.25, c
    assert abs(c.median_r_deg / real.median_r_deg - 1) <= 0.25, c
    assert abs(c.within_50cm_30deg - real.within_50cm_30deg) <= 0.05, c
    assert abs(c.within_25cm_15deg - real.within_25cm_15deg) <= 0.05, c


def test_frame_stride_keeps_every_kth_step_of_the_walk():
    dense = TINY.replace(frames=40, frame_stride=1, step_m=0.01)
    sparse = TINY.replace(frames=10, frame_stride=4, step_m=0.01)
    a = syn.make_trajectory(dense.room(), dense, 0, 1)
    b = syn.make_trajectory(sparse.room(), sparse, 0, 1)
    assert b.shape == (10, 4, 4)
    step_a = np.median(np.linalg.norm(np.diff(a[:, :3, 3], axis=0), axis=1))
    step_b = np.median(np.linalg.norm(np.diff(b[:, :3, 3], axis=0), axis=1))
    assert 2.5 < step_b / step_a < 5.0  # 4 steps of the walk between rendered frames
