"""The renderer of the synthetic scenes: a vectorised numpy ray caster and the RGB-D sensor.

No OpenGL: closest hits against the room (:meth:`reloc_sim.room.Room.cast`), trilinear
mip-mapped texture lookups (:mod:`reloc_sim.textures`), Lambertian shading from point lights
with hard shadows plus ambient light, optional supersampling of the colour image. The depth
image is the z-depth (along the optical axis) of the same camera at the pixel centres:
colour and depth are registered. The sensor (:class:`reloc_sim.config.SensorNoise`) adds
exposure gain and colour noise, and depth noise growing with the square of the distance
(Kinect v1 model), quantised to millimetres, with no measurement (:data:`INVALID_DEPTH`)
beyond the range, too close, at grazing angles or on depth edges.

Camera frame as in 7-Scenes / OpenCV: x right, y down, z forward; a pose maps camera to world.
"""

from __future__ import annotations

import math

import numpy as np

from reloc_ros.data.sevenscenes import Intrinsics
from reloc_sim.config import SensorNoise
from reloc_sim.room import Room
from reloc_sim.textures import atlas

#: Raw depth value written where the sensor gives no measurement (as in the original data).
INVALID_DEPTH = 65535

_CHUNK = 32768  # rays traced at once (keeps the work arrays in the CPU caches)


def _pixel_rays(pose: np.ndarray, intr: Intrinsics, ss: int) -> np.ndarray:
    """(H*ss * W*ss, 3) float32 world ray directions with camera z = 1 (so t = z-depth).

    Sample k of a pixel sits at ``(k + 0.5) / ss - 0.5`` from its centre, so the samples of
    a pixel average to its centre.

    Args:
        pose: 4x4 camera-to-world pose (only its rotation is used).
        intr: the camera intrinsics (image size H x W).
        ss: samples per pixel along each axis.
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
    """Lambertian colour (N, 3) float32 of the hits ``origin + t * dirs``.

    Args:
        room: the room that was hit.
        origin: (3,) camera centre.
        dirs: (N, 3) float32 ray directions (camera z = 1).
        t: (N,) float32 ray parameters of the hits.
        sid: (N,) surface index of each hit.
        focal: focal length in samples (for the texture mip level).
        shadows: test each light for occluders.
    """
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
    albedo = atlas(room.uses_procedural).sample(room.s_tex[sid], u, v, lod) * room.s_tint[sid]
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

    Args:
        room: the room.
        pose: 4x4 float64 camera-to-world pose.
        intr: the camera intrinsics.
        ss: samples per pixel along each axis.
        shadows: cast shadows from the lights.
        colour: shade the hits (else only t and the surfaces).

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


def render_clean(room: Room, pose: np.ndarray, intr: Intrinsics, supersample: int, shadows: bool,
                  labels: bool = False):
    """Noise-free render: colour (H, W, 3) float32 in [0, 1], z-depth (H, W) float32 and the
    cosine between each depth ray and the surface normal (H, W); with ``labels`` also the
    class (H, W) uint8 of the surface hit at each pixel centre, the ray of the depth.

    Args:
        room: the room.
        pose: 4x4 camera-to-world pose.
        intr: the camera intrinsics (image size H x W).
        supersample: colour samples per pixel along each axis.
        shadows: cast shadows from the lights.
        labels: also return the class of each pixel.
    """
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


def apply_sensor(
    rgb: np.ndarray, z: np.ndarray, cos_inc: np.ndarray, noise: SensorNoise, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Colour uint8 (H, W, 3) and raw depth uint16 millimetres (H, W) with 65535 invalid.

    Args:
        rgb: (H, W, 3) float32 clean colour in [0, 1].
        z: (H, W) float32 clean z-depth (m).
        cos_inc: (H, W) cosine between each depth ray and the surface normal.
        noise: the sensor effects.
        rng: random generator of the noise (one per frame).
    """
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
        room: the room (:func:`reloc_sim.room.make_room` or ``SceneConfig.room()``).
        pose: 4x4 camera-to-world pose (camera x right, y down, z forward).
        intrinsics: pinhole intrinsics; the image is ``intrinsics.width x height``.
        supersample: colour samples per pixel along each axis (anti-aliasing).
        shadows: cast shadows from the room's lights.
        noise: sensor effects; None gives the exact colour and depth with every pixel valid.
        rng: random generator for the noise (default: seeded with 0).
        labels: also return the class ids (:data:`reloc_sim.room.CLASSES`) of the surface at each pixel centre.
    Returns:
        colour uint8 (H, W, 3) RGB and z-depth float32 (H, W) in metres, NaN where invalid,
        (and labels uint8 (H, W)). With ``noise`` the depth is quantised to millimetres as in
        the PNG files.
    """
    rgb, z, cos_inc, lab = render_clean(room, pose, intrinsics, supersample, shadows, labels=True)
    extra = (lab,) if labels else ()
    if noise is None:
        return (np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8), z) + extra
    rgb8, mm = apply_sensor(rgb, z, cos_inc, noise, rng if rng is not None else np.random.default_rng(0))
    depth = mm.astype(np.float32) / 1000.0
    depth[mm == INVALID_DEPTH] = np.nan
    return (rgb8, depth) + extra

