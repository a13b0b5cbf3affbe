"""Task losses of relative-pose regression (one scalar per task, batch means).

* translation: ``L_t = mean_i || t̂_i − t_i ||_2`` (metres);
* rotation: ``L_q = mean_i min(|| q̂_i − q_i ||_2, || q̂_i + q_i ||_2)`` with q̂ unit-normalised
  by the head; the min makes the loss blind to the sign ambiguity q ~ −q.
"""

from __future__ import annotations

import torch


def translation_loss(t_pred: torch.Tensor, t_gt: torch.Tensor) -> torch.Tensor:
    return (t_pred.float() - t_gt).norm(dim=1).mean()


def rotation_loss(q_pred: torch.Tensor, q_gt: torch.Tensor) -> torch.Tensor:
    q_pred = q_pred.float()
    return torch.minimum((q_pred - q_gt).norm(dim=1), (q_pred + q_gt).norm(dim=1)).mean()


LOSSES = {"t": translation_loss, "q": rotation_loss}


def task_losses(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                tasks: tuple[str, ...]) -> torch.Tensor:
    """Stack of the per-task losses, in task order: a (T,) tensor."""
    return torch.stack([LOSSES[t](pred[t], target[t]) for t in tasks])
