"""Pinhole camera intrinsics (no ROS, no dataset format): what a query image's pixels mean.

The node gets them from ``sensor_msgs/CameraInfo`` (:func:`reloc_ros.ros.messages.camera_info_to_intrinsics`),
the 7-Scenes reader from a scene's ``intrinsics.yaml`` or the dataset's defaults
(:mod:`reloc_ros.data.sevenscenes`), and the database stores them per scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Intrinsics"]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of one camera, in pixels, for an image of ``width`` x ``height``.

    Attributes:
        fx, fy: focal lengths (pixels).
        cx, cy: principal point (pixels; the centre of the top-left pixel is (0, 0)).
        width, height: the image size these values belong to.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        """3x3 calibration matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics for the same camera resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        # Pixel centres: continuous coordinate u maps to (u + 0.5) * s - 0.5.
        return Intrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=int(width),
            height=int(height),
        )

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("fx", "fy", "cx", "cy", "width", "height")}

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        """Inverse of :meth:`as_dict`. Raises ``ValueError`` on a missing or bad entry."""
        try:
            return cls(fx=float(d["fx"]), fy=float(d["fy"]), cx=float(d["cx"]), cy=float(d["cy"]),
                       width=int(d["width"]), height=int(d["height"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"bad intrinsics entry {d!r}: {e}") from None
