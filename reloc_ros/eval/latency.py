"""Timing helpers shared by the benchmark and experiment commands.

    synthetic_database   a database of random, well-formed frames (for timing only)
    latency              median per-stage milliseconds of the localizer over a few queries
"""

from __future__ import annotations

import numpy as np
import torch

from reloc_ros.core.database import FrameDatabase, model_record
from reloc_ros.core.files import tensor_fingerprint
from reloc_ros.core.localizer import Localizer
from reloc_ros.core.model import RelPoseNet

__all__ = ["synthetic_database", "latency"]


def synthetic_database(model: RelPoseNet, n: int, seed: int = 0) -> FrameDatabase:
    """A database of random (but well-formed) frames for timing only."""
    g = torch.Generator().manual_seed(seed)
    C, D = model.cfg.feature_dim, model.cfg.descriptor_length
    poses = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    poses[:, :3, 3] = torch.rand(n, 3, generator=g, dtype=torch.float64) * 5
    d = torch.nn.functional.normalize(torch.randn(n, D, generator=g), dim=1)
    return FrameDatabase(poses=poses, descriptors=d, features=torch.rand(n, C, generator=g),
                         scene_index=torch.zeros(n, dtype=torch.int64), frame_ids=[f"f{i}" for i in range(n)],
                         scenes=[{"name": "synthetic", "root": "", "intrinsics": {}, "image_size": [0, 0], "frames": n}],
                         model=model_record(model, tensor_fingerprint(model.state_dict()), "(synthetic)"))


def latency(loc: Localizer, images: list[np.ndarray], n: int) -> dict:
    """Median milliseconds of each stage (and the total) over ``n`` queries after 5 warm-up ones."""
    loc.warmup(5)
    rows = [loc.localize(images[i % len(images)]).timings_ms for i in range(n)]
    return {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
