"""Families of rooms (reloc_sim.family): disjoint splits, texture families, procedural
textures, two rooms, relit test sequences, robot paths, coverage and a resumable render."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reloc_sim import procedural
from reloc_sim.config import PRESETS, SceneConfig
from reloc_sim.family import FAMILIES, SCANS, FamilySplit, SceneFamily, has_7scenes_coverage, is_robot, main
from reloc_sim.room import CLASS_ID
from reloc_sim.textures import FIRST_PROCEDURAL, TEX_INDEX, TEXTURE_FAMILIES, atlas, family_textures
from reloc_sim.trajectory import preset_coverage, trajectories

ROOMS52 = FAMILIES["rooms52"]


def test_rooms52_splits_are_disjoint_and_large_enough():
    counts = {s.name: s.scenes for s in ROOMS52.splits}
    assert counts["train"] >= 40 and counts["val"] >= 4 and counts["test"] >= 8
    scenes = {s.name: ROOMS52.scenes(s.name) for s in ROOMS52.splits}
    seeds = {k: {c.layout_seed for c in v} for k, v in scenes.items()}
    assert not (seeds["train"] & seeds["test"]) and not (seeds["val"] & seeds["test"])
    assert not (seeds["train"] & seeds["val"])
    used = {k: {f for c in v for f in c.texture_families} for k, v in scenes.items()}
    assert not (used["test"] & (used["train"] | used["val"])) and not (used["val"] & used["train"])
    # ... and no texture either: the photographs are split too
    tex = {k: set(family_textures(tuple(u))[0]) | set(family_textures(tuple(u))[1]) for k, u in used.items()}
    assert not (tex["test"] & (tex["train"] | tex["val"])) and not (tex["val"] & tex["train"])
    every = [c for v in scenes.values() for c in v]
    assert len({c.name for c in every}) == len(every)
    # the draws vary: sizes 3-10 m, one and two rooms, relit and robot scenes in the training split
    long_sides = [max(c.room_min[:2]) for c in every]
    assert 3.0 <= min(long_sides) and max(long_sides) <= 10.0 and max(long_sides) - min(long_sides) > 4.0
    train = scenes["train"]
    assert {c.rooms for c in train} == {1, 2} and {c.relight for c in train} == {False, True}
    assert any(c.camera_height[0] == c.camera_height[1] for c in train)  # robot
    assert any(c.camera_height[0] < c.camera_height[1] for c in train)  # handheld
    assert ROOMS52.scene("test", 3) == ROOMS52.scene("test", 3)  # drawn from the seed alone


def test_a_family_that_shares_seeds_or_texture_families_is_refused():
    base = PRESETS["tiny"]
    with pytest.raises(ValueError, match="share layout seeds"):
        SceneFamily("f", base, (FamilySplit("train", 3, 0, ("wood", "marble", "tiles")),
                                FamilySplit("test", 3, 2, ("dots", "plaid", "waves"))))
    with pytest.raises(ValueError, match=r"share texture families \['wood'\]"):
        SceneFamily("f", base, (FamilySplit("train", 3, 0, ("wood", "marble", "tiles")),
                                FamilySplit("test", 3, 10, ("wood", "plaid", "waves"))))
    with pytest.raises(ValueError, match="texture_families"):
        SceneConfig(texture_families=("velvet",))
    with pytest.raises(ValueError, match="rooms: 2 needs"):
        SceneConfig(rooms=2)


def test_procedural_textures_are_seamless_distinct_and_reproducible():
    a = procedural.make_texture("stone_1", 64)
    assert np.array_equal(a, procedural.make_texture("stone_1", 64))
    for fam in procedural.FAMILIES:
        names = procedural.texture_names(fam)
        imgs = [procedural.make_texture(n, 128).astype(np.float64) for n in names]
        assert all(im.shape == (128, 128, 3) and im.std() > 8 for im in imgs), fam  # not flat
        assert np.abs(imgs[0] - imgs[1]).mean() > 5, fam  # variants differ
        for im in imgs:  # tiled, the seam is no stronger than the strongest step inside
            for axis in (0, 1):
                steps = np.abs(np.diff(im, axis=axis)).mean(axis=(1 - axis, 2))
                seam = np.abs(np.take(im, 0, axis=axis) - np.take(im, -1, axis=axis)).mean()
                assert seam <= 1.05 * steps.max() + 1, (fam, axis, seam, steps.max())
    with pytest.raises(KeyError):
        procedural.make_texture("velvet_0", 8)
    full = atlas(True)
    assert len(full.aspect) == len(TEX_INDEX) and len(atlas(False).aspect) == FIRST_PROCEDURAL


def test_a_family_room_shows_only_its_textures_and_old_rooms_are_unchanged():
    cfg = ROOMS52.scene("test", 0)
    room = cfg.room()
    mats, pics = family_textures(cfg.texture_families)
    allowed = {TEX_INDEX[n] for n in mats + pics}
    assert set(np.unique(room.s_tex)) <= allowed and room.uses_procedural
    # a room without families draws exactly as before families existed
    old = PRESETS["benchmark"].room()
    assert not old.uses_procedural and np.all(old.s_tex < FIRST_PROCEDURAL)
    assert set(TEXTURE_FAMILIES) >= set(cfg.texture_families)
    # the demo's room shows only families that no rooms52 training or validation room uses:
    # the shipped generic model never saw its appearance
    demo = PRESETS["demo"]
    seen = {f for split in ("train", "val") for c in ROOMS52.scenes(split) for f in c.texture_families}
    assert demo.texture_families and not set(demo.texture_families) & seen
    mats, pics = family_textures(demo.texture_families)
    assert set(np.unique(demo.room().s_tex)) <= {TEX_INDEX[n] for n in mats + pics}


def test_two_rooms_joined_by_a_doorway_the_camera_passes():
    cfg = next(c for c in ROOMS52.scenes("train") if c.rooms == 2)
    room = cfg.room()
    walls = [g for g in room.groups if g.kind == "wall"]
    assert len(walls) == 3 and sum(g.walkable for g in walls) == 1  # two wall pieces and the lintel
    a = int(np.argmax(room.size[:2]))  # the partition crosses the longer side
    c = 0.5 * (room.box_lo[walls[0].start, a] + room.box_hi[walls[0].start, a])
    cells = room._free.cells()
    assert (cells[:, a] < c - 0.5).sum() > 50 and (cells[:, a] > c + 0.5).sum() > 50  # free floor on both sides
    assert np.all(room.s_class[6 + 6 * walls[0].start:6 + 6 * walls[0].stop] == CLASS_ID["wall"])
    # the camera paths go through the doorway: positions on both sides in the same scene
    paths = trajectories(replace(cfg, frames=60, frame_stride=10, train_seqs=3, test_seqs=1, region_m=0.0))
    xs = np.concatenate([p[:, a, 3] for p in paths.values()])
    assert (xs < c).any() and (xs > c).any()


def test_relit_test_sequences_change_only_the_light():
    cfg = next(c for c in ROOMS52.scenes("train") if c.relight)
    room, relit = cfg.room(), cfg.room(relit=True)
    assert relit is cfg.room(relit=True) and relit is not room
    assert np.array_equal(room.box_lo, relit.box_lo) and np.array_equal(room.s_tex, relit.s_tex)
    changed = (not np.allclose(room.light_power, relit.light_power) or room.ambient != relit.ambient
               or not np.allclose(room.lights, relit.lights))
    assert changed
    assert cfg.room_of_sequence(cfg.sequences["test"][0]) is relit
    assert cfg.room_of_sequence(cfg.sequences["train"][0]) is room
    steady = replace(cfg, relight=False)
    assert steady.room(relit=True) is steady.room()


def test_robot_scenes_keep_one_height_and_no_roll():
    cfg = next(c for c in ROOMS52.scenes("train") if c.camera_height[0] == c.camera_height[1])
    T = trajectories(replace(cfg, frames=40, train_seqs=1, test_seqs=1))[1]
    assert np.ptp(T[:, 2, 3]) < 0.01  # height within 1 cm (the shake is 0.5 mm)
    roll = np.degrees(np.arcsin(np.clip(T[:, 2, 0], -1, 1)))  # the image x axis stays level
    assert np.abs(roll).max() < 1.0


def test_family_scenes_have_7scenes_coverage():
    """From the trajectories alone, a handheld and a robot scene (all: the ``coverage`` command)."""
    for split, k in (("test", 0), ("test", 1)):
        cfg, row = ROOMS52.covered_scene(split, k)
        assert has_7scenes_coverage(row, is_robot(cfg)), row
        assert preset_coverage(cfg)[0] == row and (cfg.region_m, cfg.frame_stride) in SCANS


def test_render_resumes_and_lists_the_scenes(tmp_path, capsys, monkeypatch):
    tiny = SceneFamily("mini", replace(PRESETS["tiny"], frames=4, train_seqs=1, test_seqs=1),
                       (FamilySplit("train", 2, 0, ("wood", "tiles", "photo_a")),
                        FamilySplit("test", 1, 50, ("plaid", "dots", "photo_c"))))
    monkeypatch.setitem(FAMILIES, "mini", tiny)
    out = tmp_path / "mini"
    assert main(["render", "--family", "mini", "--out", str(out), "--workers", "1"]) == 0
    assert "rendering 3 with 1 workers" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["family.yaml", "test", "train"]  # one folder per split
    first = out / "train" / "mini_train_00" / "seq-01" / "frame-000000.color.png"
    stamp = first.stat().st_mtime_ns
    (out / "test" / "mini_test_00" / "TestSplit.txt").unlink()  # an interrupted scene is made again
    assert main(["render", "--family", "mini", "--out", str(out), "--workers", "1"]) == 0
    assert "2 already complete, rendering 1" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp and (out / "test" / "mini_test_00" / "TestSplit.txt").is_file()
    import yaml

    listing = yaml.safe_load((out / "family.yaml").read_text())
    assert [s["name"] for s in listing["splits"]["test"]["scenes"]] == ["mini_test_00"]
    assert main(["coverage", "--family", "mini", "--split", "nope"]) == 2
    assert main(["coverage", "--family", "mini", "--split", "test", "--out", str(tmp_path / "cov")]) == 0
    md = (tmp_path / "cov" / "coverage.md").read_text()
    assert "mini_test_00" in md and "mini_train_00" not in md and "scenes with 7-Scenes' coverage" in md
    assert (tmp_path / "cov" / "command.json").is_file() and (tmp_path / "cov" / "coverage.json").is_file()
