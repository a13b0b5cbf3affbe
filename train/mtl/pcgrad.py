"""PCGrad (gradient surgery) expressed as task weights computed from the Gram matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import THETA_COST, Weighting, as_gram64


def pcgrad_weights(gram: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""PCGrad's projected-gradient sum as weights of the original gradients.

    Algorithm 1 of Yu et al. (2020): for every task :math:`i`, start from
    :math:`g_i^{PC} = g_i` and, for the other tasks :math:`j` in a random order,

    .. math::  \text{if } g_i^{PC}\cdot g_j < 0:\quad
               g_i^{PC} \leftarrow g_i^{PC} - \frac{g_i^{PC}\cdot g_j}{|g_j|^2}\, g_j ;

    the update is :math:`\sum_i g_i^{PC}`. Every :math:`g_i^{PC}` stays a linear combination
    :math:`c_i^\top G` of the gradients, and every quantity above is a function of the Gram
    matrix :math:`M = GG^\top` (:math:`g_i^{PC}\cdot g_j = (M c_i)_j`), so the update is
    :math:`\alpha^\top G` with :math:`\alpha = \sum_i c_i`.

    One permutation of ``range(T)`` is drawn per task, in task order, with
    ``torch.randperm(T, generator=generator)`` (the global RNG when None), exactly as
    ``torchjd.aggregation.PCGradWeighting``, so both agree under the same seed. A task whose
    gradient vanishes (:math:`M_{jj} = 0`) is never projected on.

    Returns:
        ``(T,)`` float64 CPU tensor (for T = 2: the components of ``[1, 1]`` plus the
        projection coefficients; ``[1, 1]`` when the two gradients do not conflict).
    """
    m = as_gram64(gram)
    n = m.shape[0]
    total = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        perm = torch.randperm(n, generator=generator)
        c = torch.zeros(n, dtype=torch.float64)
        c[i] = 1.0
        for j in perm.tolist():
            if j == i or not m[j, j] > 0:
                continue
            inner = float(m[j] @ c)  # g_i^PC . g_j
            if inner < 0.0:
                c[j] -= inner / float(m[j, j])
        total += c
    return total


class PCGrad(Weighting):
    r"""PCGrad: projecting conflicting gradients (gradient surgery) on θ.

    Reference:
        T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient Surgery for
        Multi-Task Learning", NeurIPS 2020.

    Math. See :func:`pcgrad_weights`: :math:`\alpha = \sum_i c_i` such that
    :math:`\sum_t \alpha_t g_t = \sum_i g_i^{PC}`. Convention: the projected gradients are
    *summed* (Algorithm 1 of the paper), so two non-conflicting tasks get
    :math:`\alpha = [1, 1]`, i.e. twice the step of the uniform weighting (``reduction='mean'``
    divides by T instead, as some re-implementations do).

    Randomness: the permutations come from torch's global RNG (seed it with
    ``torch.manual_seed``), or from a private generator when ``seed`` is given. In data-parallel
    training every rank must draw the same permutations: give ``seed`` (the private generator
    then advances identically on every rank) or keep the global RNGs in step.

    Cost: T backward passes through the whole network per step; no further backward.

    Args:
        n_tasks: T.
        reduction: ``'sum'`` (default, the paper) or ``'mean'``.
        seed: seed of a private ``torch.Generator`` (default None: the global RNG).
    """

    name = "pcgrad"
    level = "theta"
    cost = THETA_COST

    def __init__(self, n_tasks: int, reduction: str = "sum", seed: int | None = None) -> None:
        super().__init__(n_tasks)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"pcgrad: reduction must be 'sum' or 'mean', got {reduction!r}")
        self.reduction = reduction
        self.seed = seed
        self.generator: torch.Generator | None = None
        self.reset()

    def reset(self) -> None:
        if self.seed is not None:
            self.generator = torch.Generator(device="cpu")
            self.generator.manual_seed(int(self.seed))
        else:
            self.generator = None

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        m = as_gram64(gram)
        alpha = pcgrad_weights(m, generator=self.generator)
        if self.reduction == "mean":
            alpha = alpha / self.n_tasks
        self.last_stats = {}
        return alpha

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reduction={self.reduction!r}, seed={self.seed}"
