"""The base class of every MTL weighting, and helpers shared by the gradient-based ones.

A :class:`Weighting` turns what its *level* needs (the per-task losses, a Gram matrix of
per-task gradients, or per-task gradient norms) into a weight vector ``alpha`` of length
``T``. The network is then trained on ``sum_t alpha_t * L_t`` with ``alpha`` held constant
(see the package docstring, "the one rule"); :func:`reloc_train.mtl.engine.mtl_backward`
does that bookkeeping.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

#: The levels a method can work at, i.e. what ``mtl_backward`` must compute for it.
LEVELS = ("loss", "theta", "z", "layer")
#: The backward passes of one step of a θ-level and of a Z-level method.
THETA_COST = "T backward passes through the encoder and heads (per-task gradients), no extra backward"
Z_COST = "T backward passes through the heads only (to Z) + 1 backward through encoder and heads"


def as_gram64(gram: Tensor) -> Tensor:
    """A detached, symmetric float64 copy of a T x T Gram matrix, on the CPU.

    The weightings work on tiny matrices; moving them to the CPU once avoids a device
    synchronisation per scalar comparison inside the iterative solvers.
    """
    g = gram.detach().to(device="cpu", dtype=torch.float64)
    return 0.5 * (g + g.T)


def gram_stats(gram: Tensor) -> dict[str, Any]:
    """Logging statistics of a Gram matrix ``M = G G^T`` of per-task gradients ``g_t``.

    Returns python numbers (one device synchronisation):

    * ``lambda_min`` / ``lambda_max``: the extreme eigenvalues of ``M`` (the squared extreme
      singular values of ``G``); ``condition = lambda_max / lambda_min`` (``inf`` when
      ``lambda_min <= 0``). Aligned-MTL's stability criterion is this condition number.
    * ``grad_norms``: ``|g_t| = sqrt(M_tt)``.
    * ``cos``: the T x T matrix of cosine similarities ``M_ij / (|g_i| |g_j|)`` (0 where a
      gradient vanishes); ``cos_min``: its smallest off-diagonal entry (1.0 when T = 1), i.e.
      the most conflicting pair (negative: conflicting gradients).
    """
    m = as_gram64(gram)
    n_tasks = m.shape[0]
    eig = torch.linalg.eigvalsh(m)
    lam_min, lam_max = float(eig[0]), float(eig[-1])
    norms = m.diagonal().clamp_min(0.0).sqrt()
    denom = norms[:, None] * norms[None, :]
    cos = torch.where(denom > 0, m / torch.where(denom > 0, denom, torch.ones_like(denom)),
                      torch.zeros_like(m))
    cos.fill_diagonal_(1.0)
    if n_tasks > 1:
        off = ~torch.eye(n_tasks, dtype=torch.bool)
        cos_min = float(cos[off].min())
    else:
        cos_min = 1.0
    return {
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "condition": lam_max / lam_min if lam_min > 0 else math.inf,
        "grad_norms": norms.tolist(),
        "cos": cos.tolist(),
        "cos_min": cos_min,
    }


class Weighting(nn.Module):
    """Base class of the MTL weightings (a ``torch.nn.Module``, so that learnable weights
    such as Uncertainty's log-variances or GradNorm's task weights are saved in its
    ``state_dict`` and given to the optimizer through :meth:`param_groups`).

    Subclasses set the class attributes and implement :meth:`_weights`; the public
    :meth:`weights` checks the inputs and returns ``alpha`` detached, as float32, on the
    device of ``losses``.

    Class attributes:
        name: the registry name (``build_method(name, ...)``).
        level: ``"loss"`` (needs only the losses), ``"theta"`` (Gram of the per-task gradients
            w.r.t. the shared parameters), ``"z"`` (Gram of the per-task gradients w.r.t. the
            shared representation Z) or ``"layer"`` (per-task gradient norms at the last
            shared layer).
        cost: backward passes per training step.

    Attributes:
        n_tasks: T.
        lr_scale: the method's own parameters are trained with ``lr * lr_scale``
            (see :meth:`param_groups`).
        last_stats: logging statistics of the latest :meth:`weights` call (python numbers).
    """

    name: ClassVar[str] = ""
    level: ClassVar[str] = ""
    cost: ClassVar[str] = ""

    def __init__(self, n_tasks: int, lr_scale: float = 1.0) -> None:
        super().__init__()
        if isinstance(n_tasks, bool) or int(n_tasks) != n_tasks or int(n_tasks) < 1:
            raise ValueError(f"{type(self).__name__}: n_tasks must be an integer >= 1, got {n_tasks!r}")
        if not (lr_scale > 0 and math.isfinite(lr_scale)):
            raise ValueError(f"{type(self).__name__}: lr_scale must be positive, got {lr_scale!r}")
        if self.level not in LEVELS:
            raise TypeError(f"{type(self).__name__}.level must be one of {LEVELS}, got {self.level!r}")
        self.n_tasks = int(n_tasks)
        self.lr_scale = float(lr_scale)
        self.last_stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ the interface
    def weights(self, losses: Tensor, gram: Tensor | None = None,
                grad_norms: Tensor | None = None) -> Tensor:
        """The task weights ``alpha`` (shape ``(T,)``, detached, float32, on ``losses.device``).

        Args:
            losses: the per-task losses ``L_t``, shape ``(T,)`` (only their values are used).
            gram: the ``T x T`` Gram matrix of the per-task gradients (levels ``theta`` and
                ``z``; float64 recommended).
            grad_norms: the per-task gradient norms at the last shared layer (level ``layer``).
        """
        losses = self._check_losses(losses)
        if self.level in ("theta", "z"):
            if gram is None:
                raise ValueError(f"{self.name}: level {self.level!r} needs the Gram matrix")
            if tuple(gram.shape) != (self.n_tasks, self.n_tasks):
                raise ValueError(f"{self.name}: gram must be {self.n_tasks}x{self.n_tasks}, "
                                 f"got {tuple(gram.shape)}")
        if self.level == "layer":
            if grad_norms is None:
                raise ValueError(f"{self.name}: level 'layer' needs the per-task gradient norms")
            if tuple(grad_norms.shape) != (self.n_tasks,):
                raise ValueError(f"{self.name}: grad_norms must have shape ({self.n_tasks},), "
                                 f"got {tuple(grad_norms.shape)}")
        with torch.no_grad():
            alpha = self._weights(losses.detach(), gram, grad_norms)
        return alpha.detach().to(device=losses.device, dtype=torch.float32)

    def forward(self, losses: Tensor, gram: Tensor | None = None,
                grad_norms: Tensor | None = None) -> Tensor:
        """Same as :meth:`weights`."""
        return self.weights(losses, gram, grad_norms)

    def own_loss(self, losses: Tensor, grad_norms: Tensor | None = None) -> Tensor | None:
        """A differentiable loss for the method's own learnable parameters, or None.

        Its gradient must reach only the method's parameters: the engine passes detached
        losses and gradient norms, and backpropagates it together with ``sum_t alpha_t L_t``.
        """
        return None

    def after_step(self) -> None:
        """Called by the trainer after ``optimizer.step()`` (projections, renormalisation)."""

    def reset(self) -> None:
        """Forget the internal state that is not a learnable parameter (e.g. initial losses)."""

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the method's own parameters (``[]`` when none).

        The learning rate is ``lr * self.lr_scale``; weight decay defaults to 0 (decaying a
        log-variance or a loss weight towards 0 would bias the method).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        return [{"params": params, "lr": lr * self.lr_scale, "weight_decay": weight_decay,
                 "name": f"mtl.{self.name}"}]

    # ------------------------------------------------------------------ for subclasses
    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _check_losses(self, losses: Tensor) -> Tensor:
        if not isinstance(losses, Tensor):
            losses = torch.as_tensor(losses, dtype=torch.float32)
        if losses.dim() != 1 or losses.shape[0] != self.n_tasks:
            raise ValueError(f"{self.name}: losses must have shape ({self.n_tasks},), "
                             f"got {tuple(losses.shape)}")
        return losses

    def extra_repr(self) -> str:
        return f"n_tasks={self.n_tasks}, level={self.level!r}"
