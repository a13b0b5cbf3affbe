"""Absolute-pose validation of a relative-pose model, through the node's own localizer.

For every scene, the training frames are encoded into an in-memory
:class:`~reloc_ros.core.database.FrameDatabase` and each validation query goes through
:class:`~reloc_ros.core.localizer.Localizer`, exactly as in the node:

* ``median_t_m`` ...: top-1 retrieval + relative-pose regression, fused with ``top1``
  (the reference paper's Table-4 setting): ``T_q = T_db @ T_rel``;
* ``retrieval_...``: the pose of the retrieved frame itself, with no regression. A learned
  relative pose that does not beat it adds nothing;
* ``oracle_...``: regression from the training frame nearest to the true pose (passed to the
  localizer as the given neighbour instead of retrieving one): the relative-pose
  regression alone, which is what the MTL methods change;
* ``oracle_neighbour_...``: that frame's own pose, the baseline the regression must beat.
"""

from __future__ import annotations

import numpy as np
import torch

from reloc_ros.core.database import FrameDatabase, model_record
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.geometry import error_stats, pose_errors
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import RelPoseNet
from reloc_train.dataset import FrameSet, ImageStore

__all__ = ["encode_store", "subsample", "oracle_neighbours", "scene_database", "validate", "METRIC_KEYS"]

#: The per-scene medians that :func:`validate` averages over scenes.
METRIC_KEYS = ["median_t_m", "median_r_deg", "mean_t_m", "mean_r_deg",
               "retrieval_median_t_m", "retrieval_median_r_deg", "oracle_median_t_m", "oracle_median_r_deg",
               "oracle_neighbour_median_t_m", "oracle_neighbour_median_r_deg"]


@torch.no_grad()
def encode_store(model: RelPoseNet, store: ImageStore, idx: np.ndarray, device: torch.device,
                 batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(features f_NC, descriptors desc_NC) of the frames ``idx`` of an image store, on ``device``."""
    feats, descs = [], []
    for s in range(0, len(idx), batch):
        x = torch.stack([store[int(i)] for i in idx[s:s + batch]]).to(device)
        f, d = model.encode(model.preprocess(x))
        feats.append(f.float())
        descs.append(d.float())
    if not feats:
        C = model.cfg.feature_dim
        return torch.zeros((0, C), device=device), torch.zeros((0, C), device=device)
    return torch.cat(feats), torch.cat(descs)


def subsample(n: int, max_n: int | None) -> np.ndarray:
    """Evenly spaced indices (all when max_n is None or >= n)."""
    if max_n is None or max_n >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_n).round().astype(np.int64))


def oracle_neighbours(T_db_N44: np.ndarray, T_query_Q44: np.ndarray, max_angle_deg: float = 30.0) -> np.ndarray:
    """For each query, the database frame with the closest camera centre among those whose
    optical axis is within ``max_angle_deg`` of the query's (any frame when none is): (Q,) rows."""
    dist = np.linalg.norm(T_db_N44[None, :, :3, 3] - T_query_Q44[:, None, :3, 3], axis=2)
    cos = np.einsum("qk,nk->qn", T_query_Q44[:, :3, 2], T_db_N44[:, :3, 2])
    return np.argmin(dist + 1e3 * (cos < np.cos(np.radians(max_angle_deg))), axis=1)


def scene_database(model: RelPoseNet, fs: FrameSet, store: ImageStore, rows: np.ndarray,
                   device: torch.device, name: str) -> FrameDatabase:
    """An in-memory database of the frames ``rows`` of a frame set (one scene), encoded now."""
    f, d = encode_store(model, store, rows, device)
    return FrameDatabase(poses=torch.from_numpy(fs.poses[rows]).double(), descriptors=d.cpu(), features=f.cpu(),
                         scene_index=torch.zeros(len(rows), dtype=torch.int64),
                         frame_ids=[fs.frames[int(i)].id for i in rows],
                         scenes=[{"name": name, "root": "", "intrinsics": {}, "image_size": [0, 0],
                                  "frames": len(rows)}],
                         model=model_record(model, "(in training)"))


def _pose(result) -> np.ndarray:
    """The fused pose, or NaNs when there is none (a non-finite prediction)."""
    return result.pose if result.ok else np.full((4, 4), np.nan)


@torch.no_grad()
def validate(model: RelPoseNet, train_fs: FrameSet, train_store: ImageStore, test_fs: FrameSet,
             test_store: ImageStore, device: torch.device, max_frames: int | None = None) -> dict:
    """Per-scene and overall errors (see the module docstring).

    Returns ``{"scenes": {name: {...}}, "mean": {...}}``: per scene ``count`` and the
    statistics of :func:`reloc_ros.core.geometry.error_stats` for the model, and the same
    keys prefixed ``retrieval_``, ``oracle_`` and ``oracle_neighbour_``; ``mean`` averages
    :data:`METRIC_KEYS` over the scenes.
    """
    was_training = model.training
    model.eval()
    top1 = LocalizerConfig(top_k=1, fusion=FusionConfig(method="top1"))
    out: dict = {"scenes": {}}
    for k, scene in enumerate(train_fs.scenes):
        db_rows = np.flatnonzero(train_fs.scene_index == k)
        q_all = np.flatnonzero(test_fs.scene_index == k)
        q_rows = q_all[subsample(len(q_all), max_frames)]
        if len(db_rows) == 0 or len(q_rows) == 0:
            continue
        loc = Localizer(model, scene_database(model, train_fs, train_store, db_rows, device, scene.name), top1,
                        device)
        q_f, q_d = encode_store(model, test_store, q_rows, device)
        T_gt = test_fs.poses[q_rows]
        oracle = oracle_neighbours(train_fs.poses[db_rows], T_gt)
        est, retrieved, est_o = [], [], []
        for i in range(len(q_rows)):
            h = loc.hypothesize_encoded(q_f[i:i + 1], q_d[i:i + 1])
            est.append(_pose(loc.fuse(h)))
            retrieved.append(h.T_db[0])
            est_o.append(_pose(loc.fuse(loc.hypothesize_encoded(q_f[i:i + 1], q_d[i:i + 1], oracle[i:i + 1]))))
        s = error_stats(*pose_errors(np.stack(est), T_gt)).as_dict()
        for prefix, T in (("retrieval_", np.stack(retrieved)), ("oracle_", np.stack(est_o)),
                          ("oracle_neighbour_", train_fs.poses[db_rows][oracle])):
            s.update({f"{prefix}{k2}": v for k2, v in error_stats(*pose_errors(T, T_gt)).as_dict().items()
                      if k2 != "count"})
        out["scenes"][scene.name] = s
    sc = list(out["scenes"].values())
    out["mean"] = {k2: float(np.mean([s[k2] for s in sc])) if sc else float("nan") for k2 in METRIC_KEYS}
    model.train(was_training)
    return out
