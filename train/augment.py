"""Appearance augmentation for the rendered-to-real gap: blur, noise, JPEG and exposure.

Rendered frames are sharp, noiseless, losslessly stored and evenly exposed; a robot's camera
gives motion blur, sensor noise, JPEG artefacts and exposure changes (real 7-Scenes is
recompressed JPEG with motion blur). :func:`augment_image` applies a random mix of them to a
uint8 RGB image at the network's input size; :class:`AugmentConfig` (``data.augment``) sets
how often and how strongly. Geometry is never changed: the relative pose stays exact.

    aug = AugmentConfig(p=0.5)
    img2 = augment_image(img, aug, np.random.default_rng(0))
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["AugmentConfig", "augment_image"]


@dataclass
class AugmentConfig:
    """Attributes:
        p: the probability that a training input is augmented (0: never, the default).
        variants: with a frozen, cached encoder prefix, the augmented copies of every frame
            that are cached beside the clean one (a training input then picks one of them with
            probability ``p``); images (no cache) are augmented afresh every time.
        blur_sigma: the largest Gaussian blur sigma (pixels at the input size).
        motion_px: the longest motion-blur streak (pixels; 0: none).
        noise_sigma: the largest sensor-noise sigma (grey levels of 255).
        jpeg_quality: the range of JPEG qualities of a recompression.
        gain: the range of exposure gains; gamma: the range of gammas.
    """

    p: float = 0.0
    variants: int = 2
    blur_sigma: float = 1.2
    motion_px: int = 5
    noise_sigma: float = 6.0
    jpeg_quality: tuple[int, int] = (30, 90)
    gain: tuple[float, float] = (0.6, 1.5)
    gamma: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"data.augment.p must lie in [0, 1], got {self.p}")
        if self.variants < 1:
            raise ValueError(f"data.augment.variants must be >= 1, got {self.variants}")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"data.augment.jpeg_quality must be 1 <= low <= high <= 100, got {self.jpeg_quality}")
        if not (0 < self.gain[0] <= self.gain[1] and 0 < self.gamma[0] <= self.gamma[1]):
            raise ValueError("data.augment.gain and gamma need 0 < low <= high")


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` pixels at ``angle_deg``."""
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    return k / max(float(k.sum()), 1e-6)


def augment_image(img_HW3: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A randomly degraded copy of a uint8 RGB image: each of exposure, blur (Gaussian or motion),
    noise and JPEG recompression happens with probability one half (at least one of them), in
    the order a camera applies them, with strengths drawn up to ``cfg``'s limits.

    Args:
        img_HW3: the image, uint8 (H, W, 3).
        cfg: the limits.
        rng: draws every choice (the same generator state gives the same image).
    """
    on = rng.uniform(size=4) < 0.5  # exposure, blur, noise, JPEG
    if not on.any():
        on[rng.integers(4)] = True
    x = img_HW3.astype(np.float32) / 255.0
    if on[0]:  # exposure: gain, then gamma
        x = np.clip(x * rng.uniform(*cfg.gain), 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    if on[1]:
        if cfg.motion_px >= 2 and rng.uniform() < 0.5:
            x = cv2.filter2D(x, -1, _motion_kernel(int(rng.integers(2, cfg.motion_px + 1)), rng.uniform(0, 180)))
        elif cfg.blur_sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.3, cfg.blur_sigma)))
    if on[2] and cfg.noise_sigma > 0:
        x = x + rng.normal(0.0, rng.uniform(0.0, cfg.noise_sigma) / 255.0, x.shape).astype(np.float32)
    out = (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if on[3]:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out
