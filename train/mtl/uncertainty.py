"""Homoscedastic-uncertainty weighting (learned log-variances)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Weighting


class Uncertainty(Weighting):
    r"""Task weighting by learned homoscedastic uncertainty.

    References:
        A. Kendall, Y. Gal, R. Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
        Losses for Scene Geometry and Semantics", CVPR 2018.
        A. Kendall, R. Cipolla, "Geometric Loss Functions for Camera Pose Regression with
        Deep Learning", CVPR 2017 (the form used here, for position and orientation).

    Math. With one learnable log-variance :math:`s_t = \log \hat\sigma_t^2` per task, the
    objective is

    .. math::  \mathcal{L}(\theta, s) = \sum_t e^{-s_t} L_t(\theta) + s_t .

    It is split in two for the engine: the network receives the gradient of
    :math:`\sum_t \alpha_t L_t` with :math:`\alpha_t = e^{-s_t}` held constant, and
    :meth:`own_loss` :math:`= \sum_t e^{-s_t}\,\mathrm{sg}(L_t) + s_t` (``sg``: stop-gradient)
    gives the :math:`s_t` their gradient :math:`1 - e^{-s_t} L_t`. Together these are exactly
    the gradients of :math:`\mathcal{L}`. For fixed losses the stationary point is
    :math:`s_t = \log L_t`, where :math:`\alpha_t = 1/L_t`.

    (The CVPR 2018 regression form :math:`\frac{1}{2\sigma^2} L + \log\sigma` is half of this
    objective in the same variable :math:`s = \log\sigma^2`; it has the same stationary point.
    Kendall & Cipolla 2017 initialise :math:`s_x = 0, s_q = -3`; pass ``init_log_var=[0, -3]``
    for that.)

    Guard: as :math:`L_t \to 0`, :math:`s_t \to -\infty` and :math:`\alpha_t = e^{-s_t}` would
    explode. ``s`` is therefore clamped to ``[min_log_var, max_log_var]`` (default
    ``[-10, +inf)``, i.e. :math:`\alpha_t \le e^{10} \approx 2.2\cdot 10^4`) both where it is
    used and, after every optimizer step (:meth:`after_step`), in the parameter itself.

    Cost: 1 backward pass per step (of :math:`\sum_t \alpha_t L_t` + own loss).

    Args:
        n_tasks: T.
        init_log_var: initial :math:`s_t`, a number or one per task (default 0: weights 1).
        min_log_var: lower clamp of :math:`s_t` (default -10).
        max_log_var: upper clamp of :math:`s_t` (default None: none).
        lr_scale: learning-rate multiplier of the :math:`s_t` (see ``Weighting.param_groups``).
    """

    name = "uncertainty"
    level = "loss"
    cost = "1 backward pass (of sum_t exp(-s_t) L_t + s_t)"

    def __init__(self, n_tasks: int, init_log_var: float | Sequence[float] = 0.0,
                 min_log_var: float | None = -10.0, max_log_var: float | None = None,
                 lr_scale: float = 1.0) -> None:
        super().__init__(n_tasks, lr_scale=lr_scale)
        init = torch.as_tensor(init_log_var, dtype=torch.float32).flatten()
        if init.numel() == 1:
            init = init.expand(self.n_tasks).clone()
        if init.numel() != self.n_tasks:
            raise ValueError(f"uncertainty: init_log_var needs 1 or {self.n_tasks} values, got {init.numel()}")
        if min_log_var is not None and max_log_var is not None and min_log_var > max_log_var:
            raise ValueError("uncertainty: min_log_var > max_log_var")
        for v in (min_log_var, max_log_var):
            if v is not None and not math.isfinite(v):
                raise ValueError("uncertainty: the clamps must be finite or None")
        self.min_log_var = min_log_var
        self.max_log_var = max_log_var
        self.log_vars = nn.Parameter(init)
        self.after_step()

    def _clamped(self) -> bool:
        return self.min_log_var is not None or self.max_log_var is not None

    def log_var(self) -> Tensor:
        """The clamped log-variances :math:`s_t` (differentiable inside the clamp range)."""
        if not self._clamped():
            return self.log_vars
        return self.log_vars.clamp(min=self.min_log_var, max=self.max_log_var)

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        s = self.log_var().detach()
        self.last_stats = {"log_vars": s.tolist()}
        return torch.exp(-s)

    def own_loss(self, losses: Tensor, grad_norms: Tensor | None = None) -> Tensor:
        losses = self._check_losses(losses)
        s = self.log_var()
        return (torch.exp(-s) * losses.detach().to(device=s.device, dtype=s.dtype) + s).sum()

    def after_step(self) -> None:
        if self._clamped():
            with torch.no_grad():
                self.log_vars.clamp_(min=self.min_log_var, max=self.max_log_var)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, min_log_var={self.min_log_var}, "
                f"max_log_var={self.max_log_var}")
