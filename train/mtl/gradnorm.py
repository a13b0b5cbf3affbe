"""GradNorm: learned task weights that balance the gradient norms at the last shared layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Weighting


class GradNorm(Weighting):
    r"""GradNorm: adaptive loss balancing by gradient normalisation.

    Reference:
        Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: Gradient
        Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.

    Math. Learnable weights :math:`w_t > 0` (initially 1) give :math:`\alpha = w` (held
    constant for the network). With :math:`G_t = |\nabla_W L_t|` the per-task gradient norm
    at the last shared layer :math:`W`, the weighted norms :math:`G_W^{(t)} = w_t G_t`, their
    mean :math:`\bar G_W`, the loss ratios :math:`\tilde L_t = L_t / L_t(0)` (the initial
    losses :math:`L_t(0)` are recorded at the first call) and the relative inverse training
    rates :math:`r_t = \tilde L_t / \mathrm{mean}_k \tilde L_k`, the method's own loss is

    .. math::  L_{\text{grad}} = \sum_t \big| w_t G_t - \mathrm{sg}\big(\bar G_W\, r_t^{\,a}\big)\big|

    (``sg``: the target is a constant; :math:`a` is the asymmetry ``alpha``, default 1.5),
    differentiated only w.r.t. :math:`w` (:meth:`own_loss`): a task whose weighted gradient
    norm is above its target has its weight lowered, and conversely. After each optimizer step
    (:meth:`after_step`) the weights are clamped to ``>= min_weight`` and renormalised to
    :math:`\sum_t w_t = T`; non-finite weights are reset to 1.

    Cost: T backward passes through the heads and the last shared layer only (the norms
    :math:`G_t`) + 1 backward pass through the whole network.

    Args:
        n_tasks: T.
        alpha: the asymmetry :math:`a` (default 1.5; 0 equalises the gradient norms).
        init_weights: initial :math:`w` (default ones; renormalised to sum T).
        min_weight: positive floor of the weights (default 1e-3).
        lr_scale: learning-rate multiplier of :math:`w` (see ``Weighting.param_groups``).
    """

    name = "gradnorm"
    level = "layer"
    cost = ("T backward passes through the heads and the last shared layer (gradient norms) "
            "+ 1 backward through encoder and heads")

    def __init__(self, n_tasks: int, alpha: float = 1.5, init_weights: Sequence[float] | None = None,
                 min_weight: float = 1e-3, lr_scale: float = 1.0) -> None:
        super().__init__(n_tasks, lr_scale=lr_scale)
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"gradnorm: alpha must be finite and >= 0, got {alpha!r}")
        if not (0 < min_weight < 1):
            raise ValueError(f"gradnorm: min_weight must be in (0, 1), got {min_weight!r}")
        w = torch.ones(self.n_tasks) if init_weights is None else \
            torch.as_tensor(init_weights, dtype=torch.float32).flatten().clone()
        if w.numel() != self.n_tasks or not torch.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"gradnorm: init_weights needs {self.n_tasks} positive finite values")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)
        self.task_weights = nn.Parameter(w)
        self.register_buffer("initial_losses", torch.ones(self.n_tasks))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.after_step()

    def reset(self) -> None:
        """Forget the recorded initial losses (the next call records new ones)."""
        self.initialized.fill_(False)

    def _record_initial(self, losses: Tensor) -> None:
        if not bool(self.initialized):
            with torch.no_grad():
                self.initial_losses.copy_(losses.detach().abs().clamp_min(1e-12)
                                          .to(self.initial_losses))
                self.initialized.fill_(True)

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        self._record_initial(losses)
        w = self.task_weights.detach().clamp_min(self.min_weight)
        self.last_stats = {"task_weights": w.tolist(), "grad_norms": grad_norms.detach().tolist()}
        return w

    def target_ratios(self, losses: Tensor) -> Tensor:
        r"""The relative inverse training rates :math:`r_t` (float32, on the weights' device)."""
        ratio = losses.detach().to(self.initial_losses) / self.initial_losses
        return ratio / ratio.mean().clamp_min(1e-12)

    def own_loss(self, losses: Tensor, grad_norms: Tensor | None = None) -> Tensor:
        losses = self._check_losses(losses)
        if grad_norms is None or tuple(grad_norms.shape) != (self.n_tasks,):
            raise ValueError("gradnorm: own_loss needs grad_norms of shape (T,)")
        self._record_initial(losses)
        w = self.task_weights
        g = grad_norms.detach().to(device=w.device, dtype=w.dtype)
        weighted = w * g
        r = self.target_ratios(losses)
        target = (weighted.detach().mean() * r.pow(self.alpha)).detach()
        self.last_stats = {**self.last_stats, "ratios": r.tolist()}
        return (weighted - target).abs().sum()

    def after_step(self) -> None:
        with torch.no_grad():
            w = self.task_weights
            if not torch.isfinite(w).all():
                w.fill_(1.0)
            w.clamp_(min=self.min_weight)
            w.mul_(self.n_tasks / w.sum())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, min_weight={self.min_weight}"
