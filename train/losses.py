"""Task losses (one scalar per task, batch means).

* translation: ``L_t = mean_i || t̂_i − t_i ||_2`` (metres);
* rotation: ``L_q = mean_i min(|| q̂_i − q_i ||_2, || q̂_i + q_i ||_2)`` with q̂ unit-normalised
  by the head; the min makes the loss blind to the sign ambiguity q ~ −q;
* retrieval: a multi-positive InfoNCE (supervised contrastive, Khosla et al., NeurIPS 2020)
  over the descriptors of every image of the batch, with positives and negatives from the
  frames' view overlap (:mod:`reloc_train.overlap`):

  .. math::  L_r = \\operatorname{mean}_i\\, -\\log
             \\frac{\\sum_{p \\in P_i} e^{s_{ip}/\\tau}}
                   {\\sum_{p \\in P_i} e^{s_{ip}/\\tau} + \\sum_{n \\in N_i} e^{s_{in}/\\tau}}

  over the anchors i with at least one positive and one negative; s is the cosine
  similarity and τ the temperature (0.05).
"""

from __future__ import annotations

import torch

__all__ = ["translation_loss", "rotation_loss", "retrieval_loss", "task_losses", "TEMPERATURE"]

#: Temperature of the retrieval loss.
TEMPERATURE = 0.05


def translation_loss(t_pred: torch.Tensor, t_gt: torch.Tensor) -> torch.Tensor:
    return (t_pred.float() - t_gt).norm(dim=1).mean()


def rotation_loss(q_pred: torch.Tensor, q_gt: torch.Tensor) -> torch.Tensor:
    q_pred = q_pred.float()
    return torch.minimum((q_pred - q_gt).norm(dim=1), (q_pred + q_gt).norm(dim=1)).mean()


def retrieval_loss(desc_MD: torch.Tensor, labels_MM: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Multi-positive InfoNCE of L2-normalised descriptors (M, D) with labels (M, M):
    1 positive, -1 negative, 0 ignored (see the module docstring). 0 (with a graph) when no
    anchor has both a positive and a negative."""
    d = desc_MD.float()
    labels = labels_MM.to(d.device)
    logits = d @ d.T / temperature
    pos, neg = labels > 0, labels < 0
    use = pos.any(dim=1) & neg.any(dim=1)
    if not use.any():
        return d.sum() * 0.0
    lp = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)
    la = torch.logsumexp(logits.masked_fill(~(pos | neg), float("-inf")), dim=1)
    return (la - lp)[use].mean()


def task_losses(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                tasks: tuple[str, ...]) -> torch.Tensor:
    """Stack of the per-task losses, in task order: a (T,) tensor. ``target`` holds ``t``,
    ``q`` and, for task "r", ``r``: the (M, M) labels of the batch's M descriptors."""
    fns = {"t": lambda: translation_loss(pred["t"], target["t"]),
           "q": lambda: rotation_loss(pred["q"], target["q"]),
           "r": lambda: retrieval_loss(pred["r"], target["r"])}
    return torch.stack([fns[t]() for t in tasks])
