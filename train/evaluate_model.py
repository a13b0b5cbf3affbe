"""Absolute-pose evaluation of a relative-pose model, as in the seed paper (top-1 retrieval).

For every query (test frame) of a scene:

1. encode it once: pooled feature f_q and GeM descriptor d_q;
2. retrieve the training frame with the highest descriptor similarity (same scene);
3. regress the relative pose from that frame to the query: ``T_rel = heads(f_db, f_q)``;
4. compose ``T_q = T_db @ T_rel`` and compare with the ground truth.

The pose of the retrieved frame alone (``retrieval-only``) is reported beside it: a learned
relative pose that does not beat it adds nothing. The ``oracle_`` numbers regress from the
training frame nearest to the true pose instead of the retrieved one: they measure the
relative-pose regression alone (what the MTL methods change), independent of retrieval;
``oracle_neighbour_`` is that frame's own pose, the baseline the regression must beat.
"""

from __future__ import annotations

import numpy as np
import torch

from reloc_ros.core.geometry import error_stats, make_pose, pose_errors
from reloc_ros.core.model import RelPoseNet
from reloc_train.dataset import FrameSet, ImageStore


@torch.no_grad()
def encode_store(model: RelPoseNet, store: ImageStore, idx: np.ndarray, device: torch.device,
                 batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, descriptors) of the frames ``idx`` of an image store, on ``device``."""
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


@torch.no_grad()
def evaluate(model: RelPoseNet, train_fs: FrameSet, train_store: ImageStore, test_fs: FrameSet,
             test_store: ImageStore, device: torch.device, max_frames: int | None = None) -> dict:
    """Per-scene and overall errors of top-1 retrieval + relative pose.

    Returns ``{"scenes": {name: {...}}, "mean": {...}}`` where each entry holds
    ``median_t_m, median_r_deg, mean_t_m, mean_r_deg, count`` for the model and the same
    keys prefixed ``retrieval_`` for retrieval-only.
    """
    was_training = model.training
    model.eval()
    out: dict = {"scenes": {}}
    for k, scene in enumerate(train_fs.scenes):
        db_idx = np.flatnonzero(train_fs.scene_index == k)
        q_all = np.flatnonzero(test_fs.scene_index == k)
        q_idx = q_all[subsample(len(q_all), max_frames)]
        if len(db_idx) == 0 or len(q_idx) == 0:
            continue
        db_f, db_d = encode_store(model, train_store, db_idx, device)
        q_f, q_d = encode_store(model, test_store, q_idx, device)
        nn_local = (q_d @ db_d.T).argmax(dim=1)
        pred = model.predict(db_f[nn_local], q_f)
        nn_idx = db_idx[nn_local.cpu().numpy()]
        T_db = train_fs.poses[nn_idx]
        T_rel = np.stack([make_pose(t, q) for t, q in zip(pred["t"].float().cpu().numpy(),
                                                           pred["q"].float().cpu().numpy())])
        T_est = T_db @ T_rel
        T_gt = test_fs.poses[q_idx]
        te, re = pose_errors(T_est, T_gt)
        rte, rre = pose_errors(T_db, T_gt)
        # Oracle neighbour: the training frame nearest to the true pose (closest centre among
        # those looking within 30 degrees), so the errors measure the regression alone.
        P_db = train_fs.poses[db_idx]
        dist = np.linalg.norm(P_db[None, :, :3, 3] - T_gt[:, None, :3, 3], axis=2)
        cos = np.einsum("qk,nk->qn", T_gt[:, :3, 2], P_db[:, :3, 2])
        oracle_local = np.argmin(dist + 1e3 * (cos < np.cos(np.radians(30))), axis=1)
        pred_o = model.predict(db_f[torch.from_numpy(oracle_local).to(device)], q_f)
        T_o = P_db[oracle_local] @ np.stack([make_pose(t, q) for t, q in zip(
            pred_o["t"].float().cpu().numpy(), pred_o["q"].float().cpu().numpy())])
        ote, ore = pose_errors(T_o, T_gt)
        s = error_stats(te, re).as_dict()
        for prefix, (a, b) in (("retrieval_", (rte, rre)), ("oracle_", (ote, ore)),
                               ("oracle_neighbour_", pose_errors(P_db[oracle_local], T_gt))):
            s.update({f"{prefix}{k2}": v for k2, v in error_stats(a, b).as_dict().items() if k2 != "count"})
        out["scenes"][scene.name] = s
    keys = ["median_t_m", "median_r_deg", "mean_t_m", "mean_r_deg",
            "retrieval_median_t_m", "retrieval_median_r_deg", "oracle_median_t_m", "oracle_median_r_deg",
            "oracle_neighbour_median_t_m", "oracle_neighbour_median_r_deg"]
    sc = list(out["scenes"].values())
    out["mean"] = {k2: float(np.mean([s[k2] for s in sc])) if sc else float("nan") for k2 in keys}
    model.train(was_training)
    return out
