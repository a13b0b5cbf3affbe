"""Bag to map, the settings: :class:`MapConfig` (``config/bag_to_map.yaml``) and the errors.

:class:`BagMapError` is a problem with the bag (it names the bag, the topic and the problem);
:class:`MapInputError` a problem with another input or output of the command (a path that
cannot be written, a bad option). The stages that use them:
:mod:`reloc_ros.tools.bag.to_map`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["BagMapError", "MapInputError", "MapConfig", "load_conf", "sibling_info"]


class BagMapError(RuntimeError):
    """A bag that cannot become a map. ``str(err)`` names the bag, the topic and the problem.

    Args:
        bag: the bag folder.
        topic: the topic (or file) at fault, or None.
        problem: what is wrong, in a sentence.
    """

    def __init__(self, bag: Path | str, topic: str | None, problem: str):
        self.bag, self.topic, self.problem = str(bag), topic, problem
        super().__init__(f"{bag}: {topic}: {problem}" if topic else f"{bag}: {problem}")


class MapInputError(ValueError):
    """An input or output of the command that cannot be used. ``str(err)`` is one line:
    ``"<what>: <problem>"``.

    Args:
        what: the path or option at fault.
        problem: what is wrong, in a sentence.
    """

    def __init__(self, what: Path | str, problem: str):
        self.what, self.problem = str(what), problem
        super().__init__(f"{what}: {problem}")


@dataclass(frozen=True)
class MapConfig:
    """Settings of the conversion (YAML: ``config/bag_to_map.yaml``; every field is also a
    command-line flag, ``image_topic`` -> ``--image-topic``).

    Topics ('' = not used, or derived as said):
        image_topic: colour, ``sensor_msgs/Image`` or ``CompressedImage``.
        info_topic: its CameraInfo ('' : ``camera_info`` beside the image topic).
        depth_topic: depth (16UC1 mm or 32FC1 m; '' : no depth).
        depth_info_topic: its CameraInfo ('' : ``camera_info`` beside the depth topic).
        tf_topic, tf_static_topic: the TF topics.
    Poses:
        pose_source: 'tf', 'topic' or 'tum'.
        map_frame: the map (world) frame of the scene ('tf' and 'tum'; 'topic' takes the
            pose messages' header frame and checks it against this when given).
        camera_frame: the colour optical frame ('' : the images' ``header.frame_id``).
        pose_topic: PoseStamped / Odometry / PoseWithCovarianceStamped topic ('topic').
        pose_frame: the frame a PoseStamped / TUM pose is the pose of (Odometry: its
            ``child_frame_id``).
        trajectory: the TUM file ('tum').
        pose_tolerance_s: the farthest a pose sample may be from an image stamp.
    Frames:
        keyframes, keyframe_m, keyframe_deg: motion-based keyframes.
        max_frames: cap on the frames kept (0: none).
        blur_ratio, blur_window_s: the sharpness filter (ratio 0: off).
        depth_tolerance_s: the farthest a depth image's stamp may be from the colour one.
        distortion: 'undistort' or 'refuse' images whose CameraInfo has distortion.
    Splits:
        test_block_s, test_every, guard_s: held-out time blocks (test_every 0: no test split).
    """

    image_topic: str = "/camera/color/image_raw"
    info_topic: str = ""
    depth_topic: str = ""
    depth_info_topic: str = ""
    tf_topic: str = "/tf"
    tf_static_topic: str = "/tf_static"
    pose_source: str = "tf"
    map_frame: str = "map"
    camera_frame: str = ""
    pose_topic: str = ""
    pose_frame: str = "base_link"
    trajectory: str = ""
    pose_tolerance_s: float = 0.1
    keyframes: bool = True
    keyframe_m: float = 0.05
    keyframe_deg: float = 5.0
    max_frames: int = 0
    blur_ratio: float = 0.35
    blur_window_s: float = 2.0
    depth_tolerance_s: float = 0.02
    distortion: str = "undistort"
    test_block_s: float = 10.0
    test_every: int = 5
    guard_s: float = 2.0

    def __post_init__(self) -> None:
        if self.pose_source not in ("tf", "topic", "tum"):
            raise ValueError(f"pose_source must be tf, topic or tum, got {self.pose_source!r}")
        if self.pose_source == "topic" and not self.pose_topic:
            raise ValueError("pose_source 'topic' needs pose_topic")
        if self.pose_source == "tum" and not self.trajectory:
            raise ValueError("pose_source 'tum' needs trajectory (a TUM file)")
        if self.distortion not in ("undistort", "refuse"):
            raise ValueError(f"distortion must be undistort or refuse, got {self.distortion!r}")
        for name in ("pose_tolerance_s", "keyframe_m", "keyframe_deg", "blur_ratio", "blur_window_s",
                     "depth_tolerance_s", "guard_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if not self.test_block_s > 0:
            raise ValueError(f"test_block_s must be > 0, got {self.test_block_s}")
        if self.test_every < 0 or self.test_every == 1 or self.max_frames < 0:
            raise ValueError("test_every must be 0 (no test split) or >= 2, and max_frames >= 0")

    @classmethod
    def from_dict(cls, d: dict) -> "MapConfig":
        """The settings of a mapping field -> value; raises ValueError for an unknown field."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(**d)

    def as_dict(self) -> dict:
        """Field -> value."""
        return dataclasses.asdict(self)


def load_conf(path: Path | None, overrides: dict) -> MapConfig:
    """The settings of a YAML file, with command-line overrides.

    Args:
        path: the YAML file (None: the defaults).
        overrides: field -> value; None values are ignored (a flag not given).

    Raises:
        ValueError: an unreadable file, not a mapping, an unknown field or a bad value.
    """
    d: dict = {}
    if path is not None:
        try:
            d = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{path}: cannot read the config ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
    d.update({k: v for k, v in overrides.items() if v is not None})
    return MapConfig.from_dict(d)


def sibling_info(topic: str) -> str:
    """The ``camera_info`` topic beside an image ``topic`` (raw or ``/compressed``)."""
    base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
    return base.rsplit("/", 1)[0] + "/camera_info"
