"""Families of rooms: many distinct scenes, split into training, validation and unseen test scenes.

A :class:`SceneFamily` turns one base config (image size, frames, the scan's coverage knobs)
into as many scenes as its splits ask for. Each scene draws, from its own layout seed:

* its size: the longer side 3-10 m, the shorter 3-7 m, 2.4-3.2 m high; one room, or two
  joined by a doorway when the longer side has at least 6 m;
* its appearance: a few texture families (:data:`reloc_sim.textures.TEXTURE_FAMILIES`) out of
  its split's, so that **no test scene shares a texture family with a training or validation
  scene**, and the validation scenes none with the training ones;
* its camera: held in the hand (height, pitch and roll vary, the hand shakes), or on a robot's
  pan-tilt head (one height, no roll, no shake; the head sweeps slowly);
* its lighting: in some scenes the test sequences are lit otherwise than the map's (a lamp
  off, others dimmer or brighter, one moved: :meth:`reloc_sim.room.Room.relit`).

The splits take disjoint layout seeds. :data:`FAMILIES` holds the named families; ``rooms52``
is the training family of the generic model (40 training, 4 validation, 8 test scenes).
Changing a family that a model was trained on voids its results: add a new one instead.

    python -m reloc_sim.family render --family rooms52 --out data/rooms52 --workers 2
    python -m reloc_sim.family coverage --family rooms52 --out docs/results/rooms52

Each scene scans a region of its floor whose size is chosen, from its trajectories alone,
for 7-Scenes' map coverage (:meth:`SceneFamily.covered_scene`; ``coverage`` prints it).
``render`` resumes: a scene whose folder is complete and was made from the same config and
seed is kept. The scenes of each split go into their own folder (``OUT/train``, ``OUT/val``,
``OUT/test``), so that a training run given ``OUT/train`` cannot read a test scene, and
``OUT/family.yaml`` lists the scenes of each split, their draws and coverage.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from reloc_ros.data.coverage import Coverage
from reloc_ros.eval.report import record_command, write_json, write_text
from reloc_sim.config import SceneConfig
from reloc_sim.generator import generate_dataset, is_complete_scene
from reloc_sim.seeds import TAG_FAMILY, make_rng
from reloc_sim.textures import TEXTURE_FAMILIES
from reloc_sim.trajectory import preset_coverage

__all__ = ["FamilySplit", "SceneFamily", "FAMILIES", "covered_scenes", "has_7scenes_coverage",
           "is_robot", "main"]

FAMILY_FILE = "family.yaml"


@dataclass(frozen=True)
class FamilySplit:
    """One split of a family.

    Attributes:
        name: 'train', 'val' or 'test'.
        scenes: how many scenes.
        first_seed: layout seeds ``first_seed`` ... ``first_seed + scenes - 1``.
        texture_families: the texture families its scenes draw from.
    """

    name: str
    scenes: int
    first_seed: int
    texture_families: tuple[str, ...]


@dataclass(frozen=True)
class SceneFamily:
    """A family of scenes (see the module docstring).

    Attributes:
        name: the family's name; scene folders are ``<name>_<split>_<k>``.
        base: the settings every scene shares (image size, frames, sequences, the scan).
        splits: the splits, with disjoint seeds and texture families.
        families_per_scene: texture families each scene draws from its split's.
        relight_share: the share of scenes whose test sequences are relit.
        robot_share: the share of scenes filmed from a robot.
        two_room_share: the share of scenes, among those long enough, split into two rooms.
    """

    name: str
    base: SceneConfig
    splits: tuple[FamilySplit, ...]
    families_per_scene: int = 3
    relight_share: float = 0.35
    robot_share: float = 0.4
    two_room_share: float = 0.5

    def __post_init__(self) -> None:
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names):
            raise ValueError(f"family {self.name}: split names repeat: {names}")
        seeds = [set(range(s.first_seed, s.first_seed + s.scenes)) for s in self.splits]
        for i in range(len(seeds)):
            for j in range(i):
                if seeds[i] & seeds[j]:
                    raise ValueError(f"family {self.name}: splits {names[j]} and {names[i]} share layout seeds")
                shared = set(self.splits[i].texture_families) & set(self.splits[j].texture_families)
                if shared:
                    raise ValueError(f"family {self.name}: splits {names[j]} and {names[i]} share texture "
                                     f"families {sorted(shared)}")
        for s in self.splits:
            unknown = [f for f in s.texture_families if f not in TEXTURE_FAMILIES]
            if unknown or len(s.texture_families) < self.families_per_scene:
                raise ValueError(f"family {self.name}, split {s.name}: needs {self.families_per_scene} known "
                                 f"texture families, has {list(s.texture_families)}")

    def split(self, name: str) -> FamilySplit:
        """The split called ``name``."""
        for s in self.splits:
            if s.name == name:
                return s
        raise KeyError(f"family {self.name} has no split {name!r} (splits: {[s.name for s in self.splits]})")

    def scene(self, split: str, k: int) -> SceneConfig:
        """The config of scene ``k`` of a split (everything drawn from its layout seed).

        Args:
            split: the split's name.
            k: the scene's index in the split (0-based).
        """
        sp = self.split(split)
        if not 0 <= k < sp.scenes:
            raise IndexError(f"split {split} has {sp.scenes} scenes, not {k + 1}")
        seed = sp.first_seed + k
        rng = make_rng(TAG_FAMILY, seed)
        long_side = float(rng.uniform(3.0, 10.0))
        short_side = float(rng.uniform(3.0, min(long_side, 7.0)))
        height = float(rng.uniform(2.4, 3.2))
        size = (long_side, short_side, height) if rng.uniform() < 0.5 else (short_side, long_side, height)
        rooms = 2 if long_side >= 6.0 and rng.uniform() < self.two_room_share else 1
        pick = rng.choice(len(sp.texture_families), self.families_per_scene, replace=False)
        families = tuple(sp.texture_families[i] for i in sorted(pick))
        relight = bool(rng.uniform() < self.relight_share)
        lights = int(rng.integers(1, 4)) + (rooms - 1)
        motion = {}
        if rng.uniform() < self.robot_share:  # a camera on a robot's pan-tilt head: one height, no roll, steady
            h = float(rng.uniform(0.5, 1.3))
            pitch = float(rng.uniform(-12.0, 5.0))
            motion = {"camera_height": (h, h), "pitch_deg": (pitch - 8.0, pitch + 8.0), "roll_deg": 0.0,
                      "shake_m": 0.0005, "shake_deg": 0.05, "sweep_deg": 35.0}
        return self.base.replace(name=f"{self.name}_{split}_{k:02d}", layout_seed=seed, scenes=1, room_min=size,
                                 room_max=size, lights=min(lights, 4), texture_families=families, rooms=rooms,
                                 relight=relight, **motion)

    def scenes(self, split: str) -> list[SceneConfig]:
        """Every scene config of a split, in order."""
        return [self.scene(split, k) for k in range(self.split(split).scenes)]

    def covered_scene(self, split: str, k: int, seed: int = 0) -> tuple[SceneConfig, Coverage]:
        """Scene ``k`` of a split with the scan (region size, stride) that gives it 7-Scenes' map
        coverage (:func:`has_7scenes_coverage`), the first of :data:`SCANS` that does (else the
        closest), and that coverage. Computed from the trajectories alone (1-3 s a scan).

        Args:
            split: the split's name.
            k: the scene's index in the split.
            seed: the base seed of the scenes.
        """
        base = self.scene(split, k)
        best = None
        for region, stride in SCANS:
            c = base.replace(region_m=region, frame_stride=stride)
            row = preset_coverage(c, seed)[0]
            if has_7scenes_coverage(row, robot=is_robot(c)):
                return c, row
            miss = coverage_miss(row, robot=is_robot(c))
            if best is None or miss < best[2]:
                best = (c, row, miss)
        return best[0], best[1]

    def describe(self) -> dict:
        """The family as a plain dict: its splits, and each scene's name, seed and draws."""
        out = {"family": self.name, "splits": {}}
        for sp in self.splits:
            out["splits"][sp.name] = {
                "texture_families": list(sp.texture_families),
                "scenes": [{"name": c.name, "layout_seed": c.layout_seed, "size_m": [round(v, 2) for v in c.room_min],
                            "rooms": c.rooms, "texture_families": list(c.texture_families), "relight": c.relight,
                            "motion": "robot" if is_robot(c) else "handheld"}
                           for c in self.scenes(sp.name)]}
        return out


#: The scan of every family scene: 160 x 120 frames, 3 map and 2 query sequences of 100
#: frames, each walking 10 m in 1 cm steps (every 10th rendered) inside one 2.5 m region, as
#: the demo preset (7-Scenes' coverage).
_SCAN = SceneConfig(width=160, height=120, frames=100, train_seqs=3, test_seqs=2, supersample=2, step_m=0.01,
                    step_deg=1.0, frame_stride=10, region_m=2.5, focus_deg=25.0, viewpoints=5, roll_deg=8.0,
                    shake_deg=1.0)

#: Named families. Texture families: training photo_a and six patterns; validation photo_b
#: and two; test photo_c and four, none of which any training or validation scene shows.
FAMILIES: dict[str, SceneFamily] = {
    "rooms52": SceneFamily(
        name="rooms52",
        base=_SCAN,
        splits=(
            FamilySplit("train", 40, 1000, ("photo_a", "wood", "marble", "tiles", "plaster", "weave", "stripes")),
            FamilySplit("val", 4, 2000, ("photo_b", "parquet", "dots")),
            FamilySplit("test", 8, 3000, ("photo_c", "stone", "plaid", "bricks", "waves")),
        ),
    ),
}


#: The scans a scene tries, in order, for 7-Scenes' coverage: (the scanned region's size in m,
#: the frame stride: each sequence walks 100 frames x stride x 1 cm in it).
SCANS = ((2.5, 10), (2.0, 10), (2.5, 20), (2.0, 20), (3.0, 10), (3.0, 20), (1.6, 10), (3.5, 10), (2.2, 25), (1.6, 20))
#: 7-Scenes' coverage: the median distance (m) and rotation (°) of the query frames' oracle
#: neighbours, and the least share of them within 0.5 m and 30°. A robot's camera does not
#: roll: there the rotation range is ROBOT_R_DEG.
COVERAGE_D_M, COVERAGE_R_DEG, COVERAGE_WITHIN, ROBOT_R_DEG = (0.20, 0.35), (7.0, 13.0), 0.9, (4.0, 13.0)


def is_robot(config: SceneConfig) -> bool:
    """Whether a scene is filmed from a robot (one camera height)."""
    return config.camera_height[0] == config.camera_height[1]


def coverage_miss(row: Coverage, robot: bool = False) -> float:
    """How far a scene's coverage is from 7-Scenes' (0 when it has it): the relative misses of
    the two medians and the share, summed."""
    r_lo, r_hi = ROBOT_R_DEG if robot else COVERAGE_R_DEG
    d_lo, d_hi = COVERAGE_D_M
    return (max(0.0, d_lo - row.median_d_m, row.median_d_m - d_hi) / d_lo
            + max(0.0, r_lo - row.median_r_deg, row.median_r_deg - r_hi) / r_lo
            + max(0.0, COVERAGE_WITHIN - row.within_50cm_30deg) / COVERAGE_WITHIN)


def has_7scenes_coverage(row: Coverage, robot: bool = False) -> bool:
    """Whether a scene's coverage is 7-Scenes': the query frames' oracle neighbour at a median of
    0.20-0.35 m and 7-13° (4-13° for a robot's camera, which does not roll), and at least 90 % of
    them within 0.5 m and 30°."""
    return coverage_miss(row, robot) == 0.0


def covered_scenes(family: SceneFamily, splits: Sequence[str] | None, seed: int,
                   log=None) -> dict[str, list[tuple[SceneConfig, Coverage]]]:
    """:meth:`SceneFamily.covered_scene` of every scene of some splits (default: all): split ->
    [(config, coverage)]."""
    out: dict[str, list] = {}
    for sp in splits or [s.name for s in family.splits]:
        for k in range(family.split(sp).scenes):
            out.setdefault(sp, []).append(family.covered_scene(sp, k, seed))
            if log:
                log(_coverage_line(*out[sp][-1]))
    return out


def _coverage_line(c: SceneConfig, r: Coverage) -> str:
    """One scene's coverage, as the commands print it."""
    flag = "ok" if has_7scenes_coverage(r, is_robot(c)) else "MISSED"
    return (f"{c.name:20s} {'robot' if is_robot(c) else 'hand ':5s} scan {c.region_m:.1f} m/{c.frame_stride:2d}: median "
            f"{r.median_d_m:.3f} m {r.median_r_deg:5.1f}°, within 0.5 m/30°: {100 * r.within_50cm_30deg:5.1f} % {flag}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m reloc_sim.family", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("render", "coverage", "describe"):
        p = sub.add_parser(name)
        p.add_argument("--family", default="rooms52", choices=sorted(FAMILIES))
        p.add_argument("--split", action="append", help="only these splits (repeatable; default: all)")
        p.add_argument("--seed", type=int, default=0, help="base seed of the scenes")
        if name == "render":
            p.add_argument("--out", type=Path, required=True, help="folder of the scene folders")
            p.add_argument("--workers", type=int, default=2, help="rendering processes")
        if name == "coverage":
            p.add_argument("--out", type=Path, help="also write coverage.md and coverage.json (and command.json) here")
    args = ap.parse_args(argv)
    fam = FAMILIES[args.family]
    try:
        for sp in args.split or []:
            fam.split(sp)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.cmd == "describe":
        print(yaml.safe_dump(fam.describe(), sort_keys=False))
        return 0
    t0 = time.perf_counter()
    log = (lambda s: print(s, flush=True))
    by_split = covered_scenes(fam, args.split, args.seed, log)
    covered = [cr for rows in by_split.values() for cr in rows]
    ok = sum(has_7scenes_coverage(r, is_robot(c)) for c, r in covered)
    summary = (f"{ok}/{len(covered)} scenes with 7-Scenes' coverage (median 0.20-0.35 m and 7-13° (robot 4-13°), "
               f">= 90 % within 0.5 m and 30°)")
    log(summary)
    if args.cmd == "coverage":
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            lines = [f"# Map coverage of the {fam.name} scenes (from their trajectories)", "", "```"]
            lines += [_coverage_line(c, r) for c, r in covered] + ["```", "", summary, ""]
            write_text(args.out / "coverage.md", "\n".join(lines))
            write_json(args.out / "coverage.json", [{"config": c.as_dict(), **r.as_dict()} for c, r in covered])
            record_command(args.out)
        return 0
    todo = {sp: [c for c, _ in rows if not is_complete_scene(args.out / sp / c.name, c, args.seed)]
            for sp, rows in by_split.items()}
    n_todo = sum(len(v) for v in todo.values())
    print(f"{fam.name}: {len(covered)} scenes, {len(covered) - n_todo} already complete, rendering "
          f"{n_todo} with {args.workers} workers", flush=True)
    for sp, configs in todo.items():  # one folder per split: a training root holds no test scene
        if configs:
            generate_dataset(args.out / sp, configs, seed=args.seed, workers=args.workers)
    listing = {**fam.describe(), "seed": args.seed,
               "coverage": {c.name: {**r.as_dict(), "region_m": c.region_m, "frame_stride": c.frame_stride}
                            for c, r in covered}}
    write_text(args.out / FAMILY_FILE, yaml.safe_dump(listing, sort_keys=False))
    print(f"{fam.name}: done in {math.ceil(time.perf_counter() - t0)} s; {args.out / FAMILY_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
