"""Procedural textures: families of seamless patterns drawn from a seed (no download).

Each family is a small function ``f(rng, size) -> (size, size, 3) float32 in [0, 1]`` that
draws its own parameters (scales, colours, widths) from ``rng``, so one family gives any
number of distinct textures that still look alike: wood grain, marble veins, floor tiles,
plaster, woven fabric, wallpaper stripes, parquet, polka dots, stone (Voronoi cells), plaid,
running-bond bricks and waves. Every pattern is periodic over the square, so that a tiled
copy shows no seam (noise is built from integer-frequency Fourier terms, cells on a torus).

:mod:`reloc_sim.textures` puts :data:`VARIANTS` textures of every family in the atlas, named
``<family>_<k>``; the scene families of :mod:`reloc_sim.family` split the families between
training, validation and test scenes, so that a test scene's appearance is new to a model.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable

import numpy as np

__all__ = ["FAMILIES", "VARIANTS", "texture_names", "make_texture"]

#: Textures made of every family (``<family>_0`` ... ``<family>_{VARIANTS-1}``).
VARIANTS = 3


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) coordinates u (columns) and v (rows) of the pixel centres, in (0, 1)."""
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(t, t, indexing="xy")


def _periodic_noise(rng: np.random.Generator, size: int, octaves: int = 5, base: int = 2,
                    falloff: float = 0.55) -> np.ndarray:
    """Smooth noise periodic over the unit square, (size, size) in [0, 1]: a sum of random
    integer-frequency sinusoids, ``base * 2**o`` cycles at octave ``o``, amplitude
    ``falloff**o``."""
    u, v = _grid(size)
    out = np.zeros((size, size))
    for o in range(octaves):
        f = base * 2**o
        for _ in range(3):
            kx, ky = rng.integers(-f, f + 1, 2)
            if kx == 0 and ky == 0:
                kx = f
            out += falloff**o * np.sin(2 * math.pi * (kx * u + ky * v) + rng.uniform(0, 2 * math.pi))
    out -= out.min()
    return out / max(out.max(), 1e-9)


def _colour(rng: np.random.Generator, hue=(0.0, 1.0), sat=(0.2, 0.7), val=(0.3, 0.9)) -> np.ndarray:
    """A random RGB colour (3,) with hue, saturation and value in these ranges."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val)))


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of colours a and b (3,) by t (H, W) in [0, 1]: (H, W, 3)."""
    return a[None, None] * (1.0 - t[..., None]) + b[None, None] * t[..., None]


def _wood(rng, size):
    u, v = _grid(size)
    n = _periodic_noise(rng, size, octaves=4, base=1)
    rings = int(rng.integers(6, 14))
    t = 0.5 + 0.5 * np.sin(2 * math.pi * (rings * v + 1.5 * n + 0.3 * np.sin(2 * math.pi * u)))
    light = _colour(rng, hue=(0.05, 0.11), sat=(0.35, 0.6), val=(0.6, 0.85))
    return _mix(light, light * rng.uniform(0.45, 0.7), t**2)


def _marble(rng, size):
    u, v = _grid(size)
    n = _periodic_noise(rng, size, octaves=6, base=1)
    k = int(rng.integers(1, 4))
    t = np.abs(np.sin(2 * math.pi * (k * (u + v)) + 6.0 * n)) ** 0.35
    base = _colour(rng, sat=(0.0, 0.15), val=(0.8, 0.97))
    vein = _colour(rng, sat=(0.1, 0.5), val=(0.2, 0.5))
    return _mix(vein, base, t)


def _tiles(rng, size):
    u, v = _grid(size)
    n = int(rng.choice([2, 4, 8]))
    gw = rng.uniform(0.03, 0.08)
    fu, fv = (u * n) % 1.0, (v * n) % 1.0
    grout = (np.minimum(fu, 1 - fu) < gw / 2) | (np.minimum(fv, 1 - fv) < gw / 2)
    a, b = _colour(rng, val=(0.55, 0.95)), _colour(rng, val=(0.4, 0.9))
    checker = ((np.floor(u * n) + np.floor(v * n)) % 2).astype(np.float64) * rng.uniform(0.0, 1.0)
    out = _mix(a, b, checker) * (0.9 + 0.1 * _periodic_noise(rng, size, 3, 4))[..., None]
    out[grout] = _colour(rng, sat=(0.0, 0.1), val=(0.2, 0.6))
    return out


def _plaster(rng, size):
    n = _periodic_noise(rng, size, octaves=7, base=2, falloff=0.7)
    c = _colour(rng, sat=(0.0, 0.35), val=(0.6, 0.95))
    return c[None, None] * (0.55 + 0.45 * n)[..., None]


def _weave(rng, size):
    u, v = _grid(size)
    n = int(rng.choice([16, 24, 32]))
    wu, wv = np.sin(math.pi * (u * n % 1.0)), np.sin(math.pi * (v * n % 1.0))
    over = ((np.floor(u * n) + np.floor(v * n)) % 2).astype(bool)
    t = np.where(over, wu * (0.6 + 0.4 * wv), wv * (0.6 + 0.4 * wu))
    a, b = _colour(rng, sat=(0.3, 0.8)), _colour(rng, sat=(0.3, 0.8))
    thread = np.where(over[..., None], a[None, None], b[None, None])
    return thread * (0.5 + 0.5 * t)[..., None]


def _stripes(rng, size):
    u, v = _grid(size)
    k = int(rng.integers(3, 10))
    c = [_colour(rng, sat=(0.1, 0.6), val=(0.5, 0.95)) for _ in range(int(rng.integers(2, 4)))]
    band = np.floor(((u + (v if rng.uniform() < 0.3 else 0.0)) * k * len(c)) % len(c)).astype(int)
    out = np.stack(c)[band]
    fine = 0.5 + 0.5 * np.sin(2 * math.pi * u * k * len(c) * 4)
    return out * (0.9 + 0.1 * fine)[..., None]


def _parquet(rng, size):
    u, v = _grid(size)
    n = int(rng.choice([4, 8]))
    cu, cv = np.floor(u * n), np.floor(v * n)
    horizontal = ((cu + cv) % 2).astype(bool)
    along = np.where(horizontal, u, v) * n * 4
    plank = np.floor(along % 4)
    grain = _periodic_noise(rng, size, octaves=5, base=4)
    base = _colour(rng, hue=(0.04, 0.12), sat=(0.35, 0.65), val=(0.45, 0.8))
    shade = 0.8 + 0.1 * plank + 0.2 * grain
    out = base[None, None] * shade[..., None] / 1.2
    edge = np.minimum(along % 1.0, 1 - along % 1.0) < 0.04
    out[edge] *= 0.5
    return out


def _dots(rng, size):
    u, v = _grid(size)
    n = int(rng.choice([4, 6, 8, 12]))
    r = rng.uniform(0.15, 0.35)
    du, dv = (u * n) % 1.0 - 0.5, (v * n) % 1.0 - 0.5
    t = (np.hypot(du, dv) < r).astype(np.float64)
    return _mix(_colour(rng, sat=(0.0, 0.4), val=(0.7, 0.95)), _colour(rng, sat=(0.4, 0.9)), t)


def _stone(rng, size):
    u, v = _grid(size)
    m = int(rng.integers(12, 40))
    seeds = rng.uniform(0, 1, (m, 2))
    d = np.full((size, size), np.inf)
    d2 = np.full((size, size), np.inf)
    idx = np.zeros((size, size), dtype=int)
    for i, (sx, sy) in enumerate(seeds):  # distances on the torus: seamless cells
        dx = np.abs(u - sx)
        dy = np.abs(v - sy)
        di = np.hypot(np.minimum(dx, 1 - dx), np.minimum(dy, 1 - dy))
        closer = di < d
        d2 = np.where(closer, d, np.minimum(d2, di))
        idx = np.where(closer, i, idx)
        d = np.where(closer, di, d)
    shades = rng.uniform(0.6, 1.0, m)
    base = _colour(rng, sat=(0.0, 0.3), val=(0.5, 0.85))
    out = base[None, None] * shades[idx][..., None]
    out[(d2 - d) < 0.012] *= 0.35
    return out * (0.85 + 0.15 * _periodic_noise(rng, size, 4, 4))[..., None]


def _plaid(rng, size):
    u, v = _grid(size)
    k = int(rng.integers(2, 6))
    a, b = _colour(rng, sat=(0.4, 0.9)), _colour(rng, sat=(0.4, 0.9))
    bu = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * k * u))
    bv = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * k * v))
    thin = (np.abs(np.sin(2 * math.pi * 4 * k * u)) < 0.15) | (np.abs(np.sin(2 * math.pi * 4 * k * v)) < 0.15)
    out = _mix(a, b, 0.5 * (bu + bv))
    out[thin] = out[thin] * 0.5 + 0.5
    return out


def _bricks(rng, size):
    u, v = _grid(size)
    rows = int(rng.choice([4, 6, 8]))
    cols = rows // 2
    r = np.floor(v * rows)
    uu = (u * cols + 0.5 * (r % 2)) % 1.0
    fv = (v * rows) % 1.0
    mortar = (np.minimum(fv, 1 - fv) < 0.06) | (np.minimum(uu, 1 - uu) < 0.03)
    brick_id = (r * 7 + np.floor(u * cols + 0.5 * (r % 2))) % 13
    base = _colour(rng, hue=(0.0, 0.08), sat=(0.4, 0.75), val=(0.35, 0.7))
    out = base[None, None] * (0.8 + 0.03 * brick_id)[..., None]
    out = out * (0.85 + 0.15 * _periodic_noise(rng, size, 5, 8))[..., None]
    out[mortar] = _colour(rng, sat=(0.0, 0.1), val=(0.6, 0.85))
    return out


def _waves(rng, size):
    u, v = _grid(size)
    k = int(rng.integers(3, 8))
    n = _periodic_noise(rng, size, octaves=3, base=1)
    t = 0.5 + 0.5 * np.sin(2 * math.pi * (k * v + 0.15 * np.sin(2 * math.pi * 2 * u)) + 2.0 * n)
    return _mix(_colour(rng, sat=(0.2, 0.7)), _colour(rng, sat=(0.2, 0.7)), t)


#: family name -> generator ``f(rng, size)``.
FAMILIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "wood": _wood, "marble": _marble, "tiles": _tiles, "plaster": _plaster, "weave": _weave,
    "stripes": _stripes, "parquet": _parquet, "dots": _dots, "stone": _stone, "plaid": _plaid,
    "bricks": _bricks, "waves": _waves,
}


def texture_names(family: str) -> tuple[str, ...]:
    """The atlas names of a procedural family's textures: ``<family>_0`` ..."""
    if family not in FAMILIES:
        raise KeyError(f"unknown procedural texture family {family!r}: one of {', '.join(FAMILIES)}")
    return tuple(f"{family}_{k}" for k in range(VARIANTS))


def make_texture(name: str, size: int) -> np.ndarray:
    """The procedural texture ``<family>_<k>``: (size, size, 3) uint8, the same on every run.

    Args:
        name: a name from :func:`texture_names`.
        size: texels per side.
    """
    family, _, k = name.rpartition("_")
    if family not in FAMILIES or not k.isdigit():
        raise KeyError(f"{name!r} is not a procedural texture (<family>_<k>)")
    index = list(FAMILIES).index(family)
    rng = np.random.default_rng([0x7E87, index, int(k)])
    img = FAMILIES[family](rng, size)
    return (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
