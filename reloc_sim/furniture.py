"""Furniture and decorations of the synthetic rooms, and the materials they are made of.

A piece is a list of axis-aligned boxes (:data:`Part`) in a local frame: u along the wall
(or the long side), w away from the wall (into the room), z up. A :class:`Placement` maps
that frame into the world, against a wall (:func:`wall_placement`) or free-standing.
:func:`reloc_sim.room.make_room` picks, sizes and places the pieces; every random choice
comes from the room's generator, in a fixed order.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reloc_sim.textures import PICTURE_TEXTURES, Material, family_textures, is_gray, texture_aspect


class Palette:
    """Random materials for one room.

    Args:
        rng: the room's random generator (every material draws from it).
        families: texture families (:data:`reloc_sim.textures.TEXTURE_FAMILIES`) the room
            is made of; empty: every photograph, by the name lists of each kind of material
            (the rooms made before families existed, drawn exactly as then).
        repeat: repeated appearance: every call of a kind of material (a method with the same
            arguments: :meth:`picture`, :meth:`wood`, :meth:`paint`, :meth:`fabric`, the four
            walls' :meth:`tiled`, a :meth:`texture` name ...) returns the material of its first
            call in the room, so that all pictures show the same photograph with the same tint
            and all walls share one material. Every call still makes its random draws, as
            without ``repeat``, so that the room's other draws (its layout) stay the same.
    """

    def __init__(self, rng: np.random.Generator, families: Sequence[str] = (), repeat: bool = False):
        self.rng = rng
        self.materials, self.pictures = family_textures(tuple(families)) if families else ((), ())
        self.repeat = bool(repeat)
        self._first: dict[tuple, object] = {}

    def _once(self, key: tuple, drawn):
        """``drawn`` (just drawn), or, with ``repeat``, what the first call of this ``key`` drew."""
        return self._first.setdefault(key, drawn) if self.repeat else drawn

    def texture(self, name: str, picture: bool = False) -> str:
        """``name``, or, in a room of texture families, one of its materials (``picture``:
        pictures) instead: no texture outside the families shows."""
        pool = self.pictures if picture else self.materials
        return self._once(("texture", name, picture), str(self.rng.choice(pool)) if pool else name)

    def tint(self, sat=(0.05, 0.45), val=(0.6, 0.95), hue=(0.0, 1.0)) -> tuple[float, float, float]:
        """A random RGB colour (4 decimals) with saturation, value and hue in these ranges."""
        h = self.rng.uniform(*hue) % 1.0
        rgb = colorsys.hsv_to_rgb(h, self.rng.uniform(*sat), self.rng.uniform(*val))
        return tuple(round(float(c), 4) for c in rgb)

    def tiled(self, names: Sequence[str], tile: tuple[float, float], **tint) -> Material:
        """A tiled material: one of the textures ``names``, a copy ``tile`` (range, m) high,
        at a random offset, tinted (``tint``: ranges for :meth:`tint`)."""
        name = str(self.rng.choice(self.materials or names))
        mat = Material(
            name, self.tint(**tint), float(self.rng.uniform(*tile)), tuple(self.rng.uniform(0, 2, 2))
        )
        return self._once(("tiled", tuple(names), tuple(tile), tuple(sorted(tint.items()))), mat)

    def picture(self, names: Sequence[str] = PICTURE_TEXTURES, **tint) -> Material:
        """A picture fitted once on its face: one of ``names``; a grey one is tinted (``tint``:
        ranges for :meth:`tint`), a colour one only dimmed a little."""
        key = ("picture", tuple(names), tuple(sorted(tint.items())))
        name = str(self.rng.choice(self.pictures or names))
        if is_gray(name):
            return self._once(key, Material(name, self.tint(**(tint or {"sat": (0.2, 0.6), "val": (0.75, 1.0)}))))
        v = float(self.rng.uniform(0.85, 1.0))
        return self._once(key, Material(name, (v, v, v)))

    def wood(self) -> Material:
        """A brownish tiled material."""
        return self.tiled(
            ("gravel", "cell", "moon", "grass", "coins", "brick"),
            (0.4, 1.0),
            sat=(0.25, 0.6),
            val=(0.35, 0.8),
            hue=(0.04, 0.12),
        )

    def paint(self) -> Material:
        """A pale tiled material."""
        return self.tiled(("moon", "cell", "gravel", "coins"), (0.6, 1.4), sat=(0.0, 0.5), val=(0.5, 0.95))

    def fabric(self) -> Material:
        """A coloured, finely tiled material."""
        return self.tiled(
            ("grass", "gravel", "cell", "brick", "checkerboard"), (0.2, 0.5), sat=(0.3, 0.8), val=(0.35, 0.8)
        )


#: One box of a piece in its local frame: (lo, hi, {face name: material}). The faces are
#: 'front' (+w), 'back', 'left' (-u), 'right' (+u), 'top', 'bottom'; others use 'body'. An
#: optional 'label' entry names the box's class when it is not the piece's kind (a book).
#: The piece builders below take the room's :class:`Palette` and random generator.
Part = tuple[tuple[float, float, float], tuple[float, float, float], dict]


def _bookshelf(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """A bookshelf with books on its shelves."""
    a, d, h, b = rng.uniform(0.8, 1.2), rng.uniform(0.3, 0.4), rng.uniform(1.6, 2.1), 0.025
    body = pal.wood()
    parts: list[Part] = [
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


def _cabinet(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """A low cabinet with 1-3 doors and things on top."""
    a, d, h = rng.uniform(0.8, 1.6), rng.uniform(0.4, 0.6), rng.uniform(0.7, 1.1)
    body = pal.wood() if rng.uniform() < 0.6 else pal.paint()
    parts: list[Part] = [
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


def _wardrobe(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """A tall wardrobe with two doors."""
    a, d, h = rng.uniform(0.9, 1.5), rng.uniform(0.55, 0.62), rng.uniform(1.9, 2.2)
    body = pal.wood() if rng.uniform() < 0.6 else pal.paint()
    parts: list[Part] = [((-a / 2, 0, 0), (a / 2, d, h), {"body": body})]
    door = pal.picture() if rng.uniform() < 0.4 else pal.wood()
    for u0, u1 in ((-a / 2 + 0.02, -0.01), (0.01, a / 2 - 0.02)):
        parts.append(((u0, d, 0.1), (u1, d + 0.015, h - 0.05), {"front": door, "body": body}))
    return parts


def _sofa(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """A sofa with cushions."""
    a, d = rng.uniform(1.6, 2.3), rng.uniform(0.8, 0.95)
    fabric = pal.fabric()
    parts: list[Part] = [
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


def table_parts(pal: Palette, rng, a: float, d: float, h: float, w0: float, objects: bool) -> list[Part]:
    """A table top on four legs.

    Args:
        pal, rng: the room's materials and random generator.
        a: length along u (m).
        d: depth along w (m), from ``w0`` to ``w0 + d``.
        h: height of the top (m).
        w0: where the table starts along w (m).
        objects: put 0-3 boxes on it.
    """
    top = pal.picture() if rng.uniform() < 0.35 else pal.wood()
    legs = pal.paint()
    parts: list[Part] = [((-a / 2, w0, h - 0.04), (a / 2, w0 + d, h), {"top": top, "body": pal.wood()})]
    for u in (-a / 2 + 0.03, a / 2 - 0.08):
        for w in (w0 + 0.03, w0 + d - 0.08):
            parts.append(((u, w, 0), (u + 0.05, w + 0.05, h - 0.04), {"body": legs}))
    if objects:
        parts += _tabletop_objects(pal, rng, (-a / 2, a / 2), (w0 + 0.05, w0 + d - 0.05), h)
    return parts


def _tabletop_objects(pal: Palette, rng, urange, wrange, z: float) -> list[Part]:
    """0-3 boxes (book stacks, printed boxes) standing on a surface at height z (m) that spans
    ``urange`` (u0, u1) and ``wrange`` (w0, w1)."""
    parts: list[Part] = []
    for _ in range(int(rng.integers(0, 4))):
        su, sw, sz = rng.uniform(0.12, 0.35), rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.35)
        if urange[1] - urange[0] < su + 0.1 or wrange[1] - wrange[0] < sw:
            continue
        u = rng.uniform(urange[0] + 0.05, urange[1] - su - 0.05)
        w = rng.uniform(wrange[0], wrange[1] - sw)
        box = ((u, w, z), (u + su, w + sw, z + sz))
        if any(overlap(box, (p[0], p[1])) for p in parts):
            continue
        parts.append((*box, {"body": pal.picture(), "top": pal.picture(), "label": "object"}))
    return parts


def _desk(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """A desk with a screen and a keyboard-like pad."""
    a, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
    parts = table_parts(pal, rng, a, d, h, 0.0, objects=False)
    sw = rng.uniform(0.45, 0.65)
    su = rng.uniform(-a / 2 + 0.05, a / 2 - sw - 0.05)
    screen = pal.picture(
        ("astronaut", "rocket", "hubble_deep_field", "coffee", "chelsea", "stereo_motorcycle", "colorwheel")
    )
    dark = Material(pal.texture("moon"), (0.15, 0.15, 0.17), 0.5)
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


def crates(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """One or two stacked printed crates."""
    parts: list[Part] = []
    s0 = rng.uniform(0.35, 0.6)
    parts.append(((-s0 / 2, 0, 0), (s0 / 2, s0, s0), {"body": pal.picture(), "top": pal.wood()}))
    if rng.uniform() < 0.6:
        s1 = rng.uniform(0.25, s0)
        parts.append(((-s1 / 2, 0, s0), (s1 / 2, s1, s0 + s1), {"body": pal.picture(), "top": pal.picture()}))
    return parts


def plant(pal: Palette, rng: np.random.Generator) -> list[Part]:
    """A pot with a block of leaves."""
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


def chair(pal: Palette, rng: np.random.Generator, wood: Material) -> list[Part]:
    """A chair, its back along u at w = 0, facing +w; ``wood``: the frame's material (the
    chairs of one table share it)."""
    s, h, bh = rng.uniform(0.42, 0.48), rng.uniform(0.44, 0.47), rng.uniform(0.85, 0.95)
    seat = pal.fabric() if rng.uniform() < 0.5 else wood
    parts: list[Part] = [((-s / 2, 0, h - 0.04), (s / 2, s, h), {"body": seat})]
    for u in (-s / 2, s / 2 - 0.035):
        for w in (0.0, s - 0.035):
            parts.append(((u, w, 0), (u + 0.035, w + 0.035, h - 0.04), {"body": wood}))
    parts.append(((-s / 2, 0, h), (s / 2, 0.03, bh), {"body": wood, "front": seat}))
    return parts


# Pieces that stand against a wall: (builder, weight, most per room).
WALL_PIECES = {
    "bookshelf": (_bookshelf, 3, 3),
    "cabinet": (_cabinet, 3, 3),
    "wardrobe": (_wardrobe, 1, 1),
    "sofa": (_sofa, 2, 1),
    "desk": (_desk, 2, 2),
    "crates": (crates, 1, 2),
    "plant": (plant, 1, 2),
}


def overlap(a, b, margin: float = 0.0) -> bool:
    """Whether two boxes (lo, hi) overlap (with a margin), in as many axes as they have."""
    return all(a[0][i] < b[1][i] + margin and b[0][i] < a[1][i] + margin for i in range(len(a[0])))


@dataclass
class Placement:
    """Maps the local frame of a piece into the world: p = origin + u * U + w * W + z."""

    origin: tuple[float, float]
    U: tuple[int, int]  # world direction of +u (an axis unit vector)
    W: tuple[int, int]  # world direction of +w

    def box(self, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """World corners (lo (3,), hi (3,)) of the local box ``lo, hi`` (u, w, z)."""
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


def wall_placement(size, wall: int, s: float) -> Placement:
    """Placement against wall 0 (x = -X/2), 1 (x = +X/2), 2 (y = -Y/2) or 3 (y = +Y/2), at
    position s along it; the local w axis points into the room."""
    X, Y = size[0] / 2, size[1] / 2
    return [
        Placement((-X, s), (0, 1), (1, 0)),
        Placement((X, s), (0, -1), (-1, 0)),
        Placement((s, -Y), (-1, 0), (0, 1)),
        Placement((s, Y), (1, 0), (0, -1)),
    ][wall]


def door(pal: Palette, dw: float, dh: float) -> list[Part]:
    """A door in its frame, with a handle and a sign, ``dw`` wide and ``dh`` high (m)."""
    return [
        ((-dw / 2 - 0.06, 0, 0), (dw / 2 + 0.06, 0.02, dh + 0.06), {"body": pal.paint()}),  # frame
        ((-dw / 2, 0.02, 0), (dw / 2, 0.05, dh), {"body": pal.wood()}),  # leaf
        (
            (dw / 2 - 0.14, 0.05, 0.98),
            (dw / 2 - 0.06, 0.1, 1.02),
            {"body": Material(pal.texture("moon"), (0.8, 0.75, 0.5), 0.2)},
        ),
        (
            (-0.12, 0.05, 1.45),
            (0.12, 0.056, 1.75),
            {"body": pal.picture(("text", "page", "logo", "clock"))},
        ),  # sign
    ]


def decoration(kind: str, pal: Palette, rng: np.random.Generator) -> tuple[Material, float, float, float, float]:
    """What a wall decoration shows and its size, before it is placed.

    Args:
        kind: 'window', 'whiteboard' or 'picture'.
        pal, rng: the room's materials and random generator.
    Returns:
        The material of the picture, its height and width (m), the frame's width (m) and the
        height (m) of the centre above the floor.
    """
    if kind == "window":
        pic = Material(pal.texture("hubble_deep_field", picture=True), (1.0, 1.0, 1.0))
        ph, pw, frame = rng.uniform(0.9, 1.3), rng.uniform(0.8, 1.6), 0.06
        zc = rng.uniform(1.3, 1.6)
    elif kind == "whiteboard":
        pic = pal.picture(("text", "page"), sat=(0.0, 0.08), val=(0.9, 1.0))
        ph, pw, frame = rng.uniform(0.8, 1.1), rng.uniform(1.1, 1.8), 0.03
        zc = rng.uniform(1.3, 1.55)
    else:
        pic = pal.picture()
        ph = rng.uniform(0.35, 0.9)
        pw = float(np.clip(ph * texture_aspect(pic.texture), 0.3, 1.6))
        frame = rng.uniform(0.015, 0.05)
        zc = rng.uniform(1.1, 1.8)
    return pic, ph, pw, frame, zc


def framed(kind: str, pal: Palette, pic: Material, ph: float, pw: float, frame: float, zc: float) -> list[Part]:
    """The boxes of a wall decoration: its frame and the picture in it (the arguments as
    :func:`decoration` returns them, ``zc`` possibly lowered to fit under the ceiling)."""
    H, Wd = ph + 2 * frame, pw + 2 * frame
    return [
        (
            (-Wd / 2, 0, zc - H / 2),
            (Wd / 2, 0.015, zc + H / 2),
            {"body": pal.paint() if kind != "window" else Material(pal.texture("moon"), (0.9, 0.9, 0.9), 1.0)},
        ),
        ((-pw / 2, 0.015, zc - ph / 2), (pw / 2, 0.022, zc + ph / 2), {"body": pic}),
    ]
