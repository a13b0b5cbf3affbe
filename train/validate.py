"""Absolute-pose validation of a relative-pose model, through the node's own localizer.

For every scene, the training frames are encoded into an in-memory
:class:`~reloc_ros.core.database.FrameDatabase` and each validation query goes through
:class:`~reloc_ros.core.localizer.Localizer`, exactly as in the node:

* ``median_t_m`` ...: top-1 retrieval + relative-pose regression, fused with ``top1``
  (the reference paper's Table-4 setting): ``T_q = T_db @ T_rel``;
* ``retrieval_...``: the pose of the retrieved frame itself, with no regression. A learned
  relative pose that does not beat it adds nothing;
* ``oracle_...``: regression from the oracle neighbour (the training frame that minimises
  d + r/30°, :mod:`reloc_ros.data.coverage`), passed to the localizer as the given
  neighbour instead of retrieving one: the relative-pose regression alone;
* ``oracle_neighbour_...``: that frame's own pose, the baseline the regression must beat;
* ``recall_at_k``: the share of queries with a frame within 0.5 m and 30° among their k
  nearest by descriptor, and ``oracle_recall``, the share that have such a frame at all.
"""

from __future__ import annotations

import numpy as np
import torch

from reloc_ros.core.database import FrameDatabase, model_record
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.geometry import error_stats, pose_errors, rotation_error_deg, translation_error
from reloc_ros.core.localizer import Localizer, LocalizerConfig
from reloc_ros.core.model import RelPoseNet
from reloc_ros.data.coverage import oracle_neighbours
from reloc_train.dataset import FrameSet

__all__ = ["encode_store", "subsample", "scene_database", "recall_at", "validate", "METRIC_KEYS"]

#: The per-scene medians that :func:`validate` averages over scenes.
METRIC_KEYS = ["median_t_m", "median_r_deg", "mean_t_m", "mean_r_deg",
               "retrieval_median_t_m", "retrieval_median_r_deg", "oracle_median_t_m", "oracle_median_r_deg",
               "oracle_neighbour_median_t_m", "oracle_neighbour_median_r_deg",
               "recall_at_1", "recall_at_5", "recall_at_10", "oracle_recall"]


@torch.no_grad()
def encode_store(model: RelPoseNet, store, idx: np.ndarray, device: torch.device,
                 batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(features f_NC, descriptors desc_ND) of the frames ``idx`` of a store (images, or the
    cached output of frozen stages), on ``device``, in eval mode."""
    was = model.training
    model.eval()
    feats, descs = [], []
    for s in range(0, len(idx), batch):
        x = store.batch(idx[s:s + batch], device)
        f, d = model.encode(model.preprocess(x) if store.start == 0 else x, store.start)
        feats.append(f.float())
        descs.append(d.float())
    model.train(was)
    if not feats:
        return (torch.zeros((0, model.cfg.feature_dim), device=device),
                torch.zeros((0, model.cfg.descriptor_length), device=device))
    return torch.cat(feats), torch.cat(descs)


def subsample(n: int, max_n: int | None) -> np.ndarray:
    """Evenly spaced indices (all when max_n is None or >= n)."""
    if max_n is None or max_n >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_n).round().astype(np.int64))


def scene_database(model: RelPoseNet, fs: FrameSet, store, rows: np.ndarray,
                   device: torch.device, name: str) -> FrameDatabase:
    """An in-memory database of the frames ``rows`` of a frame set (one scene), encoded now
    (``store``: images, or the cached output of frozen stages)."""
    f, d = encode_store(model, store, rows, device)
    return FrameDatabase(poses=torch.from_numpy(fs.poses[rows]).double(), descriptors=d.cpu(), features=f.cpu(),
                         scene_index=torch.zeros(len(rows), dtype=torch.int64),
                         frame_ids=[fs.frames[int(i)].id for i in rows],
                         scenes=[{"name": name, "root": "", "intrinsics": {}, "image_size": [0, 0],
                                  "frames": len(rows)}],
                         model=model_record(model, "(in training)"))


def recall_at(db_desc: torch.Tensor, T_db: np.ndarray, q_desc: torch.Tensor, T_q: np.ndarray,
              ks: tuple[int, ...] = (1, 5, 10), max_t_m: float = 0.5, max_r_deg: float = 30.0) -> dict:
    """``recall_at_k``: the share of queries with a frame within 0.5 m and 30° among their k
    most similar database frames by descriptor."""
    top = (q_desc.float() @ db_desc.float().T).topk(min(max(ks), len(db_desc)), dim=1).indices.numpy()
    out = {}
    for k in ks:
        hit = [np.any((translation_error(T_db[row[:k]], T[None]) <= max_t_m)
                      & (rotation_error_deg(T_db[row[:k]], T[None]) <= max_r_deg)) for row, T in zip(top, T_q)]
        out[f"recall_at_{k}"] = float(np.mean(hit)) if hit else float("nan")
    return out


def _pose(result) -> np.ndarray:
    """The fused pose, or NaNs when there is none (a non-finite prediction)."""
    return result.pose if result.ok else np.full((4, 4), np.nan)


@torch.no_grad()
def validate(model: RelPoseNet, train_fs: FrameSet, train_store, test_fs: FrameSet,
             test_store, device: torch.device, max_frames: int | None = None) -> dict:
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
        oracle, _, _, within = oracle_neighbours(train_fs.poses[db_rows], T_gt)
        est, retrieved, est_o = [], [], []
        for i in range(len(q_rows)):
            h = loc.hypothesize_encoded(q_f[i:i + 1], q_d[i:i + 1])
            est.append(_pose(loc.fuse(h)))
            retrieved.append(h.T_db[0])
            est_o.append(_pose(loc.fuse(loc.hypothesize_encoded(q_f[i:i + 1], q_d[i:i + 1], oracle[i:i + 1]))))
        s = error_stats(*pose_errors(np.stack(est), T_gt)).as_dict()
        s.update(recall_at(loc.db.descriptors, train_fs.poses[db_rows], q_d.cpu(), T_gt))
        s["oracle_recall"] = float(within[:, 0].mean())
        for prefix, T in (("retrieval_", np.stack(retrieved)), ("oracle_", np.stack(est_o)),
                          ("oracle_neighbour_", train_fs.poses[db_rows][oracle])):
            s.update({f"{prefix}{k2}": v for k2, v in error_stats(*pose_errors(T, T_gt)).as_dict().items()
                      if k2 != "count"})
        out["scenes"][scene.name] = s
    sc = list(out["scenes"].values())
    out["mean"] = {k2: float(np.mean([s[k2] for s in sc])) if sc else float("nan") for k2 in METRIC_KEYS}
    model.train(was_training)
    return out
