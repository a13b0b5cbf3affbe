"""Depth and colour made to agree: depth in millimetres, registered to the colour camera, and
images without lens distortion (OpenCV). Used by the bag-to-map converter
(:mod:`reloc_ros.tools.bag.to_map`) and by the robot-bag writer that tests it.

Depth images here are uint16 millimetres with 0 for "no measurement" (the 7-Scenes layout;
its 65535 is mapped to 0). Intrinsics are 3x3 ``K`` matrices with the centre of the top-left
pixel at (0, 0).

The distortion models and the colour undistortion live in the core
(:mod:`reloc_ros.core.distortion`, which the node uses too) and are re-exported here.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from reloc_ros.core.distortion import (DISTORTION_MODELS, _maps, check_distortion,
                                       has_distortion, undistort_color)

__all__ = ["DISTORTION_MODELS", "depth_to_mm", "has_distortion", "check_distortion", "undistort_color",
           "undistort_depth", "resample_depth", "reproject_depth"]


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """uint16 millimetres of a depth image: uint16 mm (65535 -> 0) or float metres (NaN,
    inf, <= 0 and > 65.534 m -> 0)."""
    d = np.asarray(depth)
    if d.dtype == np.uint16:
        return np.where(d == 65535, 0, d).astype(np.uint16)
    if d.dtype.kind == "f":
        mm = np.rint(np.nan_to_num(d.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) * 1000.0)
        return np.where((mm > 0) & (mm < 65535), mm, 0).astype(np.uint16)
    raise ValueError(f"depth must be uint16 millimetres or float metres, got {d.dtype}")


def undistort_depth(depth_mm: np.ndarray, K: np.ndarray, D: Sequence[float], model: str = "plumb_bob") -> np.ndarray:
    """The pinhole depth image (same K, D = 0): nearest neighbour (depth is never blended
    across an edge), 0 outside."""
    check_distortion(model, D)
    if not has_distortion(D):
        return depth_mm
    h, w = depth_mm.shape
    mx, my = _maps(K, D, model, (w, h))
    return cv2.remap(depth_mm, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def resample_depth(depth_mm: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth of the same optical frame seen with other intrinsics and size ``(W, H)``: each
    target pixel takes the source pixel on its ray (nearest neighbour). With intrinsics that
    differ by a resize (:meth:`Intrinsics.scaled`), this is a nearest-neighbour resize."""
    W, H = size
    u = (np.arange(W, dtype=np.float64) - K_dst[0, 2]) / K_dst[0, 0] * K_src[0, 0] + K_src[0, 2]
    v = (np.arange(H, dtype=np.float64) - K_dst[1, 2]) / K_dst[1, 1] * K_src[1, 1] + K_src[1, 2]
    mx = np.broadcast_to(u[None, :], (H, W)).astype(np.float32)
    my = np.broadcast_to(v[:, None], (H, W)).astype(np.float32)
    return cv2.remap(depth_mm, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def reproject_depth(depth_mm: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, size: tuple[int, int],
                    T_dst_src: np.ndarray) -> np.ndarray:
    """Depth seen by another camera: every valid pixel of ``depth_mm`` is back-projected with
    ``K_src``, moved by ``T_dst_src`` (4x4, source-camera to target-camera coordinates) and
    splatted into a ``(W, H)`` image with ``K_dst`` at the nearest pixel; where several land
    on one pixel the nearest surface wins (a z-buffer). Target pixels no source pixel lands
    on stay 0: the disocclusions of the baseline, and gaps where the target is finer."""
    v, u = np.nonzero((depth_mm > 0) & (depth_mm < 65535))
    z = depth_mm[v, u].astype(np.float64) / 1000.0
    x = (u - K_src[0, 2]) / K_src[0, 0] * z
    y = (v - K_src[1, 2]) / K_src[1, 1] * z
    P = np.asarray(T_dst_src)[:3, :3] @ np.stack([x, y, z]) + np.asarray(T_dst_src)[:3, 3:4]
    W, H = size
    P = P[:, P[2] > 1e-6]
    ud = np.rint(K_dst[0, 0] * P[0] / P[2] + K_dst[0, 2]).astype(np.int64)
    vd = np.rint(K_dst[1, 1] * P[1] / P[2] + K_dst[1, 2]).astype(np.int64)
    inside = (ud >= 0) & (ud < W) & (vd >= 0) & (vd < H)
    ud, vd = ud[inside], vd[inside]
    mm = np.clip(np.rint(P[2, inside] * 1000.0), 1, 65534).astype(np.uint16)
    out = np.zeros((H, W), np.uint16)
    order = np.argsort(-mm.astype(np.int64), kind="stable")  # far first: the nearer ones overwrite them
    out[vd[order], ud[order]] = mm[order]
    return out
