"""Textures of the synthetic rooms: photographs and procedural patterns in a mip-mapped atlas.

Every surface of a room is texture-mapped in world metres with one of the photographs
bundled with scikit-image (no download) or, in rooms that name texture families, with a
procedural pattern (:mod:`reloc_sim.procedural`). Materials (:data:`MATERIAL_TEXTURES`) are
tiled on walls, floor and furniture bodies; pictures (:data:`PICTURE_TEXTURES`) are fitted
once on posters, book spines, doors and screens. :func:`atlas` holds all of them resized to
one square size with their mip levels, for vectorised trilinear lookups by the renderer.

:data:`TEXTURE_FAMILIES` groups the textures into families (three of photographs, one per
procedural pattern), each with its materials and its pictures; a room made with some
families uses only their textures (:class:`reloc_sim.furniture.Palette`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from reloc_sim import procedural

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
#: Every photograph of the atlas, in atlas order.
_TEXTURES = MATERIAL_TEXTURES + tuple(n for n in PICTURE_TEXTURES if n not in MATERIAL_TEXTURES)
#: Every procedural texture, after the photographs in the atlas.
PROCEDURAL_TEXTURES = tuple(n for f in procedural.FAMILIES for n in procedural.texture_names(f))
#: texture name -> index in the atlas.
TEX_INDEX = {n: i for i, n in enumerate(_TEXTURES + PROCEDURAL_TEXTURES)}
#: Indices from this one on are procedural (only an atlas built with them holds them).
FIRST_PROCEDURAL = len(_TEXTURES)

#: Texture families: name -> (materials, pictures). The photographs are split into three
#: families with no texture in common; every procedural family serves as both.
TEXTURE_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "photo_a": (("brick", "gravel", "grass", "moon"),
                ("astronaut", "coffee", "chelsea", "rocket", "cat", "hubble_deep_field")),
    "photo_b": (("cell", "checkerboard"), ("immunohistochemistry", "colorwheel", "logo")),
    "photo_c": (("coins", "page", "text"), ("stereo_motorcycle", "retina", "clock", "camera", "horse")),
    **{f: (procedural.texture_names(f),) * 2 for f in procedural.FAMILIES},
}


def family_textures(families: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The materials and the pictures of these texture families (each sorted, no repeats).

    Raises:
        KeyError: an unknown family.
    """
    unknown = [f for f in families if f not in TEXTURE_FAMILIES]
    if unknown:
        raise KeyError(f"unknown texture families {unknown}: choose from {', '.join(TEXTURE_FAMILIES)}")
    mats = sorted({n for f in families for n in TEXTURE_FAMILIES[f][0]})
    pics = sorted({n for f in families for n in TEXTURE_FAMILIES[f][1]})
    return tuple(mats), tuple(pics)
TEX_SIZE = 256  # texels per side of mip level 0 (a power of two)
_TEX_MIN = 4  # smallest mip level

#: Grey photographs: they take a random colour tint when used as pictures.
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


def is_gray(name: str) -> bool:
    """Whether the photograph ``name`` is grey (so a tint gives it its colour)."""
    return name in _GRAY_TEXTURES


@dataclass(frozen=True)
class Material:
    """A texture on a face: tiled (``tile`` = height of one copy in metres, shifted by
    ``offset`` copies) or, when ``tile`` is None, one copy fitted to the face (cropped)."""

    texture: str
    tint: tuple[float, float, float]
    tile: float | None = None
    offset: tuple[float, float] = (0.0, 0.0)


def _load_photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB picture from ``skimage.data`` (bundled files only)."""
    import skimage.data  # lazy: slow to import, and only the atlas (built once per process) needs it

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
class Atlas:
    """All textures resized to the same square size, with mip levels, for vectorised lookups."""

    aspect: np.ndarray  # (T,) width / height of each original picture
    sizes: tuple[int, ...]  # texels per side of each level
    levels: tuple[np.ndarray, ...]  # level l: (T * S_l * S_l, 3) float32 in [0, 1]

    def sample(self, tex: np.ndarray, u: np.ndarray, v: np.ndarray, lod: np.ndarray) -> np.ndarray:
        """Trilinear lookup with mirrored repeat.

        Args:
            tex: (N,) texture index (:data:`TEX_INDEX`) of each sample.
            u, v: (N,) texture coordinates, in texture units (1 = one copy).
            lod: (N,) mip level (log2 of the texels per sample).
        Returns:
            (N, 3) float32 colours in [0, 1].
        """
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
        """(N, 3) bilinear lookups in mip level ``level`` (arguments as for :meth:`sample`)."""
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


@functools.lru_cache(maxsize=2)
def atlas(with_procedural: bool = False) -> Atlas:
    """The texture atlas (built once per process, about half a second; one more second
    ``with_procedural``, which adds :data:`PROCEDURAL_TEXTURES` after the photographs)."""
    aspect, level0 = [], []
    for name in _TEXTURES:
        photo = _load_photo(name)
        aspect.append(photo.shape[1] / photo.shape[0])
        img = Image.fromarray(photo).resize((TEX_SIZE, TEX_SIZE), Image.Resampling.LANCZOS)
        level0.append(np.asarray(img, dtype=np.float32) / 255.0)
    for name in PROCEDURAL_TEXTURES if with_procedural else ():
        aspect.append(1.0)
        level0.append(procedural.make_texture(name, TEX_SIZE).astype(np.float32) / 255.0)
    pyramid = [np.stack(level0)]
    while pyramid[-1].shape[1] > _TEX_MIN:
        a = pyramid[-1]
        pyramid.append(0.25 * (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]))
    return Atlas(
        aspect=np.array(aspect),
        sizes=tuple(p.shape[1] for p in pyramid),
        levels=tuple(np.ascontiguousarray(p.reshape(-1, 3), dtype=np.float32) for p in pyramid),
    )


def texture_aspect(name: str) -> float:
    """Width / height of the texture ``name`` (a texture name of the atlas; 1 for a procedural one)."""
    if TEX_INDEX[name] >= FIRST_PROCEDURAL:
        return 1.0
    return float(atlas().aspect[TEX_INDEX[name]])
