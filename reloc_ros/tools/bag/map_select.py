"""Bag to map, stages 3 and 4: which images become frames, and which frames are held out.

* :func:`measure_sharpness` decodes the posed images once for the blur filter;
* :func:`select_frames` drops images without pose, blurred ones and ones without depth,
  then keeps keyframes and applies the cap (a :class:`Selection`, with every skip counted);
* :func:`split_blocks` holds out time blocks as the test split.

The rules and their settings: :mod:`reloc_ros.tools.bag.to_map`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from reloc_ros.core.geometry import pose_errors
from reloc_ros.ros import messages as msgs
from reloc_ros.tools.bag.map_config import BagMapError, MapConfig
from reloc_ros.tools.bag.map_scan import BagScan, open_reader

__all__ = ["sharpness", "decode_color", "measure_sharpness", "Selection", "select_frames", "split_blocks",
           "sequence_numbers"]

_NS = 1_000_000_000


# --------------------------------------------------------------------------- 3. frames
def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image of ``rgb`` (OpenCV): low for blurred images."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def decode_color(bag: Path, topic: str, m) -> np.ndarray:
    """The rgb8 pixels of the image message ``m`` on ``topic``; raises :class:`BagMapError`."""
    try:
        return msgs.msg_to_rgb(m)
    except msgs.ImageConversionError as e:
        raise BagMapError(bag, topic, f"image at {msgs.stamp_to_ns(m.header.stamp) / _NS:.6f} s: {e}") from None


def measure_sharpness(s: BagScan, poses: Sequence, progress: bool = True) -> list[float | None]:
    """Sharpness of every image that has a pose (None for the others, and for all when the
    blur filter is off).

    Args:
        s: the scan.
        poses: the camera pose of each image, or None.
        progress: show a progress bar.
    """
    out: list[float | None] = [None] * len(s.image_ns)
    if s.conf.blur_ratio <= 0:
        return out
    reader = open_reader(s.bag)
    try:
        conns = [x for x in reader.connections if x.topic == s.conf.image_topic]
        k = -1
        for conn, _, raw in tqdm(reader.messages(connections=conns), total=len(s.image_ns), desc="sharpness",
                                 unit="img", disable=not progress, leave=False):
            k += 1
            if poses[k] is not None:
                out[k] = sharpness(decode_color(s.bag, conn.topic, reader.deserialize(raw, conn.msgtype)))
    finally:
        reader.close()
    return out


@dataclass
class Selection:
    """The frames kept and what was skipped.

    Attributes:
        kept: indices into the image list, in order.
        depth_index: kept image index -> the index of its depth image.
        skipped: reason -> the number of images skipped for it.
        path_m: length of the camera path over the posed images (m).
    """

    kept: list[int]
    depth_index: dict[int, int]
    skipped: dict[str, int]
    path_m: float


def _sharp_ones(c: MapConfig, image_ns: Sequence[int], posed: list[int], sharp: Sequence) -> list[int]:
    """The posed images at least ``blur_ratio`` x as sharp as the median of their window.

    Args:
        c: the settings.
        image_ns: the image stamps.
        posed: the indices of the images with a pose.
        sharp: the sharpness of each image.
    """
    t = np.array([image_ns[k] for k in posed])
    v = np.array([sharp[k] for k in posed], dtype=np.float64)
    half = int(c.blur_window_s * _NS / 2)
    lo, hi = np.searchsorted(t, t - half, "left"), np.searchsorted(t, t + half, "right")
    ok = [v[i] >= c.blur_ratio * float(np.median(v[lo[i]:hi[i]])) for i in range(len(posed))]
    return [k for k, good in zip(posed, ok) if good]


def _with_depth(s: BagScan, cand: list[int]) -> dict[int, int]:
    """Image index -> its depth image's index, for the candidates with a depth image within
    ``depth_tolerance_s``."""
    tol = int(s.conf.depth_tolerance_s * _NS)
    out = {}
    for k in cand:
        t = s.image_ns[k]
        j = bisect.bisect_left(s.depth_ns, t)
        best = min((i for i in (j - 1, j) if 0 <= i < len(s.depth_ns)), key=lambda i: abs(s.depth_ns[i] - t))
        if abs(s.depth_ns[best] - t) <= tol:
            out[k] = best
    return out


def _keyframes(c: MapConfig, poses: Sequence, cand: list[int]) -> list[int]:
    """The candidates at which the camera has moved ``keyframe_m`` or turned ``keyframe_deg``
    since the last one kept (the first is always kept)."""
    kf = [cand[0]]
    for k in cand[1:]:
        d, r = pose_errors(poses[k][None], poses[kf[-1]][None])
        if d[0] >= c.keyframe_m or r[0] >= c.keyframe_deg:
            kf.append(k)
    return kf


def select_frames(s: BagScan, poses: Sequence, sharp: Sequence) -> Selection:
    """Stage 3: drop images without pose, blurred ones and ones without depth; keyframes; cap.

    Args:
        s: the scan.
        poses: the camera pose of each image, or None.
        sharp: the sharpness of each image (:func:`measure_sharpness`).
    """
    c = s.conf
    skipped = {"no pose": 0, "blurred": 0, "no depth": 0, "not a keyframe": 0, "over the cap": 0}
    posed = [k for k, T in enumerate(poses) if T is not None]
    skipped["no pose"] = len(s.image_ns) - len(posed)
    path = sum(float(np.linalg.norm(poses[a][:3, 3] - poses[b][:3, 3])) for a, b in zip(posed, posed[1:]))
    cand = posed
    if c.blur_ratio > 0 and posed:
        cand = _sharp_ones(c, s.image_ns, posed, sharp)
        skipped["blurred"] = len(posed) - len(cand)
    depth_index: dict[int, int] = {}
    if s.depth is not None:
        depth_index = _with_depth(s, cand)
        skipped["no depth"] = len(cand) - len(depth_index)
        cand = [k for k in cand if k in depth_index]
    if c.keyframes and cand:
        kf = _keyframes(c, poses, cand)
        skipped["not a keyframe"] = len(cand) - len(kf)
        cand = kf
    if c.max_frames and len(cand) > c.max_frames:
        idx = np.unique(np.round(np.linspace(0, len(cand) - 1, c.max_frames)).astype(int))
        skipped["over the cap"] = len(cand) - len(idx)
        cand = [cand[i] for i in idx]
    return Selection(kept=cand, depth_index={k: depth_index[k] for k in cand if k in depth_index},
                     skipped=skipped, path_m=path)


# --------------------------------------------------------------------------- 4. splits
def split_blocks(stamps_ns: Sequence[int], block_s: float, every: int, guard_s: float) -> list[str]:
    """Role of each stamp: 'test' in every ``every``-th block of ``block_s`` seconds (blocks
    ``every - 1``, ``2 every - 1``, ... counted from the first stamp), 'guard' for the
    others within ``guard_s`` of a test block, 'train' for the rest.

    Args:
        stamps_ns: the frames' stamps (ns), in order.
        block_s: the block length (s).
        every: one test block in this many (0: all train).
        guard_s: training frames this close to a test block are dropped (s).
    """
    if not len(stamps_ns) or every == 0:
        return ["train"] * len(stamps_ns)
    t = (np.asarray(stamps_ns, dtype=np.int64) - int(stamps_ns[0])) / _NS
    block = np.floor(t / block_s).astype(int)
    test = (block % every) == every - 1
    starts = np.arange(every - 1, block.max() + 1, every) * block_s  # test block [start, start + block)
    roles = []
    for ti, is_test in zip(t, test):
        if is_test:
            roles.append("test")
        elif np.any((ti > starts - guard_s) & (ti < starts + block_s + guard_s)):
            roles.append("guard")
        else:
            roles.append("train")
    return roles


def sequence_numbers(roles: Sequence[str]) -> list[int]:
    """Sequence number of each frame: a new one whenever the role changes (guards: 0, dropped).

    Args:
        roles: 'train', 'test' or 'guard' per frame (:func:`split_blocks`).
    """
    seq, last, out = 0, None, []
    for r in roles:
        if r == "guard":
            out.append(0)
            continue
        if r != last:
            seq, last = seq + 1, r
        out.append(seq)
    return out
