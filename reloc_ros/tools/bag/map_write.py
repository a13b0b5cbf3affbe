"""Bag to map, stage 5: write the scene folder (complete, or absent on any failure).

:func:`write_scene` reads the kept images a second time and writes colour (the bag's JPEG
as it is, else PNG; undistorted when the camera has distortion), depth registered to the
colour camera, poses, the splits, ``intrinsics.yaml``, ``frames.csv`` and
``conversion.json`` under a temporary name, then renames the folder. :func:`check_scene_out`
and :func:`check_writable` are the output checks that run before anything is read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from reloc_ros import __version__
from reloc_ros.data import registration as reg
from reloc_ros.data.sevenscenes import INTRINSICS_FILE, SCENE_FORMAT_VERSION, SPLIT_FILES, format_pose_text, format_split_text
from reloc_ros.ros import messages as msgs
from reloc_ros.tools.bag.map_config import BagMapError, MapInputError
from reloc_ros.tools.bag.map_scan import BagScan, CameraModel, depth_extrinsic, open_reader
from reloc_ros.tools.bag.map_select import Selection, decode_color, sequence_numbers

__all__ = ["check_writable", "check_scene_out", "write_scene"]


# --------------------------------------------------------------------------- output checks
def check_writable(path: Path, what: str) -> None:
    """Raise :class:`MapInputError` unless ``path`` can be created: its nearest existing
    ancestor is a writable folder.

    Args:
        path: the file or folder to create.
        what: what it is, for the message ("scene folder", "database file").
    """
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise MapInputError(path, f"cannot create the {what}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MapInputError(path, f"cannot create the {what}: {parent} is not writable")


def check_scene_out(out: Path | str, overwrite: bool) -> None:
    """Check that the scene folder ``out`` may be written.

    Args:
        out: the scene folder.
        overwrite: an existing folder written by this converter may be replaced.

    Raises:
        FileExistsError: ``out`` exists (without ``overwrite``), or was not written by this
            converter.
        MapInputError: ``out`` cannot be created.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    if out.exists() and not (out / "conversion.json").is_file():
        raise FileExistsError(f"{out}: exists and was not written by this converter (no conversion.json); "
                              "not replacing it")
    check_writable(out, "scene folder")


# --------------------------------------------------------------------------- pixels
def _store_color(bag: Path, topic: str, m, cam: CameraModel) -> tuple[bytes, str]:
    """(file bytes, suffix) of a colour message: a JPEG as it is, anything else as RGB PNG;
    undistorted (and then always PNG) when the camera info has distortion.

    Args:
        bag, topic: where the message comes from (named in errors).
        m: the Image or CompressedImage message.
        cam: its camera.
    """
    data = bytes(m.data) if hasattr(m, "format") else None
    if data is not None and data[:3] == b"\xff\xd8\xff" and not reg.has_distortion(cam.D):
        try:
            with Image.open(io.BytesIO(data)) as im:  # the header only
                size = im.size
        except OSError as e:
            raise BagMapError(bag, topic, f"unreadable JPEG ({e})") from None
        if size != (cam.intrinsics.width, cam.intrinsics.height):
            raise BagMapError(bag, topic, f"image is {size[0]}x{size[1]}, its camera info says "
                                          f"{cam.intrinsics.width}x{cam.intrinsics.height}")
        return data, ".color.jpg"
    rgb = decode_color(bag, topic, m)
    if (rgb.shape[1], rgb.shape[0]) != (cam.intrinsics.width, cam.intrinsics.height):
        raise BagMapError(bag, topic, f"image is {rgb.shape[1]}x{rgb.shape[0]}, its camera info says "
                                      f"{cam.intrinsics.width}x{cam.intrinsics.height}")
    rgb = reg.undistort_color(rgb, cam.intrinsics.K, cam.D, cam.model)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return buf.tobytes(), ".color.png"


def _register_depth(bag: Path, topic: str, m, s: BagScan, T_color_depth: np.ndarray) -> np.ndarray:
    """The depth image ``m`` in mm, undistorted and registered to the colour camera.

    Args:
        bag, topic: where the message comes from (named in errors).
        m: the depth Image message (16UC1 mm or 32FC1 m).
        s: the scan (both cameras).
        T_color_depth: the depth camera in the colour camera (:func:`depth_extrinsic`).
    """
    try:
        raw = msgs.image_to_array(m)
    except msgs.ImageConversionError as e:
        raise BagMapError(bag, topic, f"depth image: {e}") from None
    if raw.ndim != 2:
        raise BagMapError(bag, topic, f"depth image has {raw.shape[2]} channels; expected 16UC1 or 32FC1")
    d, cam = s.depth, s.color
    if (raw.shape[1], raw.shape[0]) != (d.intrinsics.width, d.intrinsics.height):
        raise BagMapError(bag, topic, f"depth image is {raw.shape[1]}x{raw.shape[0]}, its camera info says "
                                      f"{d.intrinsics.width}x{d.intrinsics.height}")
    mm = reg.undistort_depth(reg.depth_to_mm(raw), d.intrinsics.K, d.D, d.model)
    size = (cam.intrinsics.width, cam.intrinsics.height)
    if d.frame == s.camera_frame and np.allclose(T_color_depth, np.eye(4)):
        if d.intrinsics == cam.intrinsics:
            return mm
        return reg.resample_depth(mm, d.intrinsics.K, cam.intrinsics.K, size)
    return reg.reproject_depth(mm, d.intrinsics.K, cam.intrinsics.K, size, T_color_depth)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to the file ``path``."""
    with open(path, "wb") as f:
        f.write(data)


def _frame_numbers(sel: Selection, roles: Sequence[str]) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """(image index -> (sequence, frame number), sequence -> its number of frames), guards left out.

    Args:
        sel: the selection.
        roles: the role of each kept frame.
    """
    frame_of: dict[int, tuple[int, int]] = {}
    n_in_seq: dict[int, int] = {}
    for k, r, q in zip(sel.kept, roles, sequence_numbers(roles)):
        if r == "guard":
            continue
        frame_of[k] = (q, n_in_seq.get(q, 0))
        n_in_seq[q] = n_in_seq.get(q, 0) + 1
    return frame_of, n_in_seq


class _FrameWriter:
    """Writes the frames' files as the bag's colour and depth messages come by.

    A colour image comes with its pose; its depth image (which may come before or after it)
    is registered and written once both are at hand.

    Args:
        s: the scan.
        poses: the camera pose of each image.
        sel: the selection.
        frame_of: image index -> (sequence, frame number) of the frames to write.
        tmp: the scene folder being written.
    """

    def __init__(self, s: BagScan, poses: Sequence, sel: Selection, frame_of: dict, tmp: Path):
        self.s, self.poses, self.sel, self.frame_of, self.tmp = s, poses, sel, frame_of, tmp
        self.T_color_depth = depth_extrinsic(s)
        self.depth_wanted = {sel.depth_index[k]: k for k in frame_of if k in sel.depth_index}
        self.ki = self.kd = -1
        self.pending_depth: dict[int, np.ndarray] = {}
        self.waiting: dict[int, Path] = {}  # image index -> frame stem, waiting for its depth

    def color(self, reader, conn, raw) -> None:
        """The next colour message: its image and pose file, when it is a kept frame."""
        self.ki += 1
        ki = self.ki
        if ki not in self.frame_of:
            return
        q, i = self.frame_of[ki]
        stem = self.tmp / f"seq-{q:02d}" / f"frame-{i:06d}"
        data, suffix = _store_color(self.s.bag, conn.topic, reader.deserialize(raw, conn.msgtype), self.s.color)
        _write_bytes(stem.with_name(stem.name + suffix), data)
        _write_bytes(stem.with_name(stem.name + ".pose.txt"), format_pose_text(self.poses[ki]).encode())
        if ki in self.sel.depth_index:
            self.waiting[ki] = stem

    def depth(self, reader, conn, raw) -> None:
        """The next depth message: registered and kept, when a kept frame needs it."""
        self.kd += 1
        if self.kd not in self.depth_wanted:
            return
        self.pending_depth[self.depth_wanted[self.kd]] = _register_depth(
            self.s.bag, conn.topic, reader.deserialize(raw, conn.msgtype), self.s, self.T_color_depth)

    def flush(self) -> None:
        """Write the depth files of the frames whose colour and depth are both at hand."""
        for k in [k for k in self.waiting if k in self.pending_depth]:
            stem = self.waiting.pop(k)
            ok, buf = cv2.imencode(".png", self.pending_depth.pop(k))
            _write_bytes(stem.with_name(stem.name + ".depth.png"), buf.tobytes())


def _write_frames(s: BagScan, fw: _FrameWriter, progress: bool) -> None:
    """Read the bag's colour and depth images again and write the frames.

    Args:
        s: the scan.
        fw: the frame writer.
        progress: show a progress bar.

    Raises:
        BagMapError: a damaged bag, or a depth image that is gone on the second read.
    """
    c = s.conf
    reader = open_reader(s.bag)
    topic = None
    try:
        conns = [x for x in reader.connections if x.topic in (c.image_topic, c.depth_topic)]
        total = len(s.image_ns) + len(s.depth_ns)
        for conn, _, raw in tqdm(reader.messages(connections=conns), total=total, desc="write", unit="msg",
                                 disable=not progress, leave=False):
            topic = conn.topic
            (fw.color if topic == c.image_topic else fw.depth)(reader, conn, raw)
            fw.flush()
        if fw.waiting:
            raise BagMapError(s.bag, c.depth_topic, f"{len(fw.waiting)} depth image(s) were not found on the second "
                                                    "read (the bag changed?)")
    except (BagMapError, OSError):
        raise
    except Exception as e:
        raise BagMapError(s.bag, topic, f"cannot read the bag past here ({type(e).__name__}: {e}); "
                                        "is the file truncated?") from None
    finally:
        reader.close()


def _write_metadata(tmp: Path, s: BagScan, sel: Selection, roles: Sequence[str], frame_of: dict,
                    extra: dict | None) -> dict:
    """Write the splits, ``intrinsics.yaml``, ``frames.csv`` and ``conversion.json``; returns
    the summary that ``conversion.json`` holds.

    Args:
        tmp: the scene folder being written.
        s: the scan.
        sel: the selection.
        roles: the role of each kept frame.
        frame_of: image index -> (sequence, frame number).
        extra: entries added to the summary (counts, coverage, ...).
    """
    train = sorted({frame_of[k][0] for k, r in zip(sel.kept, roles) if r == "train"})
    test = sorted({frame_of[k][0] for k, r in zip(sel.kept, roles) if r == "test"})
    (tmp / SPLIT_FILES["train"]).write_bytes(format_split_text(train).encode())
    (tmp / SPLIT_FILES["test"]).write_bytes(format_split_text(test).encode())
    intr = s.color.intrinsics.as_dict()
    (tmp / INTRINSICS_FILE).write_text(yaml.safe_dump(
        {"format_version": SCENE_FORMAT_VERSION, "color": intr, "depth": dict(intr), "depth_registered": True},
        sort_keys=False))
    rows = []
    for k, r in zip(sel.kept, roles):
        q, i = frame_of.get(k, (0, -1))
        rows.append({"stamp_ns": s.image_ns[k], "role": r, "seq": q if r != "guard" else "",
                     "frame": i if r != "guard" else ""})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["stamp_ns", "role", "seq", "frame"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (tmp / "frames.csv").write_text(buf.getvalue())
    summary = {"bag": str(s.bag), "converter": f"reloc_ros.tools.bag.to_map {__version__}",
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": s.conf.as_dict(),
               "camera_frame": s.camera_frame, "map_frame": s.map_frame, "image_type": s.image_type,
               "train_sequences": train, "test_sequences": test, **(extra or {})}
    (tmp / "conversion.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out``, replacing an old ``out`` last."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write_scene(s: BagScan, poses: Sequence, sel: Selection, roles: Sequence[str], out: Path | str, *,
                overwrite: bool = False, progress: bool = True, extra: dict | None = None) -> dict:
    """Stage 5: write the scene folder ``out`` (complete, or absent on any failure).

    Args:
        s: the scan.
        poses: the camera pose of each image.
        sel: the selection.
        roles: the role of each kept frame ('train', 'test' or 'guard').
        out: the scene folder.
        overwrite: replace an ``out`` written by this converter.
        progress: show a progress bar.
        extra: entries added to the summary.

    Returns:
        The summary that ``conversion.json`` holds.
    """
    out = Path(out)
    check_scene_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        frame_of, n_in_seq = _frame_numbers(sel, roles)
        fw = _FrameWriter(s, poses, sel, frame_of, tmp)
        for q in n_in_seq:
            (tmp / f"seq-{q:02d}").mkdir()
        _write_frames(s, fw, progress)
        summary = _write_metadata(tmp, s, sel, roles, frame_of, extra)
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
