"""Configuration of the synthetic scenes: :class:`SceneConfig`, :class:`SensorNoise`, the
named :data:`PRESETS` and config files.

A config (with the base seed of the generator) defines a scene completely: the same config
and seed write byte-identical files. Configs load from YAML (:func:`load_config_file`): a
mapping of :class:`SceneConfig` fields, or a generated scene's ``synthetic.yaml``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

from reloc_ros.data.sevenscenes import DEFAULT_COLOR_INTRINSICS, Intrinsics
from reloc_sim.room import DEFAULT_LIGHTS, DEFAULT_ROOM_MAX, DEFAULT_ROOM_MIN, Room, make_room
from reloc_sim.textures import TEXTURE_FAMILIES


def _letters(i: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa', ... (spreadsheet column names)."""
    s = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def _auto_name(layout_seed: int) -> str:
    """The automatic scene name of a layout seed: 0 -> 'synth_a', 1 -> 'synth_b', ..."""
    return f"synth_{_letters(layout_seed)}"


@dataclass(frozen=True)
class SensorNoise:
    """Mild RGB-D sensor effects applied to every generated frame (0 turns an effect off).

    Attributes:
        color_sigma: standard deviation of the per-pixel colour noise (colour range 0-1).
        gain_sigma: standard deviation of the per-frame exposure gain (around 1).
        depth_sigma: depth noise coefficient k (1/m): sigma(z) = k z^2, as for a Kinect v1.
        min_depth: nearer readings (m) are invalid.
        max_depth: farther readings (m) are invalid.
        max_incidence_deg: surfaces seen more obliquely than this (angle between the ray
            and the surface normal) give no reading.
        edge_jump: a pixel whose depth differs by more than this fraction from one of its
            4 neighbours is invalid (depth discontinuities); 0 keeps them.
    """

    color_sigma: float = 0.01
    gain_sigma: float = 0.03
    depth_sigma: float = 1.4e-3
    min_depth: float = 0.3
    max_depth: float = 8.0
    max_incidence_deg: float = 80.0
    edge_jump: float = 0.06

    def __post_init__(self) -> None:
        for f in ("color_sigma", "gain_sigma", "depth_sigma", "min_depth", "edge_jump"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"SensorNoise.{f} must be >= 0, got {getattr(self, f)}")
        if not self.min_depth < self.max_depth <= 65.0:
            raise ValueError(
                f"SensorNoise needs min_depth < max_depth <= 65 m, got {self.min_depth}, {self.max_depth}"
            )
        if not 0 < self.max_incidence_deg <= 90:
            raise ValueError(
                f"SensorNoise.max_incidence_deg must be in (0, 90], got {self.max_incidence_deg}"
            )


@dataclass(frozen=True)
class SceneConfig:
    """Everything that defines a synthetic scene (with the base seed of the generator).

    Each field is documented below it.
    """

    name: str = ""
    """Scene folder name; empty: ``synth_`` + letters of the layout seed (``synth_a`` for 0, ``synth_b``
    for 1, ...), filled in at construction."""
    layout_seed: int = 0
    """Which room (size, furniture, textures, lights); >= 0."""
    scenes: int = 1
    """How many scenes :func:`reloc_sim.generator.generate_dataset` makes from this config (layout
    seeds ``layout_seed``, ``layout_seed + 1``, ...)."""
    width: int = 320
    """Image width in pixels."""
    height: int = 240
    """Image height in pixels."""
    frames: int = 300
    """Frames per sequence."""
    train_seqs: int = 2
    """Number of training sequences (seq-01 ...)."""
    test_seqs: int = 1
    """Number of test sequences (numbered after the training ones)."""
    supersample: int = 2
    """Colour samples per pixel along each axis (1 = no anti-aliasing)."""
    shadows: bool = True
    """Cast hard shadows from the lights."""
    room_min: tuple[float, float, float] = DEFAULT_ROOM_MIN
    """Smallest room size (x, y, z) in metres."""
    room_max: tuple[float, float, float] = DEFAULT_ROOM_MAX
    """Largest room size (x, y, z) in metres."""
    lights: int = DEFAULT_LIGHTS
    """Number of point lights under the ceiling."""
    step_m: float = 0.03
    """Mean camera translation per frame (m)."""
    step_deg: float = 2.0
    """Mean camera rotation per frame while turning (degrees)."""
    viewpoints: int = 6
    """Places spread over the free floor that the sequences of a scene visit in turn (>= 2); fewer cover a
    smaller space more densely."""
    camera_height: tuple[float, float] = (0.9, 1.8)
    """Range of camera heights (m)."""
    view_distance: tuple[float, float] = (0.6, 3.0)
    """Range of median distances (m) to what the camera looks at."""
    pitch_deg: tuple[float, float] = (-35.0, 10.0)
    """Range of camera pitch (degrees, positive looks up)."""
    roll_deg: float = 3.0
    """Standard deviation of the camera roll (degrees)."""
    max_turn_deg: float = 100.0
    """Largest heading change between two waypoints (degrees)."""
    shake_m: float = 0.002
    """Hand-shake amplitude on the camera position (m, standard deviation)."""
    shake_deg: float = 0.25
    """Hand-shake amplitude on the camera angles (degrees)."""
    frame_stride: int = 1
    """Every sequence walks ``frames * frame_stride`` steps of ``step_m``; every
    ``frame_stride``-th is rendered (a dense walk at few rendered frames, as a scan)."""
    region_m: float = 0.0
    """Diameter (m) of the region of the free floor that every sequence scans (its viewpoints
    lie in it); 0: the whole free floor."""
    focus_deg: float = 0.0
    """Standard deviation (degrees) of the camera's heading about the direction to the scene's
    focus (a surface next to the scanned region that every sequence looks at, as people
    film the object of interest); 0: headings chosen freely."""
    sensor: SensorNoise = SensorNoise()
    """Depth and colour sensor effects."""
    sweep_deg: float = 0.0
    """Amplitude (degrees) of a slow sweep of the heading, as a robot that looks around while it
    drives (a period of 1.5-4 m of walk); 0: none."""
    texture_families: tuple[str, ...] = ()
    """Texture families the room is made of (:data:`reloc_sim.textures.TEXTURE_FAMILIES`);
    empty: every photograph, drawn as scenes were before families existed."""
    rooms: int = 1
    """1, or 2: a wall with a doorway splits the room across its longer side (which must then
    be at least 6 m: ``max(room_min[:2]) >= 6``)."""
    relight: bool = False
    """Light the test sequences otherwise than the training ones, as a robot sees a room at
    another time of day: a lamp off, the others dimmer or brighter, one moved, another
    ambient level (:meth:`reloc_sim.room.Room.relit`)."""
    repeat: bool = False
    """Repeated appearance, a test of perceptual aliasing: every picture shows the same photograph
    with the same tint, the four walls share one material, and each kind of material (wood,
    paint, fabric, ...) is the same wherever it is used (:class:`reloc_sim.furniture.Palette`).
    Left out of :meth:`as_dict` when false, so that the files of the scenes made before it stay
    the same."""

    def __post_init__(self) -> None:
        for f in ("room_min", "room_max", "camera_height", "view_distance", "pitch_deg"):
            object.__setattr__(self, f, tuple(float(v) for v in getattr(self, f)))
        object.__setattr__(self, "texture_families", tuple(str(f) for f in self.texture_families))
        if isinstance(self.sensor, dict):
            object.__setattr__(self, "sensor", SensorNoise(**self.sensor))

        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"SceneConfig: {what}")

        need(
            self.name == ""
            or (self.name.strip() == self.name and "/" not in self.name and self.name not in (".", "..")),
            f"name {self.name!r} is not a plain folder name",
        )
        for f in ("layout_seed",):
            need(isinstance(getattr(self, f), int) and getattr(self, f) >= 0, f"{f} must be an int >= 0")
        for f, lo in (
            ("scenes", 1),
            ("width", 8),
            ("height", 8),
            ("frames", 2),
            ("train_seqs", 1),
            ("test_seqs", 1),
            ("supersample", 1),
            ("lights", 1),
            ("viewpoints", 2),
            ("frame_stride", 1),
        ):
            v = getattr(self, f)
            need(isinstance(v, int) and v >= lo, f"{f} must be an int >= {lo}, got {v!r}")
        if not self.name:
            object.__setattr__(self, "name", _auto_name(self.layout_seed))
        need(self.supersample <= 4, f"supersample must be <= 4, got {self.supersample}")
        need(self.lights <= 4, f"lights must be <= 4, got {self.lights}")
        need(len(self.room_min) == 3 and len(self.room_max) == 3, "room_min and room_max are (x, y, z)")
        need(all(a <= b for a, b in zip(self.room_min, self.room_max)), "room_min must be <= room_max")
        need(
            self.room_min[0] >= 3.0 and self.room_min[1] >= 3.0 and self.room_min[2] >= 2.3,
            "rooms must be at least 3 x 3 x 2.3 m",
        )
        need(max(self.room_max) <= 30.0, "rooms must be at most 30 m")
        need(
            0.5 <= self.camera_height[0] <= self.camera_height[1] <= self.room_min[2] - 0.4,
            "camera_height must lie in [0.5, room height - 0.4]",
        )
        need(0.3 <= self.view_distance[0] < self.view_distance[1], "view_distance must be 0.3 <= near < far")
        need(-80 <= self.pitch_deg[0] <= self.pitch_deg[1] <= 80, "pitch_deg must lie in [-80, 80]")
        need(0 < self.step_m <= 1.0 and 0 < self.step_deg <= 30.0, "step_m in (0, 1] and step_deg in (0, 30]")
        need(0 < self.max_turn_deg <= 180, "max_turn_deg must lie in (0, 180]")
        need(self.roll_deg >= 0 and self.shake_m >= 0 and self.shake_deg >= 0, "roll and shake must be >= 0")
        need(self.region_m == 0 or self.region_m >= 0.5, "region_m must be 0 (whole floor) or >= 0.5 m")
        need(0 <= self.focus_deg <= 90, "focus_deg must lie in [0, 90]")
        need(0 <= self.sweep_deg <= 90, "sweep_deg must lie in [0, 90]")
        unknown = [f for f in self.texture_families if f not in TEXTURE_FAMILIES]
        need(not unknown, f"unknown texture_families {unknown} (known: {', '.join(TEXTURE_FAMILIES)})")
        need(self.rooms in (1, 2), f"rooms must be 1 or 2, got {self.rooms!r}")
        need(self.rooms == 1 or max(self.room_min[:2]) >= 6.0, "rooms: 2 needs max(room_min[:2]) >= 6 m")
        need(isinstance(self.relight, bool), f"relight must be true or false, got {self.relight!r}")
        need(isinstance(self.repeat, bool), f"repeat must be true or false, got {self.repeat!r}")

    # -- derived values
    @property
    def intrinsics(self) -> Intrinsics:
        """Colour (= depth) intrinsics: the 7-Scenes colour camera scaled to width x height."""
        return DEFAULT_COLOR_INTRINSICS.scaled(self.width, self.height)

    @property
    def sequences(self) -> dict[str, list[int]]:
        """Sequence numbers of each split: training ones first, then the test ones."""
        n = self.train_seqs
        return {"train": list(range(1, n + 1)), "test": list(range(n + 1, n + self.test_seqs + 1))}

    @property
    def total_frames(self) -> int:
        """Frames written for one scene."""
        return self.frames * (self.train_seqs + self.test_seqs)

    def room(self, relit: bool = False) -> Room:
        """The room of this config (cached); ``relit``: under the test sequences' lighting
        (:meth:`reloc_sim.room.Room.relit`; the same room unless ``relight``)."""
        room = _cached_room(self.layout_seed, self.room_min, self.room_max, self.lights, self.texture_families,
                            self.rooms, self.repeat)
        return room.relit() if relit and self.relight else room

    def room_of_sequence(self, seq: int) -> Room:
        """The room as sequence ``seq`` sees it (relit for a test sequence when ``relight``)."""
        return self.room(relit=seq in self.sequences["test"])

    def replace(self, **changes) -> SceneConfig:
        """A copy with some fields changed, like :func:`dataclasses.replace`, except that an
        automatic name (``synth_a`` ...) follows a new ``layout_seed``."""
        if "layout_seed" in changes and "name" not in changes and self.name == _auto_name(self.layout_seed):
            changes["name"] = ""
        return replace(self, **changes)

    # -- (de)serialisation
    def as_dict(self) -> dict:
        """Plain dict (lists for tuples) that :meth:`from_dict` and YAML accept; ``repeat`` only
        when true (the scenes made before it record the same config)."""
        d = asdict(self)
        if not self.repeat:
            del d["repeat"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict, base: SceneConfig | None = None) -> SceneConfig:
        """Config from a dict (for example a YAML file); missing keys come from ``base``.

        Unknown keys raise ``ValueError`` so that typos do not pass unnoticed.
        """
        base = base or cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SceneConfig: unknown keys {unknown} (known: {sorted(known)})")
        d = dict(d)
        if "sensor" in d:
            s = d["sensor"]
            if isinstance(s, dict):
                s_known = {f.name for f in fields(SensorNoise)}
                if set(s) - s_known:
                    raise ValueError(f"SensorNoise: unknown keys {sorted(set(s) - s_known)}")
                d["sensor"] = replace(base.sensor, **s)
        return base.replace(**d)


#: Named configs (hloc style): ``tiny`` for unit tests, ``demo`` for the demo, ``default``
#: (the defaults), ``repeated`` (repeated appearance), ``benchmark`` for benchmarks. Render times with ``--workers 2`` on 2 CPU
#: cores (CPU seconds / 2, i.e. on otherwise idle cores).
PRESETS: dict[str, SceneConfig] = {
    # 3 x 16 frames of 80 x 60: about 2 s (mostly process start-up; 1 s with --workers 1).
    "tiny": SceneConfig(
        width=80,
        height=60,
        frames=16,
        train_seqs=2,
        test_seqs=1,
        supersample=2,
        step_m=0.08,
        step_deg=4.0,
        viewpoints=2,
    ),
    # 5 x 100 frames of 160 x 120 (500 frames): about 15 s. A scan, with the map coverage of
    # real 7-Scenes: every sequence walks 10 m in 1 cm steps (every 10th rendered) inside the
    # same 2.5 m region, looking towards one focus. Its textures are of families the shipped
    # generic model never trained on (the rooms52 family's held-out ones), so the demo
    # relocalizes in a room that model never saw. Layout 4: with these families, the first
    # layout whose trajectories give 7-Scenes' coverage (test_synthetic checks it).
    "demo": SceneConfig(
        texture_families=("photo_c", "stone", "bricks"),
        layout_seed=4,
        width=160,
        height=120,
        frames=100,
        train_seqs=3,
        test_seqs=2,
        supersample=1,  # one ray per pixel: half the render time of 2 x 2 (the demo renders fresh)
        step_m=0.01,
        step_deg=1.0,
        frame_stride=10,
        region_m=2.5,
        focus_deg=25.0,
        viewpoints=5,
        roll_deg=8.0,
        shake_deg=1.0,
    ),
    # 3 x 300 frames of 320 x 240, supersampled (900 frames): about 2 min.
    "default": SceneConfig(),
    # 2 scenes x 6 x 200 frames of 320 x 240 (2400 frames). A scan with 7-Scenes' coverage:
    # 10 m in 1 cm steps per sequence (every 5th rendered) inside one 3 m region per scene.
    "benchmark": SceneConfig(
        width=320,
        height=240,
        frames=200,
        train_seqs=4,
        test_seqs=2,
        supersample=1,
        scenes=2,
        step_m=0.01,
        step_deg=1.0,
        frame_stride=5,
        region_m=3.0,
        focus_deg=25.0,
        viewpoints=5,
        roll_deg=8.0,
        shake_deg=1.0,
    ),
}


# 5 scenes (repeated_a ... repeated_e) as the demo's, with repeated appearance: every picture
# the same photograph, the walls one material, each kind of material the same everywhere
# (perceptual aliasing). About 52 s with --workers 2.
PRESETS["repeated"] = PRESETS["demo"].replace(name="repeated", layout_seed=100, scenes=5, repeat=True)


def scene_configs(config: SceneConfig | str) -> list[SceneConfig]:
    """The single-scene configs that a (multi-scene) config or preset name stands for.

    Scene ``i`` gets layout seed ``layout_seed + i``; names follow the layout seed
    (``synth_a``, ``synth_b``, ...) or, for a config with another name and several scenes,
    ``name_a``, ``name_b``, ...
    """
    config = _resolve_config(config)
    if config.scenes == 1:
        return [config]
    auto = config.name == _auto_name(config.layout_seed)
    return [
        config.replace(
            scenes=1,
            layout_seed=config.layout_seed + i,
            **({} if auto else {"name": f"{config.name}_{_letters(i)}"}),
        )
        for i in range(config.scenes)
    ]


def _resolve_config(config: SceneConfig | str) -> SceneConfig:
    """The config itself, or the preset of that name."""
    if isinstance(config, SceneConfig):
        return config
    if isinstance(config, str):
        if config not in PRESETS:
            raise KeyError(f"unknown preset {config!r}: choose one of {', '.join(PRESETS)}")
        return PRESETS[config]
    raise TypeError(f"expected a SceneConfig or a preset name, got {type(config).__name__}")


def load_config_file(path: Path, base: SceneConfig) -> SceneConfig:
    """Config from a YAML file of :class:`SceneConfig` fields (or a scene's ``synthetic.yaml``,
    whose ``config`` entry is used).

    Args:
        path: the YAML file.
        base: the config (a preset) that gives the fields the file leaves out.
    Raises:
        ValueError: the file holds no mapping, or unknown or invalid fields.
        OSError, yaml.YAMLError: the file cannot be read or parsed.
    """
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of SceneConfig fields")
    return SceneConfig.from_dict(loaded.get("config", loaded), base=base)


@functools.lru_cache(maxsize=8)
def _cached_room(layout_seed: int, room_min: tuple, room_max: tuple, lights: int, families: tuple = (),
                 rooms: int = 1, repeat: bool = False) -> Room:
    """:func:`reloc_sim.room.make_room`, cached (the renderer asks for the same room per frame)."""
    return make_room(layout_seed, room_min=room_min, room_max=room_max, lights=lights, texture_families=families,
                     rooms=rooms, repeat=repeat)
