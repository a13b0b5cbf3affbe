"""Reader (and byte-exact writer helpers) for the Microsoft 7-Scenes layout.

A *scene* folder looks like this::

    stairs/
      TrainSplit.txt          "sequence2\\r\\n" lines (CRLF)
      TestSplit.txt
      seq-01/
        frame-000000.color.png   (or .color.jpg) 640x480 RGB
        frame-000000.depth.png   uint16 millimetres; 0 and 65535 are invalid
        frame-000000.pose.txt    4x4 camera-to-world, tab-separated, CRLF,
                                 3-digit exponents ("9.3817085e-001\\t")
      intrinsics.yaml          optional, written by reloc_ros (see below)

A *dataset root* holds several scene folders (chess, fire, heads, office, pumpkin,
redkitchen, stairs, or any other name that contains split files).

The real dataset ships no intrinsics. The usual values are used when a scene has no
``intrinsics.yaml``: colour f = 525, depth f = 585, centre (320, 240), 640x480. Colour and
depth are *not* registered in the real data; ``intrinsics.yaml`` may declare
``depth_registered: true`` (the synthetic scenes do), or (format version 2) record the
depth-to-colour calibration under ``depth_to_color`` (:mod:`reloc_ros.data.rgbd`): then
:meth:`Scene.depth` registers the depth to colour, and with ``pose_camera: depth`` (the pose
files are the depth camera's, as in 7-Scenes) :meth:`Scene.pose` gives colour-camera poses.
Without either, depth is sampled at the colour pixel: an approximation.

Every problem with a scene raises :class:`SevenScenesError` with the offending path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.geometry import invert, rigidity_error
from reloc_ros.data.rgbd import POSE_CAMERAS, DepthToColor, register_depth

__all__ = [
    "SEVEN_SCENES",
    "SevenScenesError",
    "Intrinsics",
    "Frame",
    "Scene",
    "Dataset",
    "open_scenes",
    "format_pose_text",
    "format_split_text",
    "parse_pose_text",
    "parse_split_text",
    "INVALID_DEPTH_VALUES",
]

#: The seven scenes of the dataset, in its usual order.
SEVEN_SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")

#: Raw depth values that mean "no measurement" (0 in some copies, 65535 in the original).
INVALID_DEPTH_VALUES = (0, 65535)

SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}
INTRINSICS_FILE = "intrinsics.yaml"
#: Version of the scene metadata (``intrinsics.yaml``) that reloc_ros writes; a file without
#: ``format_version`` is version 1. Version 2 adds ``depth_to_color`` and ``pose_camera``;
#: both versions are read.
SCENE_FORMAT_VERSION = 2
#: The versions this code reads.
SCENE_FORMAT_VERSIONS = (1, 2)
#: The commands that write a scene's metadata anew.
SCENE_REBUILD = ("python -m reloc_sim.synthetic for a synthetic scene, python -m reloc_ros.tools.bag.to_map "
                 "for a robot's bag")
#: The class table of the label images (``frame-XXXXXX.label.png``), where a scene has them.
CLASSES_FILE = "classes.yaml"
RIGID_TOL = 1e-3

_SEQ_DIR = re.compile(r"^seq-(\d+)$")
_FRAME_POSE = re.compile(r"^frame-(\d+)\.pose\.txt$")
_SPLIT_LINE = re.compile(r"^(?:sequence|seq-?)(\d+)$", re.IGNORECASE)


class SevenScenesError(ValueError):
    """A 7-Scenes scene or file is missing or malformed. The message names the path."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# --------------------------------------------------------------------------- intrinsics
def _intrinsics(d: dict, path: Path) -> Intrinsics:
    try:
        return Intrinsics.from_dict(d)
    except ValueError as e:
        raise SevenScenesError(path, str(e)) from None


#: The values commonly used for 7-Scenes colour images (Kinect v1, 640x480).
DEFAULT_COLOR_INTRINSICS = Intrinsics(525.0, 525.0, 320.0, 240.0, 640, 480)
#: The depth camera's intrinsics given with the dataset.
DEFAULT_DEPTH_INTRINSICS = Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)


# --------------------------------------------------------------------------- text formats
def _fmt_float(v: float) -> str:
    """Format like the MATLAB-written 7-Scenes files: '9.3817085e-001' (3-digit exponent)."""
    mant, exp = f"{v:.7e}".split("e")
    sign = exp[0]
    return f"{mant}e{sign}{int(exp[1:]):03d}"


def format_pose_text(T: np.ndarray) -> str:
    """Text of a ``.pose.txt`` file exactly as 7-Scenes writes it.

    Each value is right-aligned in 16 characters and followed by a tab; lines end in CRLF.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"pose must be 4x4, got {T.shape}")
    lines = ["".join(f"{_fmt_float(v):>16}\t" for v in row) for row in T]
    return "\r\n".join(lines) + "\r\n"


def parse_pose_text(text: str, path: Path | str = "<pose>") -> np.ndarray:
    """Parse a ``.pose.txt`` (any whitespace, CRLF or LF); checks it is a rigid 4x4."""
    try:
        vals = [float(v) for v in text.split()]
    except ValueError as e:
        raise SevenScenesError(path, f"pose file has a non-numeric value ({e})") from None
    if len(vals) != 16:
        raise SevenScenesError(path, f"pose file must hold 16 numbers (4x4), found {len(vals)}")
    T = np.array(vals, dtype=np.float64).reshape(4, 4)
    err = rigidity_error(T)
    if not err <= RIGID_TOL:
        raise SevenScenesError(
            path, f"pose is not a rigid transform (deviation {err:.3g} > {RIGID_TOL:g})"
        )
    return T


def format_split_text(sequences: Iterable[int]) -> str:
    """Text of a split file: 'sequenceN' lines with CRLF, as in 7-Scenes."""
    return "".join(f"sequence{int(s)}\r\n" for s in sequences)


def parse_split_text(text: str, path: Path | str = "<split>") -> list[int]:
    """Sequence numbers named in a split file ('sequence2' lines; blank lines ignored).

    A file of 0 bytes names no sequence on purpose: the test split of a map-only scene
    (the bag-to-map converter with ``test_every: 0``). One with only blank lines is refused.
    """
    if text == "":
        return []
    seqs: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _SPLIT_LINE.match(line)
        if not m:
            raise SevenScenesError(path, f"line {n}: expected 'sequenceN', got {line!r}")
        seqs.append(int(m.group(1)))
    if not seqs:
        raise SevenScenesError(path, "split file names no sequence")
    return seqs


# --------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class Frame:
    """One frame of a scene: where its files are. ``id`` is 'seq-01/frame-000000'."""

    scene: str
    seq: int
    index: int
    color_path: Path
    depth_path: Path | None
    pose_path: Path
    label_path: Path | None = None  # semantic labels (synthetic scenes); real 7-Scenes has none

    @property
    def id(self) -> str:
        return f"seq-{self.seq:02d}/frame-{self.index:06d}"


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("ascii")
    except FileNotFoundError:
        raise SevenScenesError(path, "file is missing") from None
    except UnicodeDecodeError:
        raise SevenScenesError(path, "file is not ASCII text") from None
    except OSError as e:
        raise SevenScenesError(path, f"cannot read file ({e.strerror})") from None


def read_pose(path: Path | str) -> np.ndarray:
    """Read and validate one ``.pose.txt`` (4x4 camera-to-world)."""
    path = Path(path)
    return parse_pose_text(_read_text(path), path)


def read_color(path: Path | str) -> np.ndarray:
    """Read a colour image as uint8 (H, W, 3) RGB."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise SevenScenesError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SevenScenesError(path, f"unreadable image ({e})") from None


def read_depth_raw(path: Path | str) -> np.ndarray:
    """Read a depth PNG as uint16 millimetres (H, W); 0 and 65535 mean invalid."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except FileNotFoundError:
        raise SevenScenesError(path, "depth file is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise SevenScenesError(path, f"unreadable depth image ({e})") from None
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32, np.uint8):
        raise SevenScenesError(path, f"depth must be a 16-bit single-channel PNG, got {arr.dtype} {arr.shape}")
    return arr.astype(np.uint16)


def read_depth(path: Path | str) -> np.ndarray:
    """Read a depth PNG as float32 metres (H, W), with NaN where the sensor gave nothing."""
    raw = read_depth_raw(path)
    d = raw.astype(np.float32) / 1000.0
    d[np.isin(raw, INVALID_DEPTH_VALUES)] = np.nan
    return d


# --------------------------------------------------------------------------- scene
@dataclass
class Scene:
    """One 7-Scenes scene folder.

    Args:
        root: the scene folder (it holds ``TrainSplit.txt``, ``TestSplit.txt`` and ``seq-XX``).
        name: the scene's name; the folder name by default.
    """

    root: Path
    name: str = ""
    _pose_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.name:
            # abspath, not resolve(): a symlinked scene folder keeps its own name
            self.name = Path(os.path.abspath(self.root)).name
        if not self.root.is_dir():
            raise SevenScenesError(self.root, "scene folder does not exist")
        for split, fname in SPLIT_FILES.items():
            if not (self.root / fname).is_file():
                raise SevenScenesError(self.root / fname, f"{split} split file is missing")
        missing = [s for s in self.sequences("all") if not self.seq_dir(s).is_dir()]
        if missing:
            raise SevenScenesError(
                self.seq_dir(missing[0]), "sequence named in a split file has no folder"
            )

    # -- splits
    @cached_property
    def splits(self) -> dict[str, list[int]]:
        return {
            split: parse_split_text(_read_text(self.root / f), self.root / f)
            for split, f in SPLIT_FILES.items()
        }

    def sequences(self, split: str | Sequence[int] = "all") -> list[int]:
        """Sequence numbers of a split: 'train', 'test', 'all', 'fit', 'calib' or a list.

        'calib' is the held-out part of the training split that confidence and covariance
        calibration use (:mod:`reloc_ros.core.calibration`): the last training sequence,
        or none when the scene has a single training sequence. 'fit' is the rest of the
        training split, what the network and the database are built from.
        """
        if isinstance(split, str):
            if split == "all":
                return sorted(set(self.splits["train"]) | set(self.splits["test"]))
            if split in ("fit", "calib"):
                train = list(self.splits["train"])
                calib = train[-1:] if len(train) >= 2 else []
                return calib if split == "calib" else [s for s in train if s not in calib]
            if split not in self.splits:
                raise ValueError(f"unknown split {split!r}: use 'train', 'test', 'all', 'fit', 'calib' or a list")
            return list(self.splits[split])
        return [int(s) for s in split]

    def seq_dir(self, seq: int) -> Path:
        return self.root / f"seq-{int(seq):02d}"

    # -- intrinsics
    @cached_property
    def camera(self) -> dict:
        """Scene camera description: colour and depth intrinsics, registration flag."""
        path = self.root / INTRINSICS_FILE
        cam = {
            "color": DEFAULT_COLOR_INTRINSICS,
            "depth": DEFAULT_DEPTH_INTRINSICS,
            "depth_registered": False,
            "depth_to_color": None,
            "pose_camera": "color",
            "source": "7-Scenes defaults",
        }
        if path.is_file():
            try:
                d = yaml.safe_load(_read_text(path)) or {}
            except yaml.YAMLError as e:
                raise SevenScenesError(path, f"invalid YAML ({e})") from None
            if not isinstance(d, dict) or "color" not in d:
                raise SevenScenesError(path, "expected a mapping with a 'color' entry")
            version = d.get("format_version", 1)
            if version not in SCENE_FORMAT_VERSIONS:
                age = "newer" if isinstance(version, int) and version > SCENE_FORMAT_VERSION else "older"
                raise SevenScenesError(path, f"scene metadata format version {version!r} is {age} than the one this "
                                             f"code reads ({SCENE_FORMAT_VERSION}); write the scene again "
                                             f"({SCENE_REBUILD})")
            cam["color"] = _intrinsics(d["color"], path)
            cam["depth"] = _intrinsics(d.get("depth", d["color"]), path)
            cam["depth_registered"] = bool(d.get("depth_registered", False))
            cam["source"] = str(path)
            if d.get("depth_to_color") is not None:
                try:
                    cam["depth_to_color"] = DepthToColor.from_dict(d["depth_to_color"])
                except ValueError as e:
                    raise SevenScenesError(path, str(e)) from None
                if cam["depth_registered"]:
                    raise SevenScenesError(path, "depth_registered: true and a depth_to_color calibration contradict")
            cam["pose_camera"] = str(d.get("pose_camera", "color"))
            if cam["pose_camera"] not in POSE_CAMERAS:
                raise SevenScenesError(path, f"pose_camera must be one of {list(POSE_CAMERAS)}, "
                                             f"got {cam['pose_camera']!r}")
            if cam["pose_camera"] == "depth" and cam["depth_to_color"] is None:
                raise SevenScenesError(path, "pose_camera: depth needs a depth_to_color calibration")
        return cam

    @property
    def color_intrinsics(self) -> Intrinsics:
        return self.camera["color"]

    @property
    def depth_intrinsics(self) -> Intrinsics:
        return self.camera["depth"]

    # -- frames
    def frames(self, split: str | Sequence[int] = "all") -> list[Frame]:
        """All frames of the given split, sorted by (sequence, index)."""
        out: list[Frame] = []
        for seq in self.sequences(split):
            d = self.seq_dir(seq)
            if not d.is_dir():
                raise SevenScenesError(d, "sequence folder is missing")
            idx = sorted(
                int(m.group(1)) for p in d.iterdir() if (m := _FRAME_POSE.match(p.name))
            )
            if not idx:
                raise SevenScenesError(d, "sequence folder holds no frame-XXXXXX.pose.txt")
            for i in idx:
                stem = d / f"frame-{i:06d}"
                color = stem.with_name(stem.name + ".color.png")
                if not color.is_file():
                    jpg = stem.with_name(stem.name + ".color.jpg")
                    if not jpg.is_file():
                        raise SevenScenesError(color, "colour image (.color.png or .color.jpg) is missing")
                    color = jpg
                depth = stem.with_name(stem.name + ".depth.png")
                label = stem.with_name(stem.name + ".label.png")
                out.append(
                    Frame(
                        scene=self.name,
                        seq=seq,
                        index=i,
                        color_path=color,
                        depth_path=depth if depth.is_file() else None,
                        pose_path=stem.with_name(stem.name + ".pose.txt"),
                        label_path=label if label.is_file() else None,
                    )
                )
        return out

    def raw_pose(self, frame: Frame) -> np.ndarray:
        """4x4 camera-to-world pose of a frame as its pose file has it (validated, cached)."""
        key = frame.pose_path
        if key not in self._pose_cache:
            self._pose_cache[key] = read_pose(key)
        return self._pose_cache[key].copy()

    def pose(self, frame: Frame) -> np.ndarray:
        """4x4 camera-to-world pose of the frame's colour camera: the pose file's, moved from
        the depth camera to the colour camera where ``pose_camera`` is ``depth``."""
        T = self.raw_pose(frame)
        cam = self.camera
        if cam["pose_camera"] == "depth":
            T = T @ invert(cam["depth_to_color"].T_color_depth)
        return T

    def poses(self, frames: Sequence[Frame]) -> np.ndarray:
        """Stacked (N, 4, 4) poses of frames."""
        return np.stack([self.pose(f) for f in frames]) if frames else np.zeros((0, 4, 4))

    def color(self, frame: Frame) -> np.ndarray:
        """uint8 (H, W, 3) RGB image of a frame."""
        return read_color(frame.color_path)

    @cached_property
    def classes(self) -> list[str] | None:
        """Names of the label ids (``classes.yaml``), or None for a scene without labels."""
        path = self.root / CLASSES_FILE
        if not path.is_file():
            return None
        try:
            d = yaml.safe_load(_read_text(path)) or {}
        except yaml.YAMLError as e:
            raise SevenScenesError(path, f"invalid YAML ({e})") from None
        names = d.get("classes") if isinstance(d, dict) else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
                or len(names) > 255:
            raise SevenScenesError(path, "expected 'classes': a list of 1 to 255 class names")
        return names

    def labels(self, frame: Frame) -> np.ndarray | None:
        """uint8 (H, W) class ids of a frame (indices into :attr:`classes`), or None when
        the frame has no label image: its segmentation task is then masked out, never faked."""
        if frame.label_path is None:
            return None
        try:
            with Image.open(frame.label_path) as im:
                lab = np.asarray(im)
        except (OSError, UnidentifiedImageError) as e:
            raise SevenScenesError(frame.label_path, f"unreadable label image ({e})") from None
        if lab.dtype != np.uint8 or lab.ndim != 2:
            raise SevenScenesError(frame.label_path, f"label image must be 8-bit single channel, got "
                                                     f"{lab.dtype} {lab.shape}")
        classes = self.classes
        if classes is None:
            raise SevenScenesError(self.root / CLASSES_FILE, "label images exist but the class table is missing")
        if lab.size and int(lab.max()) >= len(classes):
            raise SevenScenesError(frame.label_path, f"class id {int(lab.max())} is not in {CLASSES_FILE} "
                                                     f"({len(classes)} classes)")
        return lab

    def depth(self, frame: Frame, registered: bool = True) -> np.ndarray:
        """float32 (H, W) depth in metres, NaN where invalid: registered to the colour camera
        (at its size) where the scene records a ``depth_to_color`` calibration and
        ``registered`` is true, else the depth file as it is."""
        if frame.depth_path is None:
            raise SevenScenesError(
                frame.pose_path.with_name(f"frame-{frame.index:06d}.depth.png"), "depth file is missing"
            )
        d = read_depth(frame.depth_path)
        calib = self.camera["depth_to_color"]
        if registered and calib is not None:
            try:
                d = register_depth(d, self.depth_intrinsics, self.color_intrinsics, calib)
            except ValueError as e:
                raise SevenScenesError(frame.depth_path, str(e)) from None
        return d

    def validate(self, split: str | Sequence[int] = "all", images: bool = True) -> int:
        """Read every pose (and image header when ``images``); returns the frame count.

        Raises :class:`SevenScenesError` at the first problem.
        """
        frames = self.frames(split)
        for f in frames:
            self.pose(f)
            if images:
                for p in (f.color_path, f.depth_path):
                    if p is None:
                        continue
                    try:
                        with Image.open(p) as im:
                            im.verify()
                    except (UnidentifiedImageError, OSError, SyntaxError) as e:
                        raise SevenScenesError(p, f"unreadable image ({e})") from None
        return len(frames)

    def summary(self, split: str | Sequence[int] = "all") -> dict:
        """Counts and extent of a split, for logs and the demo."""
        frames = self.frames(split)
        P = self.poses(frames)
        c = P[:, :3, 3] if len(P) else np.zeros((0, 3))
        return {
            "scene": self.name,
            "split": split if isinstance(split, str) else list(split),
            "sequences": self.sequences(split),
            "frames": len(frames),
            "extent_m": (c.max(0) - c.min(0)).round(3).tolist() if len(c) else [0, 0, 0],
            "intrinsics": self.camera["source"],
        }


# --------------------------------------------------------------------------- dataset root
class Dataset:
    """A folder of scene folders (the 7-Scenes root, or a synthetic root).

    Args:
        root: the folder; every sub-folder that holds ``TrainSplit.txt`` is a scene.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SevenScenesError(self.root, "dataset folder does not exist")
        names = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and (p / SPLIT_FILES["train"]).is_file()
        )
        if not names:
            raise SevenScenesError(self.root, "no scene folder (with TrainSplit.txt) inside")
        # Known 7-Scenes names first, in the dataset's order, then the others.
        order = {n: i for i, n in enumerate(SEVEN_SCENES)}
        self.names = sorted(names, key=lambda n: (order.get(n, len(order)), n))
        self._scenes: dict[str, Scene] = {}

    def __getitem__(self, name: str) -> Scene:
        if name not in self.names:
            raise KeyError(f"{self.root}: no scene {name!r} (have {', '.join(self.names)})")
        if name not in self._scenes:
            self._scenes[name] = Scene(self.root / name)
        return self._scenes[name]

    def __iter__(self):
        return (self[n] for n in self.names)

    def __len__(self) -> int:
        return len(self.names)


def open_scenes(path: Path | str, names: Sequence[str] | None = None) -> list[Scene]:
    """Open either one scene folder or a dataset root (optionally only ``names``)."""
    path = Path(path)
    if (path / SPLIT_FILES["train"]).is_file() or (path / SPLIT_FILES["test"]).is_file():
        scene = Scene(path)
        if names and scene.name not in names:
            raise SevenScenesError(path, f"scene is {scene.name!r}, not one of {list(names)}")
        return [scene]
    ds = Dataset(path)
    return [ds[n] for n in (names or ds.names)]

