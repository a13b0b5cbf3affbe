"""Deterministic synthetic scenes in the Microsoft 7-Scenes layout.

The real 7-Scenes cannot be downloaded everywhere, so the demo, the tests and the
benchmarks of reloc_ros use rooms rendered here. A scene folder looks exactly like a
7-Scenes one (see :mod:`reloc_ros.data.sevenscenes`)::

    synth_a/
      TrainSplit.txt  TestSplit.txt      "sequenceN" lines, CRLF
      intrinsics.yaml                    colour = depth intrinsics, depth_registered: true
      synthetic.yaml                     how the scene was made (config, seed, version)
      seq-01/frame-000000.color.png      8-bit RGB
             frame-000000.depth.png      16-bit millimetres, 65535 = no measurement
             frame-000000.label.png      8-bit semantic class ids, exact from the ray caster
             frame-000000.pose.txt       4x4 camera-to-world, as 7-Scenes prints it
      classes.yaml                       the class names of the label ids (CLASSES)

How a scene is made:

* **Room** (:func:`make_room`): an axis-aligned box room (floor, ceiling, four walls) with
  furniture made of axis-aligned boxes (bookshelves, cabinets, a sofa, desks, tables and
  chairs, crates, plants, a rug) and wall decorations (framed pictures, a whiteboard, a
  door, a window). Every surface is texture-mapped in world metres with one of the
  photographs bundled with scikit-image (no download): materials are tiled on walls, floor
  and furniture bodies, pictures are fitted once on posters, book spines, doors, screens.
  The layout only depends on the layout seed, so ``synth_a`` is always the same room.
* **Camera paths** (:func:`make_trajectory`): handheld-like. All the sequences of a scene
  walk the same tour of viewpoints spread over the free floor, along routes through the
  middle of the free space, each from its own start and with its own jitter, so that the
  test sequences cover the space of the training ones along other paths. The camera
  moves on C1 Hermite curves at a few centimetres and degrees per frame, looks at walls
  and furniture 0.5-3 m away, stops now and then to look around, and shakes a little. It
  never enters furniture and keeps away from the walls.
* **Images** (:func:`render_view`): a vectorised numpy ray caster (no OpenGL): closest hit
  against the room and a two-level box hierarchy, trilinear mip-mapped texture lookups,
  Lambertian shading from point lights with hard shadows plus ambient light, optional
  supersampling of the colour image. The depth image is the z-depth (along the optical
  axis) of the same camera at the pixel centres: colour and depth are registered.
* **Sensor** (:class:`SensorNoise`): exposure gain and colour noise; depth noise growing
  with the square of the distance (Kinect v1 model), quantised to millimetres; no
  measurement (65535) beyond the range, too close, at grazing angles or on depth edges.

Conventions: world frame metres, z up, floor at z = 0, room centred on x = y = 0. Camera
frame as in 7-Scenes / OpenCV: x right, y down, z forward; a pose maps camera to world.

Determinism: every random choice comes from a :class:`numpy.random.SeedSequence` made of
the base seed, the layout seed and the sequence / frame numbers, so the same seed writes
byte-identical files whatever the number of worker processes.

Command line::

    python -m reloc_sim --out DIR --preset tiny --scenes 2 --seed 0 --workers 2
"""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import functools
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from reloc_ros.data.sevenscenes import (
    DEFAULT_COLOR_INTRINSICS,
    CLASSES_FILE,
    INTRINSICS_FILE,
    SPLIT_FILES,
    Intrinsics,
    format_pose_text,
    format_split_text,
    parse_pose_text,
)

__all__ = [
    "SensorNoise",
    "SceneConfig",
    "PRESETS",
    "INVALID_DEPTH",
    "PROVENANCE_FILE",
    "MATERIAL_TEXTURES",
    "PICTURE_TEXTURES",
    "Room",
    "RoomGroup",
    "make_room",
    "make_trajectory",
    "trajectories",
    "preset_coverage",
    "render_view",
    "scene_configs",
    "generate_scene",
    "generate_dataset",
    "main",
]

#: Raw depth value written where the sensor gives no measurement (as in the original data).
INVALID_DEPTH = 65535
#: File in each generated scene folder that records how it was made.
PROVENANCE_FILE = "synthetic.yaml"
#: Bumped whenever the same config and seed would give different files.
GENERATOR_VERSION = 2

#: The semantic classes of the label images (``frame-XXXXXX.label.png``, uint8 class ids:
#: the index in this tuple). Room faces are floor, wall and ceiling; a piece of furniture or
#: decoration takes its kind, and the parts that are something else name it (the books on a
#: shelf, a desk's screen, the boxes and book stacks on tables). Written to ``classes.yaml``.
CLASSES = ("floor", "wall", "ceiling", "door", "window", "picture", "whiteboard", "bookshelf", "book", "cabinet",
           "wardrobe", "sofa", "desk", "screen", "table", "chair", "crates", "plant", "rug", "object")
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}

#: scikit-image photographs (all bundled, none downloaded) tiled as materials.
MATERIAL_TEXTURES = ("brick", "gravel", "grass", "moon", "cell", "coins", "page", "text", "checkerboard")
#: scikit-image photographs fitted once on a face: pictures, book spines, screens, rugs.
PICTURE_TEXTURES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cat",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "logo",
    "stereo_motorcycle",
    "retina",
    "clock",
    "camera",
    "horse",
    "coins",
    "page",
    "text",
)
_TEXTURES = MATERIAL_TEXTURES + tuple(n for n in PICTURE_TEXTURES if n not in MATERIAL_TEXTURES)
_TEX_INDEX = {n: i for i, n in enumerate(_TEXTURES)}
_TEX_SIZE = 256  # texels per side of mip level 0 (a power of two)
_TEX_MIN = 4  # smallest mip level

# SeedSequence tags: which random stream a seed feeds.
_TAG_ROOM, _TAG_VIEWPOINTS, _TAG_PATH, _TAG_FRAME = 11, 12, 13, 14

_CHUNK = 32768  # rays traced at once (keeps the work arrays in the CPU caches)
_EPS = 1e-4  # ray parameter below which a hit counts as the ray's own origin
_FREE_RES = 0.05  # metres per cell of the free-floor grid
_WALL_MARGIN = 0.45  # the camera stays this far (m) from the walls
_CLEARANCE = 0.35  # ... and this far (horizontally) from furniture


# =========================================================================== configuration
def _letters(i: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa', ... (spreadsheet column names)."""
    s = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def _auto_name(layout_seed: int) -> str:
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
    """How many scenes :func:`generate_dataset` makes from this config (layout seeds ``layout_seed``,
    ``layout_seed + 1``, ...)."""
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
    room_min: tuple[float, float, float] = (4.0, 3.0, 2.5)
    """Smallest room size (x, y, z) in metres."""
    room_max: tuple[float, float, float] = (7.0, 6.0, 3.0)
    """Largest room size (x, y, z) in metres."""
    lights: int = 2
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

    def __post_init__(self) -> None:
        for f in ("room_min", "room_max", "camera_height", "view_distance", "pitch_deg"):
            object.__setattr__(self, f, tuple(float(v) for v in getattr(self, f)))
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

    def room(self) -> Room:
        """The room of this config (cached)."""
        return _cached_room(self.layout_seed, self.room_min, self.room_max, self.lights)

    def replace(self, **changes) -> SceneConfig:
        """A copy with some fields changed, like :func:`dataclasses.replace`, except that an
        automatic name (``synth_a`` ...) follows a new ``layout_seed``."""
        if "layout_seed" in changes and "name" not in changes and self.name == _auto_name(self.layout_seed):
            changes["name"] = ""
        return replace(self, **changes)

    # -- (de)serialisation
    def as_dict(self) -> dict:
        """Plain dict (lists for tuples) that :meth:`from_dict` and YAML accept."""
        d = asdict(self)
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
#: (the defaults), ``benchmark`` for benchmarks. Render times with ``--workers 2`` on 2 CPU
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
    # 5 x 100 frames of 160 x 120 (500 frames): about 20 s. A scan, with the map coverage of
    # real 7-Scenes: every sequence walks 10 m in 1 cm steps (every 10th rendered) inside the
    # same 2.5 m region, looking towards one focus.
    "demo": SceneConfig(
        width=160,
        height=120,
        frames=100,
        train_seqs=3,
        test_seqs=2,
        supersample=2,
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


def trajectories(config: SceneConfig, seed: int = 0) -> dict[int, np.ndarray]:
    """Every sequence's camera path of one scene (no rendering): seq -> (frames, 4, 4)."""
    room = config.room()
    return {q: make_trajectory(room, config, seed, q) for q in range(1, config.train_seqs + config.test_seqs + 1)}


def preset_coverage(config: SceneConfig | str, seed: int = 0):
    """The map coverage (:class:`reloc_ros.data.coverage.Coverage`) of each scene of a config,
    computed from its trajectories alone: its test frames against its training frames."""
    from reloc_ros.data.coverage import coverage

    out = []
    for c in scene_configs(config):
        paths = trajectories(c, seed)
        out.append(coverage(np.concatenate([paths[q] for q in c.sequences["train"]]),
                            np.concatenate([paths[q] for q in c.sequences["test"]]), c.name))
    return out


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
    if isinstance(config, SceneConfig):
        return config
    if isinstance(config, str):
        if config not in PRESETS:
            raise KeyError(f"unknown preset {config!r}: choose one of {', '.join(PRESETS)}")
        return PRESETS[config]
    raise TypeError(f"expected a SceneConfig or a preset name, got {type(config).__name__}")


def _seed_sequence(*words: int) -> np.random.SeedSequence:
    for w in words:
        if int(w) < 0:
            raise ValueError(f"seeds must be >= 0, got {w}")
    return np.random.SeedSequence([int(w) for w in words])


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(_seed_sequence(*words))


# =========================================================================== textures
def _load_photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB picture from ``skimage.data`` (bundled files only)."""
    import skimage.data  # imported here: only the renderer needs it

    img = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        img = img[0]
    a = np.asarray(img)
    if a.dtype == bool:  # silhouettes (horse): True is the background
        a = np.where(a, 235, 25).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 4:  # composite on white
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


@dataclass(frozen=True)
class _Atlas:
    """All textures resized to the same square size, with mip levels, for vectorised lookups."""

    aspect: np.ndarray  # (T,) width / height of each original picture
    sizes: tuple[int, ...]  # texels per side of each level
    levels: tuple[np.ndarray, ...]  # level l: (T * S_l * S_l, 3) float32 in [0, 1]

    def sample(self, tex: np.ndarray, u: np.ndarray, v: np.ndarray, lod: np.ndarray) -> np.ndarray:
        """Trilinear lookup with mirrored repeat. ``u, v`` in texture units (1 = one copy),
        ``lod`` the mip level (log2 of the texels per sample). Returns (N, 3) float32."""
        u = np.abs(np.mod(u + 1.0, 2.0) - 1.0)
        v = np.abs(np.mod(v + 1.0, 2.0) - 1.0)
        top = len(self.sizes) - 1
        lod = np.clip(lod, 0.0, top)
        l0 = np.floor(lod).astype(np.int8)
        frac = (lod - l0).astype(np.float32)
        out = np.empty((len(tex), 3), dtype=np.float32)
        for level in range(top + 1):
            idx = np.flatnonzero(l0 == level)
            if idx.size == 0:
                continue
            t, uu, vv = tex[idx], u[idx], v[idx]
            c = self._bilinear(level, t, uu, vv)
            if level < top:
                c += (self._bilinear(level + 1, t, uu, vv) - c) * frac[idx, None]
            out[idx] = c
        return out

    def _bilinear(self, level: int, tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = self.sizes[level]
        x = np.clip(u * s - 0.5, 0.0, s - 1.0)
        y = np.clip(v * s - 0.5, 0.0, s - 1.0)
        x0 = np.minimum(x.astype(np.int32), s - 2)
        y0 = np.minimum(y.astype(np.int32), s - 2)
        fx = (x - x0).astype(np.float32)[:, None]
        fy = (y - y0).astype(np.float32)[:, None]
        base = (tex.astype(np.int32) * s + y0) * s + x0
        arr = self.levels[level]
        c00 = arr.take(base, axis=0)
        c01 = arr.take(base + 1, axis=0)
        c10 = arr.take(base + s, axis=0)
        c11 = arr.take(base + s + 1, axis=0)
        top = c00 + (c01 - c00) * fx
        bottom = c10 + (c11 - c10) * fx
        return top + (bottom - top) * fy


@functools.lru_cache(maxsize=1)
def _atlas() -> _Atlas:
    """The texture atlas (built once per process, about half a second)."""
    aspect, level0 = [], []
    for name in _TEXTURES:
        photo = _load_photo(name)
        aspect.append(photo.shape[1] / photo.shape[0])
        img = Image.fromarray(photo).resize((_TEX_SIZE, _TEX_SIZE), Image.Resampling.LANCZOS)
        level0.append(np.asarray(img, dtype=np.float32) / 255.0)
    pyramid = [np.stack(level0)]
    while pyramid[-1].shape[1] > _TEX_MIN:
        a = pyramid[-1]
        pyramid.append(0.25 * (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]))
    return _Atlas(
        aspect=np.array(aspect),
        sizes=tuple(p.shape[1] for p in pyramid),
        levels=tuple(np.ascontiguousarray(p.reshape(-1, 3), dtype=np.float32) for p in pyramid),
    )


def _texture_aspect(name: str) -> float:
    return float(_atlas().aspect[_TEX_INDEX[name]])


# =========================================================================== room model
@dataclass(frozen=True)
class RoomGroup:
    """One piece of furniture or decoration: the boxes ``start:stop`` of its room.

    ``walkable`` groups (rugs) are flat things that a person may walk over.
    """

    kind: str
    start: int
    stop: int
    walkable: bool = False


@dataclass(frozen=True)
class _Material:
    """A texture on a face: tiled (``tile`` = height of one copy in metres, shifted by
    ``offset`` copies) or, when ``tile`` is None, one copy fitted to the face (cropped)."""

    texture: str
    tint: tuple[float, float, float]
    tile: float | None = None
    offset: tuple[float, float] = (0.0, 0.0)


class Room:
    """A furnished box room: the geometry, the textures of its surfaces and its lights.

    World frame: metres, z up, floor at z = 0, room centred on x = y = 0 so that it spans
    ``[-size/2, size/2]`` in x and y and ``[0, size[2]]`` in z. Build one with
    :func:`make_room`.

    Attributes:
        layout_seed: the seed that made it.
        size: (3,) room size (m).
        box_lo, box_hi: (B, 3) corners of the furniture and decoration boxes.
        groups: which boxes make each piece (:class:`RoomGroup`).
        lights: (L, 3) light positions; ``light_power`` (L,) their strengths.
        ambient: ambient light level.
        s_class: (S,) uint8 semantic class (:data:`CLASSES`) of each surface.
    """

    def __init__(
        self,
        layout_seed: int,
        size: Sequence[float],
        boxes: Sequence[tuple[np.ndarray, np.ndarray, dict[int, _Material]]],
        groups: Sequence[RoomGroup],
        wall_materials: Sequence[_Material],
        lights: np.ndarray,
        light_power: np.ndarray,
        ambient: float,
    ):
        self.layout_seed = int(layout_seed)
        self.size = np.asarray(size, dtype=np.float64)
        self.box_lo = np.array([b[0] for b in boxes], dtype=np.float64).reshape(-1, 3)
        self.box_hi = np.array([b[1] for b in boxes], dtype=np.float64).reshape(-1, 3)
        self.groups = tuple(groups)
        self.group_lo = np.array([self.box_lo[g.start : g.stop].min(0) for g in groups]).reshape(-1, 3)
        self.group_hi = np.array([self.box_hi[g.start : g.stop].max(0) for g in groups]).reshape(-1, 3)
        self.lights = np.asarray(lights, dtype=np.float64).reshape(-1, 3)
        self.light_power = np.asarray(light_power, dtype=np.float64)
        self.ambient = float(ambient)
        self.lo = np.array([-self.size[0] / 2, -self.size[1] / 2, 0.0])
        self.hi = np.array([self.size[0] / 2, self.size[1] / 2, self.size[2]])

        # Surfaces: 6 room faces (inward), then 6 faces per box (outward). Face 2a + s is the
        # face across axis a on the low (s = 0) or high (s = 1) side.
        surf = [_surface(self.lo, self.hi, f, False, wall_materials[f]) for f in range(6)]
        for lo, hi, mats in boxes:
            surf.extend(_surface(lo, hi, f, True, mats[f]) for f in range(6))
        self.s_tex = np.array([s[0] for s in surf], dtype=np.int32)
        self.s_tint = np.array([s[1] for s in surf], dtype=np.float32)
        self.s_normal = np.array([s[2] for s in surf], dtype=np.float32)
        self.s_uax = np.array([s[3] for s in surf], dtype=np.int64)
        self.s_vax = np.array([s[4] for s in surf], dtype=np.int64)
        self.s_uv = np.array([s[5] for s in surf], dtype=np.float32)
        self.s_density = np.array([s[6] for s in surf], dtype=np.float32)
        # Semantic class of each surface: room faces by axis (z low: floor, z high: ceiling),
        # box faces by the part's own label, else its group's kind.
        cls = [CLASS_ID["wall"]] * 4 + [CLASS_ID["floor"], CLASS_ID["ceiling"]]
        box_class = np.zeros(len(boxes), dtype=np.uint8)
        for g in self.groups:
            box_class[g.start:g.stop] = CLASS_ID[g.kind]
        for b, (_, _, mats) in enumerate(boxes):
            if "label" in mats:
                box_class[b] = CLASS_ID[mats["label"]]
        self.s_class = np.array(cls + [c for c in box_class for _ in range(6)], dtype=np.uint8)
        self._free = _FreeFloor(self)

    # -- queries
    def footprints(self, walkable: bool = False) -> np.ndarray:
        """(G, 4) floor rectangles (x0, y0, x1, y1) of the groups (without walkable ones)."""
        keep = [i for i, g in enumerate(self.groups) if walkable or not g.walkable]
        return np.concatenate([self.group_lo[keep, :2], self.group_hi[keep, :2]], axis=1).reshape(-1, 4)

    def is_free(self, xy: np.ndarray) -> np.ndarray:
        """Whether the camera may be at these floor positions (N, 2): inside the main free
        area, away from the walls and from furniture."""
        return self._free.contains(np.asarray(xy, dtype=np.float64).reshape(-1, 2))

    @property
    def free_area(self) -> float:
        """Area (m^2) where the camera may be."""
        return self._free.area

    def describe(self) -> str:
        """One line: the room size and what is in it."""
        kinds: dict[str, int] = {}
        for g in self.groups:
            kinds[g.kind] = kinds.get(g.kind, 0) + 1
        parts = ", ".join(f"{n} {k}" if n > 1 else k for k, n in sorted(kinds.items()))
        x, y, z = self.size
        return f"room {x:.2f} x {y:.2f} x {z:.2f} m, {len(self.box_lo)} boxes: {parts}"

    # -- ray casting
    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closest hits of rays ``origins + t * dirs`` (t > 0); every ray hits the room.

        Args:
            origins: (3,) one origin for all rays, or (N, 3).
            dirs: (N, 3) directions (any length: ``t`` is measured in units of them).
        Returns:
            t (N,) float32 and the surface index (N,) of each hit.
        """
        o, inv, dirs = _ray_setup(origins, dirs)
        n = len(dirs)
        # Room: the ray leaves the box through the nearest exit plane.
        best_t = None
        sid = np.zeros(n, dtype=np.int64)
        for a in range(3):
            t_lo = (self.lo[a] - o[a]) * inv[a]
            t_hi = (self.hi[a] - o[a]) * inv[a]
            t_exit = np.maximum(t_lo, t_hi)
            face = np.where(dirs[:, a] > 0, 2 * a + 1, 2 * a)
            if best_t is None:
                best_t, sid = t_exit, face
            else:
                closer = t_exit < best_t
                best_t = np.where(closer, t_exit, best_t)
                sid = np.where(closer, face, sid)
        t = best_t.astype(np.float32)
        per_ray = not isinstance(o[0], float)
        for g, grp in enumerate(self.groups):
            tn, tf, *_ = _slab(o, inv, self.group_lo[g], self.group_hi[g])
            idx = np.flatnonzero((tn <= tf) & (tf > _EPS) & (tn < t))
            if idx.size == 0:
                continue
            so = [c[idx] for c in o] if per_ray else o
            si = [c[idx] for c in inv]
            st, ss = t[idx], sid[idx]
            for b in range(grp.start, grp.stop):
                tn, tf, nx, ny, _ = _slab(so, si, self.box_lo[b], self.box_hi[b])
                hit = np.flatnonzero((tn <= tf) & (tn > _EPS) & (tn < st))
                if hit.size == 0:
                    continue
                th = tn[hit]
                axis = np.where(th == nx[hit], 0, np.where(th == ny[hit], 1, 2))
                d_axis = dirs[idx[hit], axis]
                st[hit] = th
                ss[hit] = 6 + 6 * b + 2 * axis + (d_axis < 0)
            t[idx], sid[idx] = st, ss
        return t, sid

    def occluded(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Whether each segment ``origins -> origins + dirs`` (N, 3) crosses a box."""
        o, inv, dirs = _ray_setup(origins, dirs)
        occ = np.zeros(len(dirs), dtype=bool)
        for g, grp in enumerate(self.groups):
            tn, tf, *_ = _slab(o, inv, self.group_lo[g], self.group_hi[g])
            idx = np.flatnonzero((tn <= tf) & (tf > _EPS) & (tn < 1.0) & ~occ)
            if idx.size == 0:
                continue
            so = [c[idx] for c in o]
            si = [c[idx] for c in inv]
            hit_any = np.zeros(idx.size, dtype=bool)
            for b in range(grp.start, grp.stop):
                tn, tf, *_ = _slab(so, si, self.box_lo[b], self.box_hi[b])
                hit_any |= (tn <= tf) & (tn > _EPS) & (tn < 1.0)
            occ[idx] = hit_any
        return occ


def _ray_setup(origins: np.ndarray, dirs: np.ndarray):
    """Per-axis origins (floats or arrays), inverse directions and float32 directions."""
    dirs = np.asarray(dirs, dtype=np.float32).reshape(-1, 3)
    safe = np.where(np.abs(dirs) < 1e-9, np.float32(1e-9), dirs)
    inv = [np.ascontiguousarray(1.0 / safe[:, a]) for a in range(3)]
    origins = np.asarray(origins)
    if origins.ndim == 1:
        o = [float(origins[a]) for a in range(3)]
    else:
        origins = origins.astype(np.float32).reshape(-1, 3)
        o = [np.ascontiguousarray(origins[:, a]) for a in range(3)]
    return o, inv, dirs


def _slab(o, inv, lo, hi):
    """Ray-box slab test: entry and exit parameters, and the entry parameter per axis."""
    a0 = (lo[0] - o[0]) * inv[0]
    b0 = (hi[0] - o[0]) * inv[0]
    a1 = (lo[1] - o[1]) * inv[1]
    b1 = (hi[1] - o[1]) * inv[1]
    a2 = (lo[2] - o[2]) * inv[2]
    b2 = (hi[2] - o[2]) * inv[2]
    nx, ny, nz = np.minimum(a0, b0), np.minimum(a1, b1), np.minimum(a2, b2)
    tn = np.maximum(np.maximum(nx, ny), nz)
    tf = np.minimum(np.minimum(np.maximum(a0, b0), np.maximum(a1, b1)), np.maximum(a2, b2))
    return tn, tf, nx, ny, nz


def _surface(lo, hi, face: int, outward: bool, mat: _Material):
    """Shading and texture-mapping parameters of one axis-aligned face.

    Returns (texture index, tint, normal, u axis, v axis, (Au, Bu, Av, Bv), texels per
    metre) with texture coordinates ``u = Au * p[u axis] + Bu`` (same for v). Vertical
    faces have v pointing down and u to the right of a viewer in front of the face.
    """
    axis, side = divmod(face, 2)
    sign = (1.0 if side == 1 else -1.0) * (1.0 if outward else -1.0)
    normal = np.zeros(3)
    normal[axis] = sign
    if axis == 2:
        uax, su, vax, sv = 0, 1.0, 1, (-1.0 if sign > 0 else 1.0)
    elif axis == 0:
        uax, su, vax, sv = 1, sign, 2, -1.0
    else:
        uax, su, vax, sv = 0, -sign, 2, -1.0
    aspect = _texture_aspect(mat.texture)
    if mat.tile is not None:
        tv = float(mat.tile)
        tu = tv * aspect
        bu, bv = mat.offset
    else:
        fw, fh = hi[uax] - lo[uax], hi[vax] - lo[vax]
        umin = min(su * lo[uax], su * hi[uax])
        vmin = min(sv * lo[vax], sv * hi[vax])
        tv = max(fh, fw / aspect)
        tu = tv * aspect
        bu = -(umin + (fw - tu) / 2.0) / tu
        bv = -(vmin + (fh - tv) / 2.0) / tv
    uv = (su / tu, bu, sv / tv, bv)
    return _TEX_INDEX[mat.texture], mat.tint, normal, uax, vax, uv, _TEX_SIZE / min(tu, tv)


class _FreeFloor:
    """Grid of floor cells where the camera may be: inside the walls by ``_WALL_MARGIN``,
    ``_CLEARANCE`` away from non-walkable furniture, in the largest connected area."""

    def __init__(self, room: Room):
        self.res = _FREE_RES
        self.half = room.size[:2] / 2.0
        nx, ny = (int(math.ceil(s / self.res)) for s in room.size[:2])
        xs = -self.half[0] + (np.arange(nx) + 0.5) * self.res
        ys = -self.half[1] + (np.arange(ny) + 0.5) * self.res
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        free = (np.abs(X) <= self.half[0] - _WALL_MARGIN) & (np.abs(Y) <= self.half[1] - _WALL_MARGIN)
        for x0, y0, x1, y1 in room.footprints():
            free &= ~(
                (X >= x0 - _CLEARANCE)
                & (X <= x1 + _CLEARANCE)
                & (Y >= y0 - _CLEARANCE)
                & (Y <= y1 + _CLEARANCE)
            )
        labels, n = ndimage.label(free)
        if n > 1:
            counts = np.bincount(labels.ravel())
            counts[0] = 0
            free = labels == int(np.argmax(counts))
        self.grid = free
        self.xs, self.ys = xs, ys
        self.area = float(free.sum()) * self.res**2

    def contains(self, xy: np.ndarray) -> np.ndarray:
        ij = np.floor((xy + self.half) / self.res).astype(np.int64)
        inside = (
            (ij[:, 0] >= 0)
            & (ij[:, 0] < self.grid.shape[0])
            & (ij[:, 1] >= 0)
            & (ij[:, 1] < self.grid.shape[1])
        )
        out = np.zeros(len(xy), dtype=bool)
        out[inside] = self.grid[ij[inside, 0], ij[inside, 1]]
        return out

    def cells(self, min_clearance: float = 0.0) -> np.ndarray:
        """(M, 2) centres of the free cells at least ``min_clearance`` (m) inside the area."""
        grid = self.grid
        if min_clearance > 0:
            dist = ndimage.distance_transform_edt(grid) * self.res
            deep = grid & (dist >= min_clearance)
            if deep.any():
                grid = deep
        i, j = np.nonzero(grid)
        return np.stack([self.xs[i], self.ys[j]], axis=1)


# =========================================================================== room layout
class _Palette:
    """Random materials for one room."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def tint(self, sat=(0.05, 0.45), val=(0.6, 0.95), hue=(0.0, 1.0)) -> tuple[float, float, float]:
        h = self.rng.uniform(*hue) % 1.0
        rgb = colorsys.hsv_to_rgb(h, self.rng.uniform(*sat), self.rng.uniform(*val))
        return tuple(round(float(c), 4) for c in rgb)

    def tiled(self, names: Sequence[str], tile: tuple[float, float], **tint) -> _Material:
        name = str(self.rng.choice(names))
        return _Material(
            name, self.tint(**tint), float(self.rng.uniform(*tile)), tuple(self.rng.uniform(0, 2, 2))
        )

    def picture(self, names: Sequence[str] = PICTURE_TEXTURES, **tint) -> _Material:
        name = str(self.rng.choice(names))
        if _is_gray(name):
            return _Material(name, self.tint(**(tint or {"sat": (0.2, 0.6), "val": (0.75, 1.0)})))
        v = float(self.rng.uniform(0.85, 1.0))
        return _Material(name, (v, v, v))

    def wood(self) -> _Material:
        return self.tiled(
            ("gravel", "cell", "moon", "grass", "coins", "brick"),
            (0.4, 1.0),
            sat=(0.25, 0.6),
            val=(0.35, 0.8),
            hue=(0.04, 0.12),
        )

    def paint(self) -> _Material:
        return self.tiled(("moon", "cell", "gravel", "coins"), (0.6, 1.4), sat=(0.0, 0.5), val=(0.5, 0.95))

    def fabric(self) -> _Material:
        return self.tiled(
            ("grass", "gravel", "cell", "brick", "checkerboard"), (0.2, 0.5), sat=(0.3, 0.8), val=(0.35, 0.8)
        )


_GRAY_TEXTURES = frozenset(
    {
        "brick",
        "gravel",
        "grass",
        "moon",
        "cell",
        "coins",
        "page",
        "text",
        "checkerboard",
        "camera",
        "clock",
        "horse",
    }
)


def _is_gray(name: str) -> bool:
    return name in _GRAY_TEXTURES


# Furniture is described in a local frame: u along the wall (or the long side), w away from
# the wall (into the room), z up. A part is (lo, hi, {face name: material}); the faces are
# 'front' (+w), 'back', 'left' (-u), 'right' (+u), 'top', 'bottom'; others use 'body'.
_Part = tuple[tuple[float, float, float], tuple[float, float, float], dict]


def _bookshelf(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    a, d, h, b = rng.uniform(0.8, 1.2), rng.uniform(0.3, 0.4), rng.uniform(1.6, 2.1), 0.025
    body = pal.wood()
    parts: list[_Part] = [
        ((-a / 2, 0, 0), (-a / 2 + b, d, h), {"body": body}),
        ((a / 2 - b, 0, 0), (a / 2, d, h), {"body": body}),
        ((-a / 2 + b, 0, h - b), (a / 2 - b, d, h), {"body": body}),
        ((-a / 2 + b, 0, 0), (a / 2 - b, 0.015, h - b), {"body": body}),
        ((-a / 2 + b, 0.015, 0), (a / 2 - b, d, 0.08), {"body": body}),
    ]
    n = int(rng.integers(3, 6))
    levels = np.linspace(0.08, h - b, n + 1)
    for z in levels[1:-1]:
        parts.append(((-a / 2 + b, 0.015, z - b / 2), (a / 2 - b, d, z + b / 2), {"body": body}))
    for z0, z1 in zip(levels[:-1], levels[1:]):
        z0, z1 = z0 + b / 2, z1 - b / 2
        u = -a / 2 + b + rng.uniform(0.0, 0.08)
        while u < a / 2 - b - 0.1:
            wb = min(rng.uniform(0.12, 0.4), a / 2 - b - u)
            if rng.uniform() < 0.85:
                hb = (z1 - z0) * rng.uniform(0.55, 0.9)
                db = rng.uniform(0.16, d - 0.04)
                parts.append(
                    (
                        (u, 0.015, z0),
                        (u + wb, 0.015 + db, z0 + hb),
                        {"front": pal.picture(), "body": pal.tiled(("page", "text", "moon"), (0.2, 0.4)),
                         "label": "book"},
                    )
                )
            u += wb + rng.uniform(0.0, 0.1)
    return parts


def _cabinet(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    a, d, h = rng.uniform(0.8, 1.6), rng.uniform(0.4, 0.6), rng.uniform(0.7, 1.1)
    body = pal.wood() if rng.uniform() < 0.6 else pal.paint()
    parts: list[_Part] = [
        ((-a / 2 + 0.02, 0, 0), (a / 2 - 0.02, d - 0.05, 0.08), {"body": pal.paint()}),
        ((-a / 2, 0, 0.08), (a / 2, d, h - 0.03), {"body": body}),
        ((-a / 2 - 0.02, 0, h - 0.03), (a / 2 + 0.02, d + 0.03, h), {"body": pal.wood()}),
    ]
    doors = int(rng.integers(1, 4))
    edges = np.linspace(-a / 2 + 0.02, a / 2 - 0.02, doors + 1)
    for u0, u1 in zip(edges[:-1], edges[1:]):
        face = pal.picture() if rng.uniform() < 0.5 else pal.wood()
        parts.append(((u0 + 0.01, d, 0.11), (u1 - 0.01, d + 0.012, h - 0.06), {"front": face, "body": body}))
    parts += _tabletop_objects(pal, rng, (-a / 2, a / 2), (0.05, d - 0.05), h)
    return parts


def _wardrobe(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    a, d, h = rng.uniform(0.9, 1.5), rng.uniform(0.55, 0.62), rng.uniform(1.9, 2.2)
    body = pal.wood() if rng.uniform() < 0.6 else pal.paint()
    parts: list[_Part] = [((-a / 2, 0, 0), (a / 2, d, h), {"body": body})]
    door = pal.picture() if rng.uniform() < 0.4 else pal.wood()
    for u0, u1 in ((-a / 2 + 0.02, -0.01), (0.01, a / 2 - 0.02)):
        parts.append(((u0, d, 0.1), (u1, d + 0.015, h - 0.05), {"front": door, "body": body}))
    return parts


def _sofa(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    a, d = rng.uniform(1.6, 2.3), rng.uniform(0.8, 0.95)
    fabric = pal.fabric()
    parts: list[_Part] = [
        ((-a / 2, 0, 0.05), (a / 2, d, 0.42), {"body": fabric}),
        ((-a / 2, 0, 0.42), (a / 2, 0.22, 0.85), {"body": fabric}),
        ((-a / 2, 0.22, 0.42), (-a / 2 + 0.2, d, 0.62), {"body": fabric}),
        ((a / 2 - 0.2, 0.22, 0.42), (a / 2, d, 0.62), {"body": fabric}),
    ]
    cushions = int(rng.integers(2, 4))
    edges = np.linspace(-a / 2 + 0.2, a / 2 - 0.2, cushions + 1)
    for u0, u1 in zip(edges[:-1], edges[1:]):
        if rng.uniform() < 0.6:
            face = {"body": pal.fabric(), "front": pal.picture()}
            parts.append(((u0 + 0.04, 0.22, 0.42), (u1 - 0.04, 0.32, 0.78), face))
    return parts


def _table_parts(pal: _Palette, rng, a: float, d: float, h: float, w0: float, objects: bool) -> list[_Part]:
    top = pal.picture() if rng.uniform() < 0.35 else pal.wood()
    legs = pal.paint()
    parts: list[_Part] = [((-a / 2, w0, h - 0.04), (a / 2, w0 + d, h), {"top": top, "body": pal.wood()})]
    for u in (-a / 2 + 0.03, a / 2 - 0.08):
        for w in (w0 + 0.03, w0 + d - 0.08):
            parts.append(((u, w, 0), (u + 0.05, w + 0.05, h - 0.04), {"body": legs}))
    if objects:
        parts += _tabletop_objects(pal, rng, (-a / 2, a / 2), (w0 + 0.05, w0 + d - 0.05), h)
    return parts


def _tabletop_objects(pal: _Palette, rng, urange, wrange, z: float) -> list[_Part]:
    """0-3 boxes (book stacks, printed boxes) standing on a surface at height z."""
    parts: list[_Part] = []
    for _ in range(int(rng.integers(0, 4))):
        su, sw, sz = rng.uniform(0.12, 0.35), rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.35)
        if urange[1] - urange[0] < su + 0.1 or wrange[1] - wrange[0] < sw:
            continue
        u = rng.uniform(urange[0] + 0.05, urange[1] - su - 0.05)
        w = rng.uniform(wrange[0], wrange[1] - sw)
        box = ((u, w, z), (u + su, w + sw, z + sz))
        if any(_overlap(box, (p[0], p[1])) for p in parts):
            continue
        parts.append((*box, {"body": pal.picture(), "top": pal.picture(), "label": "object"}))
    return parts


def _desk(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    a, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
    parts = _table_parts(pal, rng, a, d, h, 0.0, objects=False)
    sw = rng.uniform(0.45, 0.65)
    su = rng.uniform(-a / 2 + 0.05, a / 2 - sw - 0.05)
    screen = pal.picture(
        ("astronaut", "rocket", "hubble_deep_field", "coffee", "chelsea", "stereo_motorcycle", "colorwheel")
    )
    dark = _Material("moon", (0.15, 0.15, 0.17), 0.5)
    parts += [
        ((su + sw / 2 - 0.04, 0.1, h), (su + sw / 2 + 0.04, 0.16, h + 0.12), {"body": dark}),
        ((su, 0.13, h + 0.12), (su + sw, 0.16, h + 0.12 + sw * 0.6), {"front": screen, "body": dark,
                                                                       "label": "screen"}),
        (
            (su + 0.05, 0.3, h),
            (su + sw - 0.05, 0.45, h + 0.02),
            {"body": pal.picture(("text", "page", "coins"))},
        ),
    ]
    return parts


def _crates(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    parts: list[_Part] = []
    s0 = rng.uniform(0.35, 0.6)
    parts.append(((-s0 / 2, 0, 0), (s0 / 2, s0, s0), {"body": pal.picture(), "top": pal.wood()}))
    if rng.uniform() < 0.6:
        s1 = rng.uniform(0.25, s0)
        parts.append(((-s1 / 2, 0, s0), (s1 / 2, s1, s0 + s1), {"body": pal.picture(), "top": pal.picture()}))
    return parts


def _plant(pal: _Palette, rng: np.random.Generator) -> list[_Part]:
    p, h = rng.uniform(0.25, 0.35), rng.uniform(0.3, 0.4)
    f, fh = rng.uniform(0.4, 0.6), rng.uniform(0.5, 0.9)
    leaves = pal.tiled(
        ("grass", "gravel", "cell"), (0.2, 0.4), hue=(0.22, 0.38), sat=(0.5, 0.8), val=(0.3, 0.6)
    )
    return [
        (
            (-p / 2, (f - p) / 2, 0),
            (p / 2, (f + p) / 2, h),
            {"body": pal.tiled(("moon", "brick", "gravel"), (0.2, 0.4))},
        ),
        ((-f / 2, 0, h), (f / 2, f, h + fh), {"body": leaves}),
    ]


def _chair(pal: _Palette, rng: np.random.Generator, wood: _Material) -> list[_Part]:
    s, h, bh = rng.uniform(0.42, 0.48), rng.uniform(0.44, 0.47), rng.uniform(0.85, 0.95)
    seat = pal.fabric() if rng.uniform() < 0.5 else wood
    parts: list[_Part] = [((-s / 2, 0, h - 0.04), (s / 2, s, h), {"body": seat})]
    for u in (-s / 2, s / 2 - 0.035):
        for w in (0.0, s - 0.035):
            parts.append(((u, w, 0), (u + 0.035, w + 0.035, h - 0.04), {"body": wood}))
    parts.append(((-s / 2, 0, h), (s / 2, 0.03, bh), {"body": wood, "front": seat}))
    return parts


# Pieces that stand against a wall: (builder, weight, most per room).
_WALL_PIECES = {
    "bookshelf": (_bookshelf, 3, 3),
    "cabinet": (_cabinet, 3, 3),
    "wardrobe": (_wardrobe, 1, 1),
    "sofa": (_sofa, 2, 1),
    "desk": (_desk, 2, 2),
    "crates": (_crates, 1, 2),
    "plant": (_plant, 1, 2),
}


def _overlap(a, b, margin: float = 0.0) -> bool:
    """Whether two boxes (lo, hi) overlap (with a margin), in as many axes as they have."""
    return all(a[0][i] < b[1][i] + margin and b[0][i] < a[1][i] + margin for i in range(len(a[0])))


@dataclass
class _Placement:
    """Maps the local frame of a piece into the world: p = origin + u * U + w * W + z."""

    origin: tuple[float, float]
    U: tuple[int, int]  # world direction of +u (an axis unit vector)
    W: tuple[int, int]  # world direction of +w

    def box(self, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        corners = []
        for u in (lo[0], hi[0]):
            for w in (lo[1], hi[1]):
                corners.append(
                    (
                        self.origin[0] + u * self.U[0] + w * self.W[0],
                        self.origin[1] + u * self.U[1] + w * self.W[1],
                    )
                )
        c = np.array(corners)
        return np.array([*c.min(0), lo[2]]), np.array([*c.max(0), hi[2]])

    def face(self, name: str) -> int:
        """World face index (2 * axis + side) of a local face name."""
        if name == "top":
            return 5
        if name == "bottom":
            return 4
        vec = {
            "front": self.W,
            "back": (-self.W[0], -self.W[1]),
            "right": self.U,
            "left": (-self.U[0], -self.U[1]),
        }[name]
        axis = 0 if vec[0] != 0 else 1
        return 2 * axis + (1 if vec[axis] > 0 else 0)


def _wall_placement(size, wall: int, s: float) -> _Placement:
    """Placement against wall 0 (x = -X/2), 1 (x = +X/2), 2 (y = -Y/2) or 3 (y = +Y/2), at
    position s along it; the local w axis points into the room."""
    X, Y = size[0] / 2, size[1] / 2
    return [
        _Placement((-X, s), (0, 1), (1, 0)),
        _Placement((X, s), (0, -1), (-1, 0)),
        _Placement((s, -Y), (-1, 0), (0, 1)),
        _Placement((s, Y), (1, 0), (0, -1)),
    ][wall]


class _LayoutBuilder:
    """Collects the boxes of a room's pieces and checks where new pieces fit."""

    def __init__(self, size: np.ndarray):
        self.size = size
        self.boxes: list[tuple[np.ndarray, np.ndarray, dict[int, _Material]]] = []
        self.groups: list[RoomGroup] = []

    def bounds(self, walkable: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Bounding boxes (lo, hi) of the pieces so far (with the walkable ones or not)."""
        out = []
        for g in self.groups:
            if walkable or not g.walkable:
                lo = np.min([self.boxes[i][0] for i in range(g.start, g.stop)], axis=0)
                hi = np.max([self.boxes[i][1] for i in range(g.start, g.stop)], axis=0)
                out.append((lo, hi))
        return out

    def world_parts(self, parts: list[_Part], place: _Placement):
        """World boxes (lo, hi, {face index: material}) of a piece's local parts."""
        out = []
        for lo, hi, mats in parts:
            wlo, whi = place.box(lo, hi)
            body = mats.get("body") or next(iter(mats.values()))
            faces = {f: body for f in range(6)}
            for name, m in mats.items():
                if name not in ("body", "label"):
                    faces[place.face(name)] = m
            if "label" in mats:
                faces["label"] = mats["label"]
            out.append((wlo, whi, faces))
        return out

    def fits(self, parts, margin: float, keep_out=(), walkable: bool = False) -> bool:
        """Whether a piece (world boxes) is inside the room and ``margin`` away from the
        pieces so far (walkable ones too when ``walkable``) and from ``keep_out`` boxes."""
        lo = np.min([p[0] for p in parts], axis=0)
        hi = np.max([p[1] for p in parts], axis=0)
        if (
            np.any(lo[:2] < -self.size[:2] / 2 - 1e-6)
            or np.any(hi[:2] > self.size[:2] / 2 + 1e-6)
            or hi[2] > self.size[2] - 0.1
        ):
            return False
        others = self.bounds(walkable) + list(keep_out)
        return not any(_overlap((lo, hi), o, margin) for o in others)

    def add(self, kind: str, parts, walkable: bool = False) -> None:
        start = len(self.boxes)
        self.boxes.extend(parts)
        self.groups.append(RoomGroup(kind, start, len(self.boxes), walkable))

    def undo(self) -> None:
        g = self.groups.pop()
        del self.boxes[g.start :]


def make_room(
    layout_seed: int = 0,
    *,
    room_min: Sequence[float] = SceneConfig.room_min,
    room_max: Sequence[float] = SceneConfig.room_max,
    lights: int = SceneConfig.lights,
) -> Room:
    """Build the furnished room of a layout seed (deterministic).

    Args:
        layout_seed: which room (>= 0).
        room_min: smallest room size (x, y, z) in metres.
        room_max: largest room size (x, y, z) in metres.
        lights: number of point lights under the ceiling.
    """
    rng = _rng(_TAG_ROOM, layout_seed)
    size = np.array([rng.uniform(a, b) for a, b in zip(room_min, room_max)])
    X, Y, Z = size
    pal = _Palette(rng)
    build = _LayoutBuilder(size)
    walls = [
        pal.tiled(("brick", "cell", "page", "text", "gravel"), (0.5, 1.4), val=(0.7, 1.0)) for _ in range(4)
    ]
    floor = pal.tiled(
        ("checkerboard", "gravel", "grass", "brick", "moon", "cell"), (0.8, 1.8), val=(0.45, 0.85)
    )
    ceiling = pal.tiled(("moon", "cell"), (1.5, 2.5), sat=(0.0, 0.1), val=(0.85, 1.0))
    wall_len = (Y, Y, X, X)
    keep_out = []  # floor zones kept clear (in front of the door)

    # Door on a random wall.
    wall = int(rng.integers(4))
    s = rng.uniform(-wall_len[wall] / 2 + 0.7, wall_len[wall] / 2 - 0.7)
    place = _wall_placement(size, wall, s)
    dw, dh = rng.uniform(0.85, 0.95), rng.uniform(2.0, min(2.1, Z - 0.2))
    door = [
        ((-dw / 2 - 0.06, 0, 0), (dw / 2 + 0.06, 0.02, dh + 0.06), {"body": pal.paint()}),  # frame
        ((-dw / 2, 0.02, 0), (dw / 2, 0.05, dh), {"body": pal.wood()}),  # leaf
        (
            (dw / 2 - 0.14, 0.05, 0.98),
            (dw / 2 - 0.06, 0.1, 1.02),
            {"body": _Material("moon", (0.8, 0.75, 0.5), 0.2)},
        ),
        (
            (-0.12, 0.05, 1.45),
            (0.12, 0.056, 1.75),
            {"body": pal.picture(("text", "page", "logo", "clock"))},
        ),  # sign
    ]
    build.add("door", build.world_parts(door, place))
    keep_out.append(place.box((-dw / 2 - 0.1, 0, 0), (dw / 2 + 0.1, 1.0, dh)))

    # Furniture against the walls.
    kinds = list(_WALL_PIECES)
    weights = np.array([_WALL_PIECES[k][1] for k in kinds], dtype=np.float64)
    target = int(2 * (X + Y) / 4.5) + int(rng.integers(1, 4))
    placed = 0
    count = {k: 0 for k in kinds}
    for _ in range(100):
        if placed >= target:
            break
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if count[kind] >= _WALL_PIECES[kind][2]:
            continue
        parts = _WALL_PIECES[kind][0](pal, rng)
        wall = int(rng.integers(4))
        half = max(abs(p[i][0]) for p in parts for i in (0, 1))
        room_half = wall_len[wall] / 2
        if half > room_half - 0.05:
            continue
        place = _wall_placement(size, wall, rng.uniform(-room_half + half + 0.02, room_half - half - 0.02))
        world = build.world_parts(parts, place)
        if build.fits(world, 0.05, keep_out):
            build.add(kind, world)
            placed += 1
            count[kind] += 1

    # Free-standing pieces: keep a large free area for the camera.
    min_area = max(2.5, 0.25 * X * Y)

    def free_enough() -> bool:
        return _free_area_of(size, build.bounds()) >= min_area

    if rng.uniform() < 0.6:  # rug, walkable
        rw, rd = rng.uniform(1.4, min(2.6, X - 1.5)), rng.uniform(1.0, min(2.0, Y - 1.5))
        if rw > 0.8 and rd > 0.8:
            c = (
                rng.uniform(-X / 2 + rw / 2 + 0.6, X / 2 - rw / 2 - 0.6),
                rng.uniform(-Y / 2 + rd / 2 + 0.6, Y / 2 - rd / 2 - 0.6),
            )
            rug = pal.picture(
                ("immunohistochemistry", "colorwheel", "hubble_deep_field", "coins", "retina", "logo")
            )
            build.add(
                "rug",
                [
                    (
                        np.array([c[0] - rw / 2, c[1] - rd / 2, 0.0]),
                        np.array([c[0] + rw / 2, c[1] + rd / 2, 0.008]),
                        {f: rug for f in range(6)},
                    )
                ],
                walkable=True,
            )
    if rng.uniform() < 0.85:  # a table with chairs
        for _ in range(30):
            a, d = rng.uniform(1.0, 1.7), rng.uniform(0.65, 0.95)
            axis = int(rng.integers(2))
            U, W = ((1, 0), (0, 1)) if axis == 0 else ((0, 1), (-1, 0))
            ext = np.array([a, d]) if axis == 0 else np.array([d, a])
            lim = size[:2] / 2 - ext / 2 - 1.0
            if np.any(lim <= 0):
                break
            c = (rng.uniform(-lim[0], lim[0]), rng.uniform(-lim[1], lim[1]))
            place = _Placement(c, U, W)
            table = build.world_parts(
                _table_parts(pal, rng, a, d, rng.uniform(0.72, 0.76), -d / 2, objects=True), place
            )
            if not build.fits(table, 0.8, keep_out):
                continue
            build.add("table", table)
            if not free_enough():
                build.undo()
                continue
            wood = pal.wood()
            for side in (-1, 1):
                for u in (-a / 4, a / 4):
                    if rng.uniform() < 0.5:
                        continue
                    chair = _chair(pal, rng, wood)
                    depth = max(hi[1] for _, hi, _ in chair)
                    # The chair's +w runs from its back towards the table, 12 cm from it.
                    toward = (-side * W[0], -side * W[1])
                    off = side * (d / 2 + 0.12 + depth)
                    origin = (c[0] + W[0] * off + U[0] * u, c[1] + W[1] * off + U[1] * u)
                    world = build.world_parts(chair, _Placement(origin, (-toward[1], toward[0]), toward))
                    if build.fits(world, 0.05, keep_out):
                        build.add("chair", world)
                        if not free_enough():
                            build.undo()
            break
    for kind, maker, p in (("crates", _crates, 0.4), ("plant", _plant, 0.4)):
        if rng.uniform() >= p:
            continue
        parts = maker(pal, rng)
        for _ in range(20):
            c = (rng.uniform(-X / 2 + 0.8, X / 2 - 0.8), rng.uniform(-Y / 2 + 0.8, Y / 2 - 0.8))
            world = build.world_parts(parts, _Placement(c, (1, 0), (0, 1)))
            if build.fits(world, 0.9, keep_out):
                build.add(kind, world)
                if free_enough():
                    break
                build.undo()

    # Wall decorations: framed pictures, a whiteboard, a window.
    decorations = [("window", 0.5), ("whiteboard", 0.5)] + [("picture", 1.0)] * int(rng.integers(4, 10))
    for kind, p in decorations:
        if rng.uniform() >= p:
            continue
        for _ in range(30):
            wall = int(rng.integers(4))
            if kind == "window":
                pic = _Material("hubble_deep_field", (1.0, 1.0, 1.0))
                ph, pw, frame = rng.uniform(0.9, 1.3), rng.uniform(0.8, 1.6), 0.06
                zc = rng.uniform(1.3, 1.6)
            elif kind == "whiteboard":
                pic = pal.picture(("text", "page"), sat=(0.0, 0.08), val=(0.9, 1.0))
                ph, pw, frame = rng.uniform(0.8, 1.1), rng.uniform(1.1, 1.8), 0.03
                zc = rng.uniform(1.3, 1.55)
            else:
                pic = pal.picture()
                ph = rng.uniform(0.35, 0.9)
                pw = float(np.clip(ph * _texture_aspect(pic.texture), 0.3, 1.6))
                frame = rng.uniform(0.015, 0.05)
                zc = rng.uniform(1.1, 1.8)
            H, Wd = ph + 2 * frame, pw + 2 * frame
            zc = min(zc, Z - 0.15 - H / 2)
            if Wd > wall_len[wall] - 0.3:
                continue
            s = rng.uniform(-wall_len[wall] / 2 + Wd / 2 + 0.1, wall_len[wall] / 2 - Wd / 2 - 0.1)
            parts = [
                (
                    (-Wd / 2, 0, zc - H / 2),
                    (Wd / 2, 0.015, zc + H / 2),
                    {"body": pal.paint() if kind != "window" else _Material("moon", (0.9, 0.9, 0.9), 1.0)},
                ),
                ((-pw / 2, 0.015, zc - ph / 2), (pw / 2, 0.022, zc + ph / 2), {"body": pic}),
            ]
            world = build.world_parts(parts, _wall_placement(size, wall, s))
            if build.fits(world, 0.05, walkable=True):
                build.add(kind, world)
                break

    # Lights under the ceiling.
    lpos = np.array(
        [[rng.uniform(-0.3 * X, 0.3 * X), rng.uniform(-0.3 * Y, 0.3 * Y), Z - 0.12] for _ in range(lights)]
    )
    power = np.full(lights, rng.uniform(1.6, 2.0) / lights) * (1.0 + 0.15 * (lights > 1))
    ambient = float(rng.uniform(0.45, 0.55))
    return Room(layout_seed, size, build.boxes, build.groups, walls + [floor, ceiling], lpos, power, ambient)


def _free_area_of(size: np.ndarray, footprints) -> float:
    """Free floor area (m^2) left for the camera by these footprints."""
    res = 0.1
    nx, ny = (int(math.ceil(s / res)) for s in size[:2])
    xs = -size[0] / 2 + (np.arange(nx) + 0.5) * res
    ys = -size[1] / 2 + (np.arange(ny) + 0.5) * res
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    free = (np.abs(X) <= size[0] / 2 - _WALL_MARGIN) & (np.abs(Y) <= size[1] / 2 - _WALL_MARGIN)
    for lo, hi in footprints:
        free &= ~(
            (X >= lo[0] - _CLEARANCE)
            & (X <= hi[0] + _CLEARANCE)
            & (Y >= lo[1] - _CLEARANCE)
            & (Y <= hi[1] + _CLEARANCE)
        )
    labels, n = ndimage.label(free)
    if n == 0:
        return 0.0
    return float(np.bincount(labels.ravel())[1:].max()) * res**2


@functools.lru_cache(maxsize=8)
def _cached_room(layout_seed: int, room_min: tuple, room_max: tuple, lights: int) -> Room:
    return make_room(layout_seed, room_min=room_min, room_max=room_max, lights=lights)


# =========================================================================== rendering
def _pixel_rays(pose: np.ndarray, intr: Intrinsics, ss: int) -> np.ndarray:
    """(H*ss * W*ss, 3) float32 world ray directions with camera z = 1 (so t = z-depth).

    Sample k of a pixel sits at ``(k + 0.5) / ss - 0.5`` from its centre, so the samples of
    a pixel average to its centre.
    """
    us = (np.arange(intr.width * ss) + 0.5) / ss - 0.5
    vs = (np.arange(intr.height * ss) + 0.5) / ss - 0.5
    x = ((us - intr.cx) / intr.fx)[None, :]
    y = ((vs - intr.cy) / intr.fy)[:, None]
    R = np.asarray(pose, dtype=np.float64)[:3, :3]
    # Explicit products (no BLAS): identical results in every process.
    d = np.empty((len(vs), len(us), 3), dtype=np.float32)
    for i in range(3):
        d[..., i] = R[i, 0] * x + R[i, 1] * y + R[i, 2]
    return d.reshape(-1, 3)


def _shade(
    room: Room,
    origin: np.ndarray,
    dirs: np.ndarray,
    t: np.ndarray,
    sid: np.ndarray,
    focal: float,
    shadows: bool,
) -> np.ndarray:
    """Lambertian colour (N, 3) float32 of the hits ``origin + t * dirs``."""
    P = origin.astype(np.float32) + t[:, None] * dirs
    n = room.s_normal[sid]
    # Texture coordinates and mip level (pixel footprint on the surface, in texels).
    pu = np.take_along_axis(P, room.s_uax[sid][:, None], axis=1)[:, 0]
    pv = np.take_along_axis(P, room.s_vax[sid][:, None], axis=1)[:, 0]
    uv = room.s_uv[sid]
    u = uv[:, 0] * pu + uv[:, 1]
    v = uv[:, 2] * pv + uv[:, 3]
    dlen = np.sqrt(np.einsum("ij,ij->i", dirs, dirs))
    cos_v = np.abs(np.einsum("ij,ij->i", n, dirs)) / dlen
    foot = t / focal / np.sqrt(np.maximum(cos_v, 0.1)) * room.s_density[sid]
    lod = np.log2(np.maximum(foot, 1e-3))
    albedo = _atlas().sample(room.s_tex[sid], u, v, lod) * room.s_tint[sid]
    light = np.full(len(t), room.ambient, dtype=np.float32)
    for pos, power in zip(room.lights, room.light_power):
        L = pos.astype(np.float32) - P
        dist = np.sqrt(np.einsum("ij,ij->i", L, L))
        ndl = np.einsum("ij,ij->i", n, L) / dist
        contrib = np.where(ndl > 0, power * ndl / (1.0 + (dist / 3.0) ** 2), 0.0).astype(np.float32)
        if shadows:
            lit = np.flatnonzero(contrib > 0)
            if lit.size:
                occ = room.occluded(P[lit] + 2e-3 * n[lit], L[lit])
                contrib[lit[occ]] = 0.0
        light += contrib
    return np.clip(albedo * light[:, None], 0.0, 1.0)


def _trace(room: Room, pose: np.ndarray, intr: Intrinsics, ss: int, shadows: bool, colour: bool):
    """Cast (and shade) the rays of all (sub)pixels of a view, in cache-sized chunks.

    Returns t (N,) float32, surface index (N,), colour (N, 3) float32 or None, and the ray
    directions (N, 3) (camera z = 1, so that t is the z-depth), in row-major pixel order.
    """
    dirs = _pixel_rays(pose, intr, ss)
    origin = pose[:3, 3]
    n = len(dirs)
    t = np.empty(n, dtype=np.float32)
    sid = np.empty(n, dtype=np.int64)
    rgb = np.empty((n, 3), dtype=np.float32) if colour else None
    for s in range(0, n, _CHUNK):
        sl = slice(s, s + _CHUNK)
        t[sl], sid[sl] = room.cast(origin, dirs[sl])
        if colour:
            rgb[sl] = _shade(room, origin, dirs[sl], t[sl], sid[sl], intr.fx * ss, shadows)
    return t, sid, rgb, dirs


def _render_clean(room: Room, pose: np.ndarray, intr: Intrinsics, supersample: int, shadows: bool,
                  labels: bool = False):
    """Noise-free render: colour (H, W, 3) float32 in [0, 1], z-depth (H, W) float32 and the
    cosine between each depth ray and the surface normal (H, W); with ``labels`` also the
    class (H, W) uint8 of the surface hit at each pixel centre, the ray of the depth."""
    pose = np.asarray(pose, dtype=np.float64)
    h, w = intr.height, intr.width
    ss = int(supersample)
    t, sid, rgb, dirs = _trace(room, pose, intr, 1, shadows, colour=ss == 1)
    n = room.s_normal[sid]
    cos_inc = np.abs(np.einsum("ij,ij->i", n, dirs)) / np.sqrt(np.einsum("ij,ij->i", dirs, dirs))
    if ss == 1:
        rgb = rgb.reshape(h, w, 3)
    else:
        rgb = _trace(room, pose, intr, ss, shadows, colour=True)[2]
        rgb = rgb.reshape(h, ss, w, ss, 3).mean(axis=(1, 3), dtype=np.float32)
    out = (rgb, t.reshape(h, w), cos_inc.reshape(h, w).astype(np.float32))
    return out + (room.s_class[sid].reshape(h, w),) if labels else out


def _apply_sensor(
    rgb: np.ndarray, z: np.ndarray, cos_inc: np.ndarray, noise: SensorNoise, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Colour uint8 (H, W, 3) and raw depth uint16 millimetres (H, W) with 65535 invalid."""
    gain = 1.0 + noise.gain_sigma * rng.standard_normal()
    col = rgb * np.float32(gain) + np.float32(noise.color_sigma) * rng.standard_normal(
        rgb.shape, dtype=np.float32
    )
    rgb8 = np.clip(np.rint(col * 255.0), 0, 255).astype(np.uint8)
    zn = z + np.float32(noise.depth_sigma) * z * z * rng.standard_normal(z.shape, dtype=np.float32)
    valid = (z >= noise.min_depth) & (z <= noise.max_depth) & np.isfinite(z)
    valid &= cos_inc >= math.cos(math.radians(noise.max_incidence_deg)) - 1e-7
    if noise.edge_jump > 0:
        pad = np.pad(z, 1, mode="edge")
        jump = np.zeros_like(z)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            jump = np.maximum(jump, np.abs(pad[dy : dy + z.shape[0], dx : dx + z.shape[1]] - z))
        valid &= jump <= noise.edge_jump * z
    mm = np.clip(np.rint(zn * 1000.0), 1, INVALID_DEPTH - 1)
    mm[~valid] = INVALID_DEPTH
    return rgb8, mm.astype(np.uint16)


def render_view(
    room: Room,
    pose: np.ndarray,
    intrinsics: Intrinsics,
    *,
    supersample: int = 1,
    shadows: bool = True,
    noise: SensorNoise | None = None,
    rng: np.random.Generator | None = None,
    labels: bool = False,
) -> tuple[np.ndarray, ...]:
    """Render one RGB-D view of a room (and its semantic labels).

    Args:
        room: the room (:func:`make_room` or ``SceneConfig.room()``).
        pose: 4x4 camera-to-world pose (camera x right, y down, z forward).
        intrinsics: pinhole intrinsics; the image is ``intrinsics.width x height``.
        supersample: colour samples per pixel along each axis (anti-aliasing).
        shadows: cast shadows from the room's lights.
        noise: sensor effects; None gives the exact colour and depth with every pixel valid.
        rng: random generator for the noise (default: seeded with 0).
        labels: also return the class ids (:data:`CLASSES`) of the surface at each pixel centre.
    Returns:
        colour uint8 (H, W, 3) RGB and z-depth float32 (H, W) in metres, NaN where invalid,
        (and labels uint8 (H, W)). With ``noise`` the depth is quantised to millimetres as in
        the PNG files.
    """
    rgb, z, cos_inc, lab = _render_clean(room, pose, intrinsics, supersample, shadows, labels=True)
    extra = (lab,) if labels else ()
    if noise is None:
        return (np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8), z) + extra
    rgb8, mm = _apply_sensor(rgb, z, cos_inc, noise, rng if rng is not None else np.random.default_rng(0))
    depth = mm.astype(np.float32) / 1000.0
    depth[mm == INVALID_DEPTH] = np.nan
    return (rgb8, depth) + extra


# =========================================================================== trajectories
def _rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(M, 3, 3) camera-to-world rotations: looking along heading ``yaw`` (from +x towards
    +y), tilted up by ``pitch``, rolled by ``roll`` about the optical axis (radians)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    f = np.stack([cp * cy, cp * sy, sp], axis=-1)
    r0 = np.stack([sy, -cy, np.zeros_like(yaw)], axis=-1)
    d0 = np.cross(f, r0)
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    r = cr * r0 + sr * d0
    d = -sr * r0 + cr * d0
    return np.stack([r, d, f], axis=-1)


def _sparse_rays(intr: Intrinsics, nx: int = 12, ny: int = 9) -> np.ndarray:
    """(nx * ny, 3) camera-frame rays (z = 1) on a grid over the image."""
    us = (np.arange(nx) + 0.5) / nx * intr.width - 0.5
    vs = (np.arange(ny) + 0.5) / ny * intr.height - 0.5
    U, V = np.meshgrid(us, vs)
    return np.stack(
        [(U.ravel() - intr.cx) / intr.fx, (V.ravel() - intr.cy) / intr.fy, np.ones(U.size)], axis=1
    )


def _view_depths(
    room: Room, positions: np.ndarray, R: np.ndarray, rays: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M, R) z-depths and surface indices seen along the sparse rays from M camera poses."""
    dirs = np.einsum("mij,rj->mri", R, rays).reshape(-1, 3)
    origins = np.repeat(positions, len(rays), axis=0)
    t, sid = room.cast(origins, dirs)
    return t.reshape(len(positions), len(rays)), sid.reshape(len(positions), len(rays))


@dataclass(frozen=True)
class _Segment:
    """One stretch of a camera path: C1 Hermite position curve and eased angles."""

    p0: np.ndarray
    p1: np.ndarray
    t0: np.ndarray  # unit tangents at both ends
    t1: np.ndarray
    a0: np.ndarray  # (yaw, pitch, roll) at both ends (radians, yaw unwrapped)
    a1: np.ndarray
    frames: float  # duration in frames

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(s, dtype=np.float64)[:, None]
        length = float(np.linalg.norm(self.p1 - self.p0))
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        p = h00 * self.p0 + h10 * length * self.t0 + h01 * self.p1 + h11 * length * self.t1
        ease = 3 * s**2 - 2 * s**3
        return p, self.a0 + (self.a1 - self.a0) * ease

    def reversed(self) -> _Segment:
        return _Segment(self.p1, self.p0, -self.t1, -self.t0, self.a1, self.a0, self.frames)


@dataclass(frozen=True)
class _Roadmap:
    """Where the sequences of a scene walk: viewpoints spread over the free floor, visited
    in a fixed cyclic ``tour``, and the walking route between any two of them."""

    viewpoints: np.ndarray  # (K, 2)
    tour: tuple[int, ...]  # cyclic visiting order of the viewpoints
    routes: dict  # (i, j) -> (n, 2) waypoints about 1 m apart from viewpoint i to j (ending at j)
    focus: np.ndarray | None = None  # (3,) the point the cameras look towards (focus_deg > 0)


def _roadmap(room: Room, config: SceneConfig, seed: int) -> _Roadmap:
    """Viewpoints (farthest-point sampled on the free floor) and the routes between them:
    shortest walks on the free-floor grid that keep to the middle of the free space."""
    free = room._free
    rng = _rng(_TAG_VIEWPOINTS, seed, config.layout_seed)
    cells = free.cells(min_clearance=0.3)
    if len(cells) == 0:
        raise RuntimeError(f"layout {config.layout_seed}: the room has no free floor for the camera")
    if config.region_m > 0:  # a disc of the free floor, around the cell with the most free floor in it
        radius = config.region_m / 2.0
        around = np.array([(np.linalg.norm(cells - c, axis=1) <= radius).sum() for c in cells[::7]])
        centre = cells[::7][int(rng.choice(np.flatnonzero(around >= 0.9 * around.max())))]
        cells = cells[np.linalg.norm(cells - centre, axis=1) <= radius]
    chosen = [int(rng.integers(len(cells)))]
    dist = np.linalg.norm(cells - cells[chosen[0]], axis=1)
    while len(chosen) < config.viewpoints and dist.max() > 0.5:
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(cells - cells[chosen[-1]], axis=1))
    views = cells[chosen]

    # Grid graph of the free cells (8-neighbours); stepping next to the border costs more.
    grid = free.grid
    index = np.full(grid.shape, -1, dtype=np.int64)
    index[grid] = np.arange(int(grid.sum()))
    ci, cj = np.nonzero(grid)
    cost = 1.0 + 0.5 / np.maximum(ndimage.distance_transform_edt(grid) * free.res, free.res)
    rows, cols, weights = [], [], []
    for di, dj in ((1, 0), (0, 1), (1, 1), (1, -1)):
        ni, nj = ci + di, cj + dj
        ok = (ni >= 0) & (ni < grid.shape[0]) & (nj >= 0) & (nj < grid.shape[1])
        ok[ok] = grid[ni[ok], nj[ok]]
        rows.append(index[ci[ok], cj[ok]])
        cols.append(index[ni[ok], nj[ok]])
        weights.append(free.res * math.hypot(di, dj) * 0.5 * (cost[ci[ok], cj[ok]] + cost[ni[ok], nj[ok]]))
    n = len(ci)
    graph = sparse.coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    vi, vj = np.floor((views + free.half) / free.res).astype(np.int64).T
    src = index[vi, vj]
    length, pred = csgraph.dijkstra(graph, directed=False, indices=src, return_predecessors=True)

    routes = {}
    for a in range(len(views)):
        for b in range(len(views)):
            if a == b:
                continue
            path, c = [], src[b]
            while c != src[a] and c >= 0:
                path.append(c)
                c = pred[a, c]
            path.append(src[a])
            xy = np.stack([free.xs[ci[path[::-1]]], free.ys[cj[path[::-1]]]], axis=1)
            arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
            stops = np.linspace(0.0, arc[-1], max(1, int(round(arc[-1] / 1.0))) + 1)[1:]
            routes[(a, b)] = np.stack(
                [np.interp(stops, arc, xy[:, 0]), np.interp(stops, arc, xy[:, 1])], axis=1
            )

    # Tour: nearest unvisited viewpoint next (by walking distance).
    tour = [0]
    while len(tour) < len(views):
        rest = [v for v in range(len(views)) if v not in tour]
        tour.append(min(rest, key=lambda v: length[tour[-1], src[v]]))
    focus = _focus_point(room, config, views, rng) if config.focus_deg > 0 else None
    return _Roadmap(views, tuple(tour), routes, focus)


def _focus_point(room: Room, config: SceneConfig, views: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the cameras of a scan look at: from the viewpoints' centre, the heading (±30°)
    that sees the most distinct pieces of furniture and decoration at a comfortable
    distance; the focus is the mean of their hit points."""
    centre = views.mean(axis=0)
    z = float(np.mean(config.camera_height))
    n_yaw = 36
    yaw = np.linspace(-math.pi, math.pi, n_yaw, endpoint=False) + rng.uniform(0, 2 * math.pi / n_yaw)
    pitch = np.radians([-30.0, -15.0, 0.0, 10.0])
    Y, P = np.meshgrid(yaw, pitch, indexing="ij")
    dirs = np.stack([np.cos(Y) * np.cos(P), np.sin(Y) * np.cos(P), np.sin(P)], axis=-1).reshape(-1, 3)
    origin = np.array([centre[0], centre[1], z])
    t, sid = room.cast(np.repeat(origin[None], len(dirs), axis=0), dirs)
    near, far = config.view_distance
    spread = float(np.linalg.norm(views - centre, axis=1).max(initial=0.0))
    box = np.where((sid >= 6) & (t >= near) & (t <= far + spread), sid // 6, -1).reshape(n_yaw, len(pitch))
    hits = (origin + t[:, None] * dirs).reshape(n_yaw, len(pitch), 3)
    counts = np.array([len({b for b in box[(np.arange(-3, 4) + k) % n_yaw].ravel() if b >= 0})
                       for k in range(n_yaw)])
    best = np.flatnonzero(counts == counts.max())
    k = int(best[rng.integers(len(best))])
    window = (np.arange(-3, 4) + k) % n_yaw
    mask = box[window] >= 0
    if not mask.any():  # nothing but walls around: look at the wall straight ahead
        return hits[k, 1]
    return hits[window][mask].mean(axis=0)


def make_trajectory(room: Room, config: SceneConfig, seed: int, seq: int) -> np.ndarray:
    """Handheld-like camera path of one sequence: (config.frames, 4, 4) camera-to-world poses.

    The sequences of a scene walk the same tour of viewpoints spread over the free floor
    (training sequence i of n starts i/n of the way round, a test sequence where a random
    training one starts), along routes through the middle of the free floor,
    jittered, on smooth curves at about ``config.step_m`` per frame, turning at about
    ``config.step_deg`` per frame and stopping now and then to look around. The camera
    looks at surfaces ``config.view_distance`` away (preferably furniture and decorations),
    stays at ``config.camera_height``, ``_WALL_MARGIN`` from the walls and ``_CLEARANCE``
    from furniture.

    Args:
        room: the scene's room (``config.room()``).
        config: the scene config (path knobs and the image size for the field of view).
        seed: base seed of the scene.
        seq: sequence number (1-based); each one takes a different path.
    """
    if not 1 <= seq <= config.train_seqs + config.test_seqs:
        raise ValueError(
            f"sequence {seq} is not one of the config's 1..{config.train_seqs + config.test_seqs}"
        )
    road = _roadmap(room, config, seed)
    rng = _rng(_TAG_PATH, seed, config.layout_seed, seq)
    rays = _sparse_rays(config.intrinsics)
    near, far = config.view_distance
    zlo, zhi = config.camera_height
    plo, phi = np.radians(config.pitch_deg)
    step_rad = math.radians(config.step_deg)
    max_turn = math.radians(config.max_turn_deg)
    roll_sd = math.radians(config.roll_deg)
    focus_sd = math.radians(config.focus_deg)
    k = len(road.tour)
    n_steps = config.frames * config.frame_stride  # the walk; every frame_stride-th step is kept

    def views_ok(P: np.ndarray, A: np.ndarray) -> bool:
        """Whether all poses are on free floor and see surfaces at a plausible distance."""
        ok = room.is_free(P[:, :2]) & (P[:, 2] >= zlo - 0.15) & (P[:, 2] <= zhi + 0.15)
        if not ok.all():
            return False
        z, _ = _view_depths(room, P, _rotations(A[:, 0], A[:, 1], A[:, 2]), rays)
        med = np.median(z, axis=1)
        return bool(np.all((med >= 0.8 * near) & (med <= 1.1 * far) & (np.quantile(z, 0.1, axis=1) >= 0.3)))

    def pick_view(p: np.ndarray, prev_yaw: float | None, n: int = 6) -> np.ndarray | None:
        """Angles (yaw, pitch, roll) for a waypoint: among n random candidates with a good
        viewing distance, preferably one that looks at furniture and decorations."""
        if road.focus is not None:  # towards the focus, the way people film a scene
            to = road.focus[:2] - p[:2]
            yaw = math.atan2(to[1], to[0]) + rng.normal(0.0, focus_sd, n)
            if prev_yaw is not None:  # the same turn, unwrapped next to the previous heading
                yaw = prev_yaw + (yaw - prev_yaw + math.pi) % (2 * math.pi) - math.pi
        elif prev_yaw is None:
            yaw = rng.uniform(-math.pi, math.pi, n)
        else:
            yaw = prev_yaw + rng.uniform(-max_turn, max_turn, n)
        roll = np.clip(rng.normal(0.0, roll_sd, n), -3 * roll_sd, 3 * roll_sd)
        cand = np.stack([yaw, rng.uniform(plo, phi, n), roll], axis=1)
        z, sid = _view_depths(
            room, np.repeat(p[None], n, axis=0), _rotations(cand[:, 0], cand[:, 1], cand[:, 2]), rays
        )
        med = np.median(z, axis=1)
        ok = (med >= near) & (med <= far) & (np.quantile(z, 0.1, axis=1) >= 0.3)
        if not ok.any():
            return None
        w = np.where(ok, (0.15 + (sid >= 6).mean(axis=1)) ** 2, 0.0)
        return cand[int(rng.choice(n, p=w / w.sum()))]

    def place(xy: np.ndarray, spread: float, z: float) -> np.ndarray | None:
        """A free 3D point near a floor point, at a height near z."""
        xy = xy + rng.normal(0.0, spread, 2)
        if not room.is_free(xy[None])[0]:
            return None
        return np.array([xy[0], xy[1], float(np.clip(z + rng.normal(0.0, 0.15), zlo, zhi))])

    def segment(p, ang, t0, p1, ang1, t1) -> _Segment | None:
        """The stretch from (p, ang) to (p1, ang1) if all of it is valid. ``t0`` is the
        incoming direction (None: free), ``t1`` the planned direction at p1."""
        chord = p1 - p
        length = float(np.linalg.norm(chord))
        if length < 1e-6:  # look around on the spot
            t0 = t1 = np.zeros(3)
        else:
            if t0 is None:
                t0 = _turn(chord / length, rng.uniform(-0.5, 0.5))
            t1 = _turn(t1 if t1 is not None else chord / length, rng.uniform(-0.25, 0.25))
        turn = float(np.abs(ang1 - ang).sum())
        frames = max(length / config.step_m, turn / step_rad, 2.0) * rng.uniform(0.9, 1.2)
        seg = _Segment(p, p1, t0, t1, ang, ang1, frames)
        return seg if views_ok(*seg.at(np.linspace(0.0, 1.0, int(math.ceil(frames)) + 1))) else None

    def look_around(p, ang) -> _Segment | None:
        for _ in range(20):
            ang1 = pick_view(p, ang[0])
            if ang1 is not None and (seg := segment(p, ang, None, p.copy(), ang1, None)) is not None:
                return seg
        return None

    # Where to start on the tour: training sequences spread their starts over it, a test
    # sequence starts where a random training sequence starts.
    train = config.sequences["train"]
    first = train.index(seq) if seq in train else int(rng.integers(len(train)))
    pos = round(first * k / len(train)) % k
    for attempt in range(200):
        p = place(road.viewpoints[road.tour[pos]], 0.1 + 0.4 * attempt / 200, rng.uniform(zlo, zhi))
        ang = None if p is None else pick_view(p, None)
        if ang is not None:
            break
    else:
        raise RuntimeError(f"layout {config.layout_seed}: found no start view for sequence {seq}")

    segments: list[_Segment] = []
    tangent: np.ndarray | None = None
    queue: list[tuple[np.ndarray, float, np.ndarray]] = []  # next floor points, jitter, direction
    total, failures = 0.0, 0
    while total < n_steps - 1:
        seg = None
        if not queue:  # next leg of the tour
            nxt = (pos + 1) % k
            way = road.routes[(road.tour[pos], road.tour[nxt])] if k > 1 else road.viewpoints[:1]
            pts = np.concatenate([p[None, :2], way])
            for i in range(1, len(pts)):
                d = pts[min(i + 1, len(pts) - 1)] - pts[i - 1]
                d3 = np.array([d[0], d[1], 0.0]) / max(float(np.linalg.norm(d)), 1e-9)
                queue.append((pts[i], 0.3 if i == len(pts) - 1 else 0.12, d3))
            pos = nxt
            if segments and rng.uniform() < 0.25:  # stop at the viewpoint and look around
                seg = look_around(p, ang)
        if seg is None:
            xy, spread, direction = queue[0]
            for _ in range(20):
                p1 = place(xy, spread, p[2])
                ang1 = None if p1 is None else pick_view(p1, ang[0])
                if ang1 is not None and (seg := segment(p, ang, tangent, p1, ang1, direction)) is not None:
                    queue.pop(0)
                    failures = 0
                    break
        if seg is None:  # blocked: stop and look around, then walk on in any direction
            failures += 1
            if failures > 2:  # give up this waypoint
                queue.pop(0)
            seg = look_around(p, ang)
        if seg is None and segments:  # walk back along the last stretch (known to be valid)
            seg = segments[-1].reversed()
        if seg is None:
            raise RuntimeError(f"layout {config.layout_seed}: the camera of sequence {seq} cannot move")
        segments.append(seg)
        total += seg.frames
        p, ang = seg.p1, seg.a1
        tangent = seg.t1 if np.any(seg.t1) else None

    # Sample the steps at uniform times, shake them, keep every frame_stride-th.
    starts = np.concatenate([[0.0], np.cumsum([sg.frames for sg in segments])])
    times = np.arange(n_steps, dtype=np.float64)
    which = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segments) - 1)
    P = np.zeros((n_steps, 3))
    A = np.zeros((n_steps, 3))
    for i, sg in enumerate(segments):
        m = which == i
        if m.any():
            P[m], A[m] = sg.at(np.clip((times[m] - starts[i]) / sg.frames, 0.0, 1.0))
    P = (P + _shake(rng, n_steps, 3, config.shake_m))[:: config.frame_stride]
    A = (A + _shake(rng, n_steps, 3, math.radians(config.shake_deg)))[:: config.frame_stride]
    T = np.tile(np.eye(4), (config.frames, 1, 1))
    T[:, :3, :3] = _rotations(A[:, 0], A[:, 1], A[:, 2])
    T[:, :3, 3] = P
    return T


def _turn(v: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a vector about the vertical axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])


def _shake(rng: np.random.Generator, n: int, dims: int, amplitude: float) -> np.ndarray:
    """Smooth hand shake: (n, dims) sums of three sinusoids with periods of 8-60 frames,
    standard deviation ``amplitude``."""
    t = np.arange(n, dtype=np.float64)[:, None]
    out = np.zeros((n, dims))
    for _ in range(3):
        period = rng.uniform(8.0, 60.0, dims)
        phase = rng.uniform(0.0, 2 * math.pi, dims)
        out += np.sin(2 * math.pi * t / period + phase)
    return out * amplitude * math.sqrt(2.0 / 3.0)


# =========================================================================== writing
@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Make processes started inside use one BLAS / OpenMP thread each."""
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _frame_stem(scene_dir: Path, seq: int, idx: int) -> Path:
    return scene_dir / f"seq-{seq:02d}" / f"frame-{idx:06d}"


def _render_frame(task: tuple) -> tuple[int, int]:
    """Render and write one frame (runs in the worker processes)."""
    config, seed, scene_dir, seq, idx, pose = task
    room = config.room()
    rng = _rng(_TAG_FRAME, seed, config.layout_seed, seq, idx)
    rgb, z, cos_inc, label = _render_clean(room, pose, config.intrinsics, config.supersample, config.shadows,
                                           labels=True)
    rgb8, mm = _apply_sensor(rgb, z, cos_inc, config.sensor, rng)
    stem = _frame_stem(Path(scene_dir), seq, idx)
    # Fast zlib level: a third of the encoding time of the default for 10 % larger files.
    Image.fromarray(rgb8).save(stem.with_name(stem.name + ".color.png"), format="PNG", compress_level=1)
    Image.fromarray(mm).save(stem.with_name(stem.name + ".depth.png"), format="PNG", compress_level=1)
    Image.fromarray(label).save(stem.with_name(stem.name + ".label.png"), format="PNG", compress_level=1)
    stem.with_name(stem.name + ".pose.txt").write_bytes(format_pose_text(pose).encode("ascii"))
    return seq, idx


def _prepare_scene_dir(scene_dir: Path) -> None:
    """Empty a previous synthetic scene (only one that this module wrote) or create the folder."""
    if scene_dir.exists():
        if not scene_dir.is_dir():
            raise FileExistsError(f"{scene_dir}: exists and is not a folder")
        if any(scene_dir.iterdir()):
            if not (scene_dir / PROVENANCE_FILE).is_file():
                raise FileExistsError(
                    f"{scene_dir}: folder exists and was not written by the synthetic generator "
                    f"(no {PROVENANCE_FILE}); refusing to overwrite it"
                )
            shutil.rmtree(scene_dir)
    scene_dir.mkdir(parents=True, exist_ok=True)


def _write_scene_files(scene_dir: Path, config: SceneConfig, seed: int) -> None:
    """Provenance and intrinsics files (the split files come last, once the frames exist)."""
    cam = config.intrinsics.as_dict()
    intr = {"color": cam, "depth": dict(cam), "depth_registered": True}
    (scene_dir / INTRINSICS_FILE).write_text(yaml.safe_dump(intr, sort_keys=False), encoding="ascii")
    (scene_dir / CLASSES_FILE).write_text(yaml.safe_dump(
        {"format": "uint8 class ids in frame-XXXXXX.label.png", "classes": list(CLASSES)}, sort_keys=False),
        encoding="ascii")
    prov = {
        "generator": "reloc_sim.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "room": config.room().describe(),
        "config": config.as_dict(),
    }
    (scene_dir / PROVENANCE_FILE).write_text(yaml.safe_dump(prov, sort_keys=False), encoding="ascii")


def _generate(
    out_root: Path, configs: list[SceneConfig], seed: int, workers: int, log: Callable[[str], None] | None
) -> list[Path]:
    """Write several scenes, rendering all frames with one pool of ``workers`` processes."""
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"scene names must differ, got {names}")
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            # "spawn": fresh workers whatever threads the caller runs; leaving the block
            # terminates them (all their frames are written by then, or an error is raised).
            with _single_threaded_children():
                pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
        return [_generate_one(Path(out_root), config, seed, pool, log) for config in configs]


def _generate_one(out_root: Path, config: SceneConfig, seed: int, pool, log) -> Path:
    """Write one scene; frames are rendered by ``pool`` (or here when it is None)."""
    t_start = time.perf_counter()
    scene_dir = out_root / config.name
    _prepare_scene_dir(scene_dir)
    room = config.room()
    _write_scene_files(scene_dir, config, seed)
    if log:
        log(
            f"[{config.name}] {room.describe()}; {config.width}x{config.height}, "
            f"{config.train_seqs}+{config.test_seqs} sequences x {config.frames} frames"
        )
    split_of = {s: split for split, seqs in config.sequences.items() for s in seqs}
    tasks = []
    for seq in sorted(split_of):
        (scene_dir / f"seq-{seq:02d}").mkdir()
        poses = make_trajectory(room, config, seed, seq)
        for idx, T in enumerate(poses):
            # Render the pose exactly as written (8 significant digits).
            T = parse_pose_text(format_pose_text(T))
            tasks.append((config, int(seed), str(scene_dir), seq, idx, T))
    results = pool.imap(_render_frame, tasks, chunksize=4) if pool is not None else map(_render_frame, tasks)
    done = {s: 0 for s in split_of}
    count = 0
    for seq, _ in results:
        done[seq] += 1
        count += 1
        if done[seq] == config.frames and log:
            log(
                f"[{config.name}] seq-{seq:02d} ({split_of[seq]}): {config.frames} frames "
                f"[{count}/{len(tasks)}] {time.perf_counter() - t_start:.1f} s"
            )
    if count != len(tasks):
        raise RuntimeError(f"{scene_dir}: rendered {count} of {len(tasks)} frames")
    # Split files last: a scene interrupted half-way does not open as a scene.
    for split, fname in SPLIT_FILES.items():
        (scene_dir / fname).write_bytes(format_split_text(config.sequences[split]).encode("ascii"))
    return scene_dir


def generate_scene(
    out_root: Path | str,
    config: SceneConfig | str,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Render one synthetic scene in the 7-Scenes layout.

    Args:
        out_root: folder that receives the scene folder (created if needed).
        config: a :class:`SceneConfig` or a preset name; only its first scene is made.
        seed: base seed (>= 0); the same seed writes byte-identical files.
        workers: rendering processes (the output does not depend on it).
        progress: print a line per sequence.
    Returns:
        The scene folder ``out_root / config.name``. A previous synthetic scene there
        is replaced; any other existing non-empty folder raises ``FileExistsError``.
    """
    config = scene_configs(config)[0]
    return _generate(Path(out_root), [config], seed, workers, _print if progress else None)[0]


def generate_dataset(
    out_root: Path | str,
    configs_or_preset: SceneConfig | str | Sequence[SceneConfig],
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Render several scenes (``synth_a``, ``synth_b``, ...) into ``out_root``.

    Args:
        out_root: the dataset root folder.
        configs_or_preset: a preset name or a config (making ``config.scenes`` scenes), or
            a list of configs (each making its own scenes).
        seed: base seed (>= 0) shared by all scenes.
        workers: rendering processes (the output does not depend on it).
        progress: print a line per sequence.
    Returns:
        The scene folders, in order.
    """
    if isinstance(configs_or_preset, (SceneConfig, str)):
        configs = scene_configs(configs_or_preset)
    else:
        configs = [c for cfg in configs_or_preset for c in scene_configs(cfg)]
    return _generate(Path(out_root), configs, seed, workers, _print if progress else None)


def _print(msg: str) -> None:
    print(msg, flush=True)


# =========================================================================== command line
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m reloc_sim --out DIR --preset tiny ...``."""
    p = argparse.ArgumentParser(
        prog="python -m reloc_sim",
        description="Render deterministic synthetic scenes in the 7-Scenes layout.",
    )
    p.add_argument("--out", type=Path, help="dataset root folder (scenes go into sub-folders)")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="base config (default: demo)")
    p.add_argument("--config", type=Path, help="YAML file with SceneConfig fields overriding the preset")
    p.add_argument("--scenes", type=int, help="number of scenes (synth_a, synth_b, ...)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="rendering processes (default: all cores)"
    )
    p.add_argument("--width", type=int, help="image width")
    p.add_argument("--height", type=int, help="image height")
    p.add_argument("--frames", type=int, help="frames per sequence")
    p.add_argument("--train-seqs", type=int, help="training sequences per scene")
    p.add_argument("--test-seqs", type=int, help="test sequences per scene")
    p.add_argument("--supersample", type=int, help="colour samples per pixel along each axis")
    p.add_argument("--layout-seed", type=int, help="layout seed of the first scene")
    p.add_argument("--name", help="scene folder name (default: synth_<letter>)")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)

    if args.list_presets:
        for name, c in PRESETS.items():
            print(
                f"{name:10s} {c.scenes} scene(s) x {c.train_seqs}+{c.test_seqs} sequences x {c.frames} frames, "
                f"{c.width}x{c.height}, supersample {c.supersample}"
            )
        return 0
    if args.out is None:
        p.error("--out is required")
    try:
        config = PRESETS[args.preset]
        if args.config is not None:
            loaded = yaml.safe_load(args.config.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{args.config}: expected a mapping of SceneConfig fields")
            config = SceneConfig.from_dict(loaded.get("config", loaded), base=config)
        overrides = {
            "scenes": args.scenes,
            "width": args.width,
            "height": args.height,
            "frames": args.frames,
            "train_seqs": args.train_seqs,
            "test_seqs": args.test_seqs,
            "supersample": args.supersample,
            "layout_seed": args.layout_seed,
            "name": args.name,
        }
        config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, TypeError, OSError, yaml.YAMLError) as e:
        p.error(str(e))
    t0 = time.perf_counter()
    dirs = generate_dataset(args.out, config, seed=args.seed, workers=args.workers, progress=not args.quiet)
    frames = config.total_frames * len(dirs)
    secs = time.perf_counter() - t0
    print(
        f"wrote {frames} frames in {len(dirs)} scene(s) ({', '.join(d.name for d in dirs)}) to {args.out} "
        f"in {secs:.1f} s ({1000 * secs / max(frames, 1):.0f} ms/frame, {args.workers} worker(s))"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
