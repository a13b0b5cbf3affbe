"""Lens distortion undone with OpenCV: images without distortion, at the same ``K``.

Used by the node on every camera image whose ``sensor_msgs/CameraInfo`` carries a distortion
(:class:`UndistortCache`), and by the bag-to-map converter through
:mod:`reloc_ros.data.registration`. Intrinsics are 3x3 ``K`` matrices with the centre of the
top-left pixel at (0, 0); sizes are ``(width, height)``.

Distortion models (``sensor_msgs/CameraInfo.distortion_model``): ``plumb_bob`` (k1 k2 p1 p2
k3) and ``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6), OpenCV's standard model;
``equidistant`` (k1 k2 k3 k4), OpenCV's fisheye model. An all-zero (or empty) D of any model
is no distortion. The undistorted image keeps the camera's ``K`` (not ``CameraInfo.P``), so
the intrinsics the refiner uses stay the calibration's.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["DISTORTION_MODELS", "has_distortion", "check_distortion", "undistort_color", "Undistorter",
           "UndistortCache"]

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


def has_distortion(D: Sequence[float]) -> bool:
    """Whether any coefficient of ``D`` is non-zero (NaN counts as non-zero)."""
    return bool(np.any(np.asarray(D, dtype=np.float64) != 0.0))


def check_distortion(model: str, D: Sequence[float]) -> None:
    """Raise ValueError when ``(model, D)`` is a distortion OpenCV cannot undo here."""
    if not has_distortion(D):
        return
    n = len(D)
    if model in ("plumb_bob", "rational_polynomial"):
        if n not in (4, 5, 8, 12, 14):
            raise ValueError(f"distortion model {model} with {n} coefficients")
    elif model == "equidistant":
        if n != 4:
            raise ValueError(f"equidistant distortion needs 4 coefficients, got {n}")
    else:
        raise ValueError(f"unsupported distortion model {model!r} (known: {', '.join(DISTORTION_MODELS)})")
    if not np.all(np.isfinite(np.asarray(D, dtype=np.float64))):
        raise ValueError("distortion coefficients are not finite")


def _maps(K: np.ndarray, D: Sequence[float], model: str, size: tuple[int, int]):
    """OpenCV's remap tables (x, y; float32) from the undistorted image to the distorted one."""
    K = np.asarray(K, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    if model == "equidistant":
        return cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K, size, cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(K, D, None, K, size, cv2.CV_32FC1)


def undistort_color(rgb: np.ndarray, K: np.ndarray, D: Sequence[float], model: str = "plumb_bob") -> np.ndarray:
    """The pinhole image (same K, D = 0) of a distorted one: bilinear, black outside. For one
    image; a stream uses :class:`Undistorter`, which builds the tables once."""
    check_distortion(model, D)
    if not has_distortion(D):
        return rgb
    h, w = rgb.shape[:2]
    return Undistorter(K, D, model, (w, h))(rgb)


class Undistorter:
    """Undo one camera's distortion on images of one size: the remap tables are built once,
    here, and each call is one bilinear ``cv2.remap`` (black outside the distorted image).

    Args:
        K: 3x3 intrinsics at ``size``.
        D: the distortion coefficients (all zero or empty: the identity).
        model: one of :data:`DISTORTION_MODELS`.
        size: ``(width, height)`` of the images.

    Raises:
        ValueError: a model or D that :func:`check_distortion` rejects, a bad K or size.
    """

    def __init__(self, K, D: Sequence[float], model: str = "plumb_bob", size: tuple[int, int] = (0, 0)):
        check_distortion(model, D)
        self.K = np.array(K, dtype=np.float64).reshape(3, 3)
        self.D = tuple(float(d) for d in D)
        self.model = str(model)
        self.size = (int(size[0]), int(size[1]))
        self.identity = not has_distortion(self.D)
        self._mx = self._my = None
        if self.identity:
            return
        if not (np.all(np.isfinite(self.K)) and self.K[0, 0] > 0 and self.K[1, 1] > 0):
            raise ValueError(f"K must be finite with positive focal lengths, got {self.K.reshape(-1).tolist()}")
        if min(self.size) <= 0:
            raise ValueError(f"image size must be positive, got {self.size[0]}x{self.size[1]}")
        self._mx, self._my = _maps(self.K, self.D, self.model, self.size)

    def matches(self, K, D: Sequence[float], model: str, size: tuple[int, int]) -> bool:
        """Whether this undistorter is the one of ``(K, D, model, size)``."""
        return (tuple(int(s) for s in size) == self.size and str(model) == self.model
                and tuple(float(d) for d in D) == self.D and np.array_equal(np.asarray(K, np.float64), self.K))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The undistorted image (the same array, not a copy, when there is no distortion).

        Raises:
            ValueError: an image of another size than the tables'.
        """
        if self.identity:
            return image
        h, w = image.shape[:2]
        if (w, h) != self.size:
            raise ValueError(f"image is {w}x{h}, the undistortion tables are for {self.size[0]}x{self.size[1]}")
        return cv2.remap(image, self._mx, self._my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


class UndistortCache:
    """The :class:`Undistorter` of a stream's current camera, rebuilt only when the camera
    (K, D, model) or the image size changes. Not thread-safe: one user (the node's worker).

    Attributes:
        builds: how many undistorters were built (the remap tables of each distorted one).
    """

    def __init__(self):
        self.undistorter: Undistorter | None = None
        self.builds = 0

    def __call__(self, image: np.ndarray, K, D: Sequence[float], model: str) -> np.ndarray:
        """``image`` undistorted with ``(K, D, model)``; ``K`` is at the image's size."""
        if not has_distortion(D):
            return image
        h, w = image.shape[:2]
        u = self.undistorter
        if u is None or not u.matches(K, D, model, (w, h)):
            u = self.undistorter = Undistorter(K, D, model, (w, h))
            self.builds += 1
        return u(image)
