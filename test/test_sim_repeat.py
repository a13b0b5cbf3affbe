"""Repeated appearance in the synthetic rooms (SceneConfig.repeat, Palette(repeat=True)):
one photograph on every picture, one material on the four walls, the same layout, and
rooms without it unchanged."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

from reloc_sim import room as room_mod
from reloc_sim.config import PRESETS, SceneConfig, scene_configs
from reloc_sim.room import make_room

REPEATED = PRESETS["repeated"]
_Room = room_mod.Room


def _built(monkeypatch, seed: int, **kw) -> dict:
    """The room of ``make_room(seed, **kw)`` and the materials it was built from: the walls'
    and each picture's (the photograph inside a picture's frame, its second box)."""
    seen = {}

    class Capture(_Room):
        def __init__(self, layout_seed, size, boxes, groups, wall_materials, *args):
            seen.update(boxes=boxes, groups=groups, walls=list(wall_materials[:4]))
            super().__init__(layout_seed, size, boxes, groups, wall_materials, *args)

    monkeypatch.setattr(room_mod, "Room", Capture)
    seen["room"] = make_room(seed, **kw)
    seen["pictures"] = [seen["boxes"][g.start + 1][2][0] for g in seen["groups"] if g.kind == "picture"]
    return seen


@pytest.mark.parametrize("families", [("photo_c", "stone", "bricks"), ()])
def test_repeat_shares_the_pictures_and_walls(monkeypatch, families):
    seed = 101  # 8 pictures
    rep = _built(monkeypatch, seed, texture_families=families, repeat=True)
    plain = _built(monkeypatch, seed, texture_families=families, repeat=False)
    assert len(rep["pictures"]) >= 3
    assert len({(m.texture, m.tint) for m in rep["pictures"]}) == 1
    assert len(set(rep["walls"])) == 1  # texture, tint, tile size and offset
    # without it, the same seed's pictures and walls differ
    assert len({(m.texture, m.tint) for m in plain["pictures"]}) > 1
    assert len(set(plain["walls"])) == 4
    # the rendered surfaces agree: the four walls show one texture, tint and texel density
    r = rep["room"]
    assert len(set(r.s_tex[:4].tolist())) == 1 and np.ptp(r.s_tint[:4], axis=0).max() == 0
    assert np.ptp(r.s_density[:4]) == 0
    # the materials draw as without it: the furniture stands where it does without it
    n = next(i for i, g in enumerate(plain["groups"]) if g.kind in ("picture", "whiteboard", "window"))
    assert rep["groups"][:n] == plain["groups"][:n]
    stop = plain["groups"][n - 1].stop
    assert np.array_equal(rep["room"].box_lo[:stop], plain["room"].box_lo[:stop])
    np.testing.assert_array_equal(rep["room"].size, plain["room"].size)


def test_default_leaves_rooms_and_configs_unchanged(monkeypatch):
    for seed, kw in ((4, {"texture_families": ("photo_c", "stone", "bricks")}), (0, {}), (7, {"rooms": 2,
                     "room_min": (6.5, 3.5, 2.5), "room_max": (9.0, 6.0, 3.0)})):
        a, b = _built(monkeypatch, seed, **kw), _built(monkeypatch, seed, repeat=False, **kw)
        assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and x[2] == y[2]
                   for x, y in zip(a["boxes"], b["boxes"], strict=True))
        assert a["walls"] == b["walls"] and a["groups"] == b["groups"]
        for f in ("s_tex", "s_tint", "s_uv", "s_density", "lights", "light_power"):
            assert np.array_equal(getattr(a["room"], f), getattr(b["room"], f)), f
    # a config without repeat records what it did before the field existed
    demo = PRESETS["demo"]
    assert not demo.repeat and "repeat" not in demo.as_dict()
    assert SceneConfig.from_dict(demo.as_dict()) == demo


def test_repeated_preset():
    d = REPEATED.as_dict()
    assert d["repeat"] is True
    assert SceneConfig.from_dict(yaml.safe_load(yaml.safe_dump(d))) == REPEATED
    assert SceneConfig.from_dict({"repeat": True}).repeat
    demo = PRESETS["demo"]
    assert REPEATED == replace(demo, name="repeated", layout_seed=100, scenes=5, repeat=True)
    configs = scene_configs("repeated")
    assert [c.name for c in configs] == [f"repeated_{x}" for x in "abcde"]
    assert [c.layout_seed for c in configs] == [100, 101, 102, 103, 104] and all(c.repeat for c in configs)
    with pytest.raises(ValueError, match="repeat"):
        SceneConfig(repeat=1)
