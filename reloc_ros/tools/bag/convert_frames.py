"""7-Scenes to rosbag2, per frame: read and check a frame's files, and build its messages.

:class:`FrameReader` loads one frame (pose, colour as pixels or as the source file's bytes,
depth) and checks the image sizes against the intrinsics; :func:`ordered_map` runs it in
worker threads ahead of the writer. :class:`DriftingOdometry` simulates a robot's odometry,
and :func:`frame_messages` lists everything one frame puts into the bag. The writer that
uses them: :mod:`reloc_ros.tools.bag.convert_write`.
"""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import invert
from reloc_ros.data.sevenscenes import Frame, SevenScenesError, read_color, read_depth_raw
from reloc_ros.ros import messages as msgs
from reloc_ros.tools.bag import topics as tp
from reloc_ros.tools.bag.convert_plan import BagPlan

__all__ = ["FrameReader", "ordered_map", "DriftingOdometry", "frame_messages"]


# --------------------------------------------------------------------------- reading a frame
def _check_size(path: Path, size: tuple[int, int], intr: Intrinsics, what: str) -> None:
    """Raise SevenScenesError when an image's (width, height) ``size`` differs from ``intr``.

    Args:
        path: the image file (named in the error).
        size: its (width, height).
        intr: the intrinsics it must match.
        what: 'colour' or 'depth'.
    """
    if size != (intr.width, intr.height):
        raise SevenScenesError(
            path,
            f"{what} image is {size[0]}x{size[1]} but the scene's {what} intrinsics are "
            f"{intr.width}x{intr.height}",
        )


def _passthrough(path: Path, fmt: str) -> bytes | None:
    """The file's bytes when it already is an 8-bit RGB ``fmt`` ('jpeg' or 'png') file
    (stored as is), else None."""
    want = {"jpeg": "JPEG", "png": "PNG"}[fmt]
    try:
        with PILImage.open(path) as im:
            ok = im.format == want and im.mode == "RGB"
    except FileNotFoundError:
        raise SevenScenesError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SevenScenesError(path, f"unreadable image ({e})") from None
    return path.read_bytes() if ok else None


def _image_size(data: bytes, path: Path) -> tuple[int, int]:
    """(width, height) of the encoded image ``data`` read from ``path`` (named in errors)."""
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SevenScenesError(path, f"unreadable image ({e})") from None


class FrameReader:
    """Reads and checks one frame's files (run in worker threads: PIL decodes without the GIL).

    Args:
        plan: the bag plan (what to read: compressed colour, depth).
    """

    def __init__(self, plan: BagPlan):
        self.plan = plan
        self.color_intr, self.depth_intr = plan.scene.color_intrinsics, plan.scene.depth_intrinsics

    def color(self, f: Frame):
        """The frame's colour: rgb8 pixels, or the encoded bytes when the plan is compressed."""
        plan = self.plan
        if not plan.compressed:
            rgb = read_color(f.color_path)
            _check_size(f.color_path, (rgb.shape[1], rgb.shape[0]), self.color_intr, "colour")
            return rgb
        data = None if plan.reencode else _passthrough(f.color_path, plan.compressed)
        if data is None:
            rgb = read_color(f.color_path)
            _check_size(f.color_path, (rgb.shape[1], rgb.shape[0]), self.color_intr, "colour")
            return msgs.encode_compressed(rgb, plan.compressed, quality=plan.jpeg_quality)
        _check_size(f.color_path, _image_size(data, f.color_path), self.color_intr, "colour")
        return data

    def __call__(self, f: Frame):
        """(camera-to-world pose, colour, raw depth in mm or None) of the frame ``f``."""
        T = self.plan.scene.pose(f)  # the colour camera's (moved from the depth camera's where recorded)
        color = self.color(f)
        raw = None
        if self.plan.depth:
            raw = read_depth_raw(f.depth_path)
            _check_size(f.depth_path, (raw.shape[1], raw.shape[0]), self.depth_intr, "depth")
        return T, color, raw


def ordered_map(fn: Callable, items: Sequence, workers: int) -> Iterator:
    """``map(fn, items)`` computed by ``workers`` threads, in order, at most ``2 x workers``
    items ahead of the consumer. Exceptions surface at their item.

    Args:
        fn: the function of one item.
        items: the items.
        workers: threads (1: none, computed in the caller's thread).
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bagload") as pool:
        pending: deque = deque()
        it = iter(items)
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


# --------------------------------------------------------------------------- odometry
class DriftingOdometry:
    r"""The odometry a robot would give along one sequence: the camera's motion since the
    sequence's first frame, with errors that grow with the path travelled.

    With :math:`T_i` the ground-truth camera poses (optical axes), :math:`s_i` the path
    length up to frame i and :math:`\delta` the drift,
    :math:`T^{odom}_i = \mathrm{diag}(R_y(\delta s_i), 1)\,S\,T_0^{-1} T_i` where :math:`S`
    scales positions by :math:`1 + \delta` and :math:`R_y` turns about the first camera's y
    axis (the image's down direction: a heading drift). The frame ``odom`` is the first
    camera's optical frame; :meth:`__call__` returns ``odom -> camera_link``.

    Args:
        drift: :math:`\delta` (0.02: 2 % scale error and 0.02 rad, 1.15°, of heading per metre).
    """

    def __init__(self, drift: float):
        self.drift = float(drift)
        self.reset()

    def reset(self) -> None:
        """Start a new sequence (the odometry restarts at the identity)."""
        self._T0_inv = None
        self._last = None
        self.path_m = 0.0

    def __call__(self, T_map_opt: np.ndarray) -> np.ndarray:
        """``odom -> camera_link`` at the frame whose ground truth (optical frame in the map)
        is ``T_map_opt``."""
        T = np.asarray(T_map_opt, dtype=np.float64)
        if self._T0_inv is None:
            self._T0_inv = invert(T)
        else:
            self.path_m += float(np.linalg.norm(T[:3, 3] - self._last[:3, 3]))
        self._last = T
        rel = self._T0_inv @ T
        a = self.drift * self.path_m
        D = np.eye(4)
        D[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        rel[:3, 3] *= 1 + self.drift
        T_odom_opt = D @ rel
        T_link_opt = np.eye(4)
        T_link_opt[:3, :3] = tp.OPTICAL_ROTATION
        return T_odom_opt @ invert(T_link_opt)


# --------------------------------------------------------------------------- messages
def frame_messages(plan: BagPlan, f: Frame, stamp: int, T, color, raw, types,
                   T_odom: np.ndarray | None = None) -> list[tuple[str, object, str]]:
    """(topic, message, type) of everything one frame puts into the bag.

    Args:
        plan: the bag plan (topics, compression, depth).
        f: the frame (its id goes on the frame-id topic).
        stamp: its stamp (integer ns).
        T, color, raw: what :class:`FrameReader` read: pose, colour, raw depth.
        types: the rosbags message types to build with.
        T_odom: ``odom -> camera_link`` (:class:`DriftingOdometry`), or None.
    """
    t = plan.topics
    intr = plan.scene
    tfs = [msgs.transform_stamped_msg(T, stamp, t.map_frame, t.gt_frame, types=types)]
    if T_odom is not None:
        tfs.append(msgs.transform_stamped_msg(T_odom, stamp, t.odom_frame, t.camera_frame, types=types))
    out = [
        (t.tf, msgs.tf_message(tfs, types), tp.TF_MESSAGE),
        (t.gt_pose, msgs.pose_stamped_msg(T, stamp, t.map_frame, types), tp.POSE_STAMPED),
        (t.frame_id, msgs.string_msg(f.id, types), tp.STRING),
        (t.color_info, msgs.camera_info_msg(intr.color_intrinsics, stamp, t.color_optical_frame, types),
         tp.CAMERA_INFO),
    ]
    if plan.compressed:
        out.append((plan.color_topic, msgs.compressed_image_msg(color, plan.compressed, stamp, t.color_optical_frame,
                                                                types), tp.COMPRESSED_IMAGE))
    else:
        out.append((plan.color_topic, msgs.image_msg(color, stamp, t.color_optical_frame, "rgb8", types), tp.IMAGE))
    if plan.depth:
        out += [(t.depth_info, msgs.camera_info_msg(intr.depth_intrinsics, stamp, t.depth_optical_frame, types),
                 tp.CAMERA_INFO),
                (t.depth_image, msgs.image_msg(raw, stamp, t.depth_optical_frame, "16UC1", types), tp.IMAGE)]
    return out
