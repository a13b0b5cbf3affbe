"""SIFT (Lowe, IJCV 2004; OpenCV's implementation) matched by the ratio test, optionally mutual."""

from __future__ import annotations

import cv2
import numpy as np

from reloc_ros.core.matchers import MATCHERS, Features, LocalFeatures

__all__ = ["Sift", "grey_at"]


def grey_at(rgb_HW3: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The grey image at ``image_size`` (width, height), area-filtered."""
    w, h = image_size
    grey = cv2.cvtColor(np.ascontiguousarray(rgb_HW3), cv2.COLOR_RGB2GRAY)
    if grey.shape != (h, w):
        grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
    return grey


@MATCHERS.register("sift")
class Sift(LocalFeatures):
    """SIFT keypoints (128 uint8), Lowe's ratio test (``ratio``) and, with ``mutual``, only the
    matches that are also the nearest from the other side.

    Example::

        m = Sift(ratio=0.8, mutual=True)
        a, b = m.extract(img0, (320, 240), 600), m.extract(img1, (320, 240), 600)
        ij = m.match(a, b, (320, 240))
    """

    descriptor_dim = 128
    descriptor_dtype = np.uint8
    packages = (("opencv-python-headless", "5.0.0.93", "Apache-2.0"),)

    def __init__(self, ratio: float = 0.8, mutual: bool = False):
        super().__init__(ratio, mutual)
        self.bf = cv2.BFMatcher(cv2.NORM_L2)

    def extract(self, rgb_HW3, image_size, max_keypoints) -> Features:
        n = int(max_keypoints)
        kps, desc = cv2.SIFT_create(nfeatures=n).detectAndCompute(grey_at(rgb_HW3, image_size), None)
        if desc is None or not kps:
            return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), np.zeros(0, np.float32))
        order = np.argsort([-k.response for k in kps], kind="stable")[:n]
        return Features(np.array([kps[i].pt for i in order], np.float32).reshape(-1, 2),
                        np.clip(np.rint(desc[order]), 0, 255).astype(np.uint8),
                        np.array([kps[i].response for i in order], np.float32))

    def match(self, a, b, image_size) -> np.ndarray:
        if len(a) < 1 or len(b) < 2:
            return np.zeros((0, 2), np.int64)
        da, db = a.desc.astype(np.float32), b.desc.astype(np.float32)
        pairs = [(p[0].queryIdx, p[0].trainIdx) for p in self.bf.knnMatch(da, db, k=2)
                 if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if self.mutual and pairs:
            back = {m.queryIdx: m.trainIdx for m in self.bf.match(db, da)}
            pairs = [(i, j) for i, j in pairs if back.get(j) == i]
        return np.array(pairs, np.int64).reshape(-1, 2)
