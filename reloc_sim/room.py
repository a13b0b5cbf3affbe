"""The room model of the synthetic scenes: geometry, ray casting, free floor, and its layout.

A :class:`Room` is an axis-aligned box room (floor, ceiling, four walls) with furniture and
wall decorations made of axis-aligned boxes (:mod:`reloc_sim.furniture`), every surface
texture-mapped (:mod:`reloc_sim.textures`) and labelled with a semantic class
(:data:`CLASSES`), lit by point lights. :meth:`Room.cast` finds the closest hits of rays
against the room and a two-level box hierarchy (pieces, then their boxes).

:func:`make_room` builds the furnished room of a layout seed: a door, furniture against the
walls, a rug, a table with chairs, free-standing crates and plants, framed pictures, a
whiteboard and a window, and the lights. The layout only depends on the layout seed.

Conventions: world frame metres, z up, floor at z = 0, room centred on x = y = 0.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from reloc_sim.furniture import (
    WALL_PIECES,
    Palette,
    Part,
    Placement,
    chair,
    crates,
    decoration,
    door,
    framed,
    overlap,
    plant,
    table_parts,
    wall_placement,
)
from reloc_sim.seeds import TAG_RELIGHT, TAG_ROOM, make_rng
from reloc_sim.textures import FIRST_PROCEDURAL, TEX_INDEX, TEX_SIZE, Material, texture_aspect

#: The semantic classes of the label images (``frame-XXXXXX.label.png``, uint8 class ids:
#: the index in this tuple). Room faces are floor, wall and ceiling; a piece of furniture or
#: decoration takes its kind, and the parts that are something else name it (the books on a
#: shelf, a desk's screen, the boxes and book stacks on tables). Written to ``classes.yaml``.
CLASSES = ("floor", "wall", "ceiling", "door", "window", "picture", "whiteboard", "bookshelf", "book", "cabinet",
           "wardrobe", "sofa", "desk", "screen", "table", "chair", "crates", "plant", "rug", "object")
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}

#: Default room size range (x, y, z) in metres and number of lights (SceneConfig's defaults).
DEFAULT_ROOM_MIN = (4.0, 3.0, 2.5)
DEFAULT_ROOM_MAX = (7.0, 6.0, 3.0)
DEFAULT_LIGHTS = 2

_EPS = 1e-4  # ray parameter below which a hit counts as the ray's own origin
_FREE_RES = 0.05  # metres per cell of the free-floor grid
_WALL_MARGIN = 0.45  # the camera stays this far (m) from the walls
_CLEARANCE = 0.35  # ... and this far (horizontally) from furniture


@dataclass(frozen=True)
class RoomGroup:
    """One piece of furniture or decoration: the boxes ``start:stop`` of its room.

    ``walkable`` groups (rugs) are flat things that a person may walk over.
    """

    kind: str
    start: int
    stop: int
    walkable: bool = False


class Room:
    """A furnished box room: the geometry, the textures of its surfaces and its lights.

    World frame: metres, z up, floor at z = 0, room centred on x = y = 0 so that it spans
    ``[-size/2, size/2]`` in x and y and ``[0, size[2]]`` in z. Build one with
    :func:`make_room`.

    Args:
        layout_seed: the seed that made it.
        size: room size (x, y, z) in metres.
        boxes: the furniture and decoration boxes (lo (3,), hi (3,), {face index: material},
            with an optional 'label': the class of the box when it is not its group's kind).
        groups: which boxes make each piece, in order.
        wall_materials: the materials of the 6 room faces (x low, x high, y low, y high,
            floor, ceiling).
        lights: (L, 3) light positions.
        light_power: (L,) their strengths.
        ambient: ambient light level.

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
        boxes: Sequence[tuple[np.ndarray, np.ndarray, dict[int, Material]]],
        groups: Sequence[RoomGroup],
        wall_materials: Sequence[Material],
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
        self.uses_procedural = bool((self.s_tex >= FIRST_PROCEDURAL).any())
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
        self._relit: Room | None = None

    def relit(self) -> Room:
        """The same room under other lighting, as at another time of day (the same on every
        call): one lamp off when there are two or more, the others 0.6-1.5 times as strong,
        one moved by up to 1.5 m under the ceiling, the ambient level 0.6-1.3 times."""
        if self._relit is None:
            rng = make_rng(TAG_RELIGHT, self.layout_seed)
            lights, power = self.lights.copy(), self.light_power * rng.uniform(0.6, 1.5, len(self.light_power))
            if len(power) > 1:
                power[int(rng.integers(len(power)))] = 0.0
            k = int(rng.integers(len(lights)))
            step = rng.uniform(-1.5, 1.5, 2)
            lights[k, :2] = np.clip(lights[k, :2] + step, self.lo[:2] + 0.3, self.hi[:2] - 0.3)
            other = copy.copy(self)
            other.lights, other.light_power = lights, power
            other.ambient = self.ambient * float(rng.uniform(0.6, 1.3))
            other._relit = other
            self._relit = other
        return self._relit

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
    """Per-axis origins (floats or arrays), inverse directions and float32 directions.

    Args:
        origins: (3,) one origin for all rays, or (N, 3).
        dirs: (N, 3) ray directions.
    """
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
    """Ray-box slab test: entry and exit parameters, and the entry parameter per axis.

    Args:
        o, inv: per-axis ray origins and inverse directions (as :func:`_ray_setup` gives them).
        lo, hi: (3,) corners of the box.
    """
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


def _surface(lo, hi, face: int, outward: bool, mat: Material):
    """Shading and texture-mapping parameters of one axis-aligned face.

    Args:
        lo, hi: (3,) corners of the box (or of the room).
        face: which face, 2 * axis + side (side 0: the low one).
        outward: the normal points out of the box (False for the room's faces).
        mat: the face's material.

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
    aspect = texture_aspect(mat.texture)
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
    return TEX_INDEX[mat.texture], mat.tint, normal, uax, vax, uv, TEX_SIZE / min(tu, tv)


class _FreeFloor:
    """Grid of floor cells where the camera may be: inside the walls by ``_WALL_MARGIN``,
    ``_CLEARANCE`` away from non-walkable furniture, in the largest connected area.

    Args:
        room: the room (its size and footprints).
    """

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
        """(N,) whether each floor position of ``xy`` (N, 2) is in a free cell."""
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


class _LayoutBuilder:
    """Collects the boxes of a room's pieces and checks where new pieces fit.

    Args:
        size: (3,) room size (m).
    """

    def __init__(self, size: np.ndarray):
        self.size = size
        self.boxes: list[tuple[np.ndarray, np.ndarray, dict[int, Material]]] = []
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

    def world_parts(self, parts: list[Part], place: Placement):
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
        return not any(overlap((lo, hi), o, margin) for o in others)

    def free_enough(self, min_area: float) -> bool:
        """Whether the pieces so far leave at least ``min_area`` (m^2) of free floor for the camera."""
        return _free_area_of(self.size, self.bounds()) >= min_area

    def add(self, kind: str, parts, walkable: bool = False) -> None:
        """Add a piece of this kind (:data:`CLASSES`) made of these world boxes."""
        start = len(self.boxes)
        self.boxes.extend(parts)
        self.groups.append(RoomGroup(kind, start, len(self.boxes), walkable))

    def undo(self) -> None:
        """Remove the last piece."""
        g = self.groups.pop()
        del self.boxes[g.start :]


def make_room(
    layout_seed: int = 0,
    *,
    room_min: Sequence[float] = DEFAULT_ROOM_MIN,
    room_max: Sequence[float] = DEFAULT_ROOM_MAX,
    lights: int = DEFAULT_LIGHTS,
    texture_families: Sequence[str] = (),
    rooms: int = 1,
    repeat: bool = False,
) -> Room:
    """Build the furnished room of a layout seed (deterministic).

    Args:
        layout_seed: which room (>= 0).
        room_min: smallest room size (x, y, z) in metres.
        room_max: largest room size (x, y, z) in metres.
        lights: number of point lights under the ceiling.
        texture_families: the texture families of its materials (empty: every photograph,
            drawn as before families existed; see :class:`reloc_sim.furniture.Palette`).
        rooms: 1, or 2: a wall with a doorway across the longer side.
        repeat: repeated appearance (:class:`reloc_sim.furniture.Palette`): all pictures show
            one photograph with one tint, the four walls share one material, and each kind of
            material is the same everywhere. The materials draw as without it, so the furniture
            stands where it does without it (the wall decorations, whose widths follow their
            photographs, may differ).
    """
    rng = make_rng(TAG_ROOM, layout_seed)
    size = np.array([rng.uniform(a, b) for a, b in zip(room_min, room_max)])
    X, Y, Z = size
    pal = Palette(rng, texture_families, repeat=repeat)
    build = _LayoutBuilder(size)
    walls = [
        pal.tiled(("brick", "cell", "page", "text", "gravel"), (0.5, 1.4), val=(0.7, 1.0)) for _ in range(4)
    ]
    floor = pal.tiled(
        ("checkerboard", "gravel", "grass", "brick", "moon", "cell"), (0.8, 1.8), val=(0.45, 0.85)
    )
    ceiling = pal.tiled(("moon", "cell"), (1.5, 2.5), sat=(0.0, 0.1), val=(0.85, 1.0))
    wall_len = (Y, Y, X, X)
    keep_out = [_add_door(build, pal, rng, wall_len)]  # floor zones kept clear (in front of the door)
    if rooms == 2:
        keep_out += _add_partition(build, walls[0], rng)
    _add_wall_pieces(build, pal, rng, wall_len, keep_out)

    # Free-standing pieces: keep a large free area for the camera.
    min_area = max(2.5, 0.25 * X * Y)
    if rng.uniform() < 0.6:  # rug, walkable
        _add_rug(build, pal, rng)
    if rng.uniform() < 0.85:  # a table with chairs
        _add_table(build, pal, rng, keep_out, min_area)
    _add_standing_pieces(build, pal, rng, keep_out, min_area)
    _add_decorations(build, pal, rng, wall_len)
    lpos, power, ambient = _lights(rng, size, lights)
    return Room(layout_seed, size, build.boxes, build.groups, walls + [floor, ceiling], lpos, power, ambient)


def _add_partition(build: _LayoutBuilder, material: Material, rng: np.random.Generator) -> list[tuple]:
    """Split the room in two with a 12 cm wall across its longer side, near the middle, with
    a doorway 1.0-1.4 m wide and 2.05 m high.

    Args:
        build: the room being built.
        material: the wall's material.
        rng: the room's random generator.
    Returns:
        The floor zones (lo, hi) on both sides of the doorway that the furniture keeps clear of.
    """
    size = build.size
    a = 0 if size[0] >= size[1] else 1  # the partition is a plane x = c (a = 0) or y = c (a = 1)
    b = 1 - a
    half, t, dw, dh = size[b] / 2, 0.06, rng.uniform(1.0, 1.4), 2.05
    s = rng.uniform(-half + 0.6 + dw / 2, half - 0.6 - dw / 2)

    def box(c, lo_b, hi_b, z0, z1, pad=t):
        lo, hi = np.zeros(3), np.zeros(3)
        lo[a], hi[a], lo[b], hi[b], lo[2], hi[2] = c - pad, c + pad, lo_b, hi_b, z0, z1
        return lo, hi

    for _ in range(50):  # clear of the door
        c = rng.uniform(-0.12, 0.12) * size[a]
        if not any(overlap(box(c, -half, half, 0.0, size[2]), o, 0.1) for o in build.bounds(True)):
            break
    faces = dict.fromkeys(range(6), material)
    build.add("wall", [(*box(c, -half, s - dw / 2, 0.0, size[2]), faces)])
    build.add("wall", [(*box(c, s + dw / 2, half, 0.0, size[2]), faces)])
    # the lintel is no obstacle on the floor: walkable, as a rug (the camera passes under it)
    build.add("wall", [(*box(c, s - dw / 2, s + dw / 2, dh, size[2]), faces)], walkable=True)
    return [box(c, s - dw / 2 - 0.1, s + dw / 2 + 0.1, 0.0, dh, pad=1.0)]


def _add_door(build: _LayoutBuilder, pal: Palette, rng: np.random.Generator, wall_len) -> tuple:
    """Put a door on a random wall.

    Args:
        build: the room being built.
        pal, rng: the room's materials and random generator.
        wall_len: (4,) length (m) of each wall.
    Returns:
        The box (lo, hi) in front of the door that the furniture keeps clear of.
    """
    wall = int(rng.integers(4))
    s = rng.uniform(-wall_len[wall] / 2 + 0.7, wall_len[wall] / 2 - 0.7)
    place = wall_placement(build.size, wall, s)
    dw, dh = rng.uniform(0.85, 0.95), rng.uniform(2.0, min(2.1, build.size[2] - 0.2))
    build.add("door", build.world_parts(door(pal, dw, dh), place))
    return place.box((-dw / 2 - 0.1, 0, 0), (dw / 2 + 0.1, 1.0, dh))


def _add_wall_pieces(build: _LayoutBuilder, pal: Palette, rng: np.random.Generator, wall_len, keep_out) -> None:
    """Put furniture against the walls (:data:`reloc_sim.furniture.WALL_PIECES`), about one
    piece per 4.5 m of wall.

    Args:
        build: the room being built.
        pal, rng: the room's materials and random generator.
        wall_len: (4,) length (m) of each wall.
        keep_out: boxes (lo, hi) that the pieces keep clear of.
    """
    X, Y = build.size[:2]
    kinds = list(WALL_PIECES)
    weights = np.array([WALL_PIECES[k][1] for k in kinds], dtype=np.float64)
    target = int(2 * (X + Y) / 4.5) + int(rng.integers(1, 4))
    placed = 0
    count = {k: 0 for k in kinds}
    for _ in range(100):
        if placed >= target:
            break
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if count[kind] >= WALL_PIECES[kind][2]:
            continue
        parts = WALL_PIECES[kind][0](pal, rng)
        wall = int(rng.integers(4))
        half = max(abs(p[i][0]) for p in parts for i in (0, 1))
        room_half = wall_len[wall] / 2
        if half > room_half - 0.05:
            continue
        place = wall_placement(build.size, wall, rng.uniform(-room_half + half + 0.02, room_half - half - 0.02))
        world = build.world_parts(parts, place)
        if build.fits(world, 0.05, keep_out):
            build.add(kind, world)
            placed += 1
            count[kind] += 1


def _add_rug(build: _LayoutBuilder, pal: Palette, rng: np.random.Generator) -> None:
    """Put a walkable rug on the floor, 0.6 m or more from the walls (if the room is large enough).

    Args:
        build: the room being built.
        pal, rng: the room's materials and random generator.
    """
    X, Y = build.size[:2]
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


def _add_table(build: _LayoutBuilder, pal: Palette, rng: np.random.Generator, keep_out, min_area: float) -> None:
    """Put a table with up to four chairs somewhere in the room (up to 30 tries).

    Args:
        build: the room being built.
        pal, rng: the room's materials and random generator.
        keep_out: boxes (lo, hi) that the pieces keep clear of.
        min_area: free floor area (m^2) that must be left for the camera.
    """
    size = build.size
    for _ in range(30):
        a, d = rng.uniform(1.0, 1.7), rng.uniform(0.65, 0.95)
        axis = int(rng.integers(2))
        U, W = ((1, 0), (0, 1)) if axis == 0 else ((0, 1), (-1, 0))
        ext = np.array([a, d]) if axis == 0 else np.array([d, a])
        lim = size[:2] / 2 - ext / 2 - 1.0
        if np.any(lim <= 0):
            break
        c = (rng.uniform(-lim[0], lim[0]), rng.uniform(-lim[1], lim[1]))
        place = Placement(c, U, W)
        table = build.world_parts(
            table_parts(pal, rng, a, d, rng.uniform(0.72, 0.76), -d / 2, objects=True), place
        )
        if not build.fits(table, 0.8, keep_out):
            continue
        build.add("table", table)
        if not build.free_enough(min_area):
            build.undo()
            continue
        wood = pal.wood()
        for side in (-1, 1):
            for u in (-a / 4, a / 4):
                if rng.uniform() < 0.5:
                    continue
                parts = chair(pal, rng, wood)
                depth = max(hi[1] for _, hi, _ in parts)
                # The chair's +w runs from its back towards the table, 12 cm from it.
                toward = (-side * W[0], -side * W[1])
                off = side * (d / 2 + 0.12 + depth)
                origin = (c[0] + W[0] * off + U[0] * u, c[1] + W[1] * off + U[1] * u)
                world = build.world_parts(parts, Placement(origin, (-toward[1], toward[0]), toward))
                if build.fits(world, 0.05, keep_out):
                    build.add("chair", world)
                    if not build.free_enough(min_area):
                        build.undo()
        break


def _add_standing_pieces(
    build: _LayoutBuilder, pal: Palette, rng: np.random.Generator, keep_out, min_area: float
) -> None:
    """Maybe put crates and a plant somewhere in the room, 0.9 m from everything else.

    Args:
        build: the room being built.
        pal, rng: the room's materials and random generator.
        keep_out: boxes (lo, hi) that the pieces keep clear of.
        min_area: free floor area (m^2) that must be left for the camera.
    """
    X, Y = build.size[:2]
    for kind, maker, p in (("crates", crates, 0.4), ("plant", plant, 0.4)):
        if rng.uniform() >= p:
            continue
        parts = maker(pal, rng)
        for _ in range(20):
            c = (rng.uniform(-X / 2 + 0.8, X / 2 - 0.8), rng.uniform(-Y / 2 + 0.8, Y / 2 - 0.8))
            world = build.world_parts(parts, Placement(c, (1, 0), (0, 1)))
            if build.fits(world, 0.9, keep_out):
                build.add(kind, world)
                if build.free_enough(min_area):
                    break
                build.undo()


def _add_decorations(build: _LayoutBuilder, pal: Palette, rng: np.random.Generator, wall_len) -> None:
    """Hang wall decorations: framed pictures, maybe a whiteboard and a window.

    Args:
        build: the room being built.
        pal, rng: the room's materials and random generator.
        wall_len: (4,) length (m) of each wall.
    """
    Z = build.size[2]
    decorations = [("window", 0.5), ("whiteboard", 0.5)] + [("picture", 1.0)] * int(rng.integers(4, 10))
    for kind, p in decorations:
        if rng.uniform() >= p:
            continue
        for _ in range(30):
            wall = int(rng.integers(4))
            pic, ph, pw, frame, zc = decoration(kind, pal, rng)
            H, Wd = ph + 2 * frame, pw + 2 * frame
            zc = min(zc, Z - 0.15 - H / 2)
            if Wd > wall_len[wall] - 0.3:
                continue
            s = rng.uniform(-wall_len[wall] / 2 + Wd / 2 + 0.1, wall_len[wall] / 2 - Wd / 2 - 0.1)
            parts = framed(kind, pal, pic, ph, pw, frame, zc)
            world = build.world_parts(parts, wall_placement(build.size, wall, s))
            if build.fits(world, 0.05, walkable=True):
                build.add(kind, world)
                break


def _lights(rng: np.random.Generator, size: np.ndarray, lights: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Point lights under the ceiling.

    Args:
        rng: the room's random generator.
        size: (3,) room size (m).
        lights: number of lights.
    Returns:
        (L, 3) light positions, (L,) their strengths and the ambient light level.
    """
    X, Y, Z = size
    lpos = np.array(
        [[rng.uniform(-0.3 * X, 0.3 * X), rng.uniform(-0.3 * Y, 0.3 * Y), Z - 0.12] for _ in range(lights)]
    )
    power = np.full(lights, rng.uniform(1.6, 2.0) / lights) * (1.0 + 0.15 * (lights > 1))
    ambient = float(rng.uniform(0.45, 0.55))
    return lpos, power, ambient


def _free_area_of(size: np.ndarray, footprints) -> float:
    """Free floor area (m^2) left for the camera by these footprints (boxes (lo, hi)) in a
    room of this (3,) size (m): the largest connected area, on a 10 cm grid."""
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
