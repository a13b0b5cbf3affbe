"""Uniform (equal) weighting."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Weighting


class Uniform(Weighting):
    r"""Equal weights: :math:`\alpha_t = 1/T`, i.e. the network minimises the mean task loss.

    This is the fixed "w = 1/2 each" weighting of translation and rotation used as the
    baseline (for T = 2 it trains on :math:`(L_1 + L_2)/2`).

    Cost: 1 backward pass per step (of :math:`\sum_t \alpha_t L_t`).

    Args:
        n_tasks: T.
    """

    name = "uniform"
    level = "loss"
    cost = "1 backward pass (of sum_t alpha_t L_t)"

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        alpha = torch.full((self.n_tasks,), 1.0 / self.n_tasks, dtype=torch.float64)
        self.last_stats = {}
        return alpha
