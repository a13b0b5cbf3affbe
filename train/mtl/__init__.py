r"""Multi-task-learning (MTL) weightings for the Siamese relative-pose network.

The network: a shared encoder (parameters θ) maps the two images to features
:math:`f_a, f_b`; the shared representation :math:`Z = [f_a, f_b]` (B x 2d) feeds T task
heads (task-specific parameters). The tasks are translation and rotation (T = 2) for now;
every method works for any T >= 1 (T = 1 trivially gives :math:`\alpha = [1]` or, for the
learned weightings, that task's learned scale).

The one rule
------------
Every method yields a weight vector :math:`\alpha \in \mathbb R^T`, treated as constants for
the network, and **every** network parameter, shared and task-specific, receives the gradient
of

.. math::  \sum_t \alpha_t L_t .

So the heads get :math:`\alpha_t`-weighted gradients consistently for all methods, and for the
θ-level methods the shared gradient :math:`\sum_t\alpha_t g_t` (:math:`g_t = \nabla_\theta L_t`)
equals the method's aggregated gradient: the MGDA min-norm point, the PCGrad sum of projected
gradients, Aligned-MTL's :math:`G^\top B w`, ... Gradient-based weights are computed from the
T x T Gram matrix of the per-task gradients, built in float64. A method's own learnable
parameters (Uncertainty's log-variances, GradNorm's weights) are trained by its ``own_loss``,
whose gradient reaches only them.

Methods (``build_method(name, n_tasks, **options)``; ``level`` says what the engine computes)

============  =======  ============================================================
name          level    method
============  =======  ============================================================
uniform       loss     :math:`\alpha_t = 1/T`
uncertainty   loss     Kendall et al. (CVPR 2017/2018), learned log-variances
mgda          theta    Sener & Koltun (NeurIPS 2018), min-norm point on θ
mgda_ub       z        the same on the Z-level Gram (MGDA-UB)
gradnorm      layer    Chen et al. (ICML 2018), learned weights
pcgrad        theta    Yu et al. (NeurIPS 2020), gradient surgery (sum convention)
aligned       theta    Senushkin et al. (CVPR 2023), Aligned-MTL on θ
aligned_ub    z        Aligned-MTL on the Z-level Gram
imtl_g        theta    Liu et al. (ICLR 2021), via torchjd
cagrad        theta    Liu et al. (NeurIPS 2021), via torchjd (needs cvxpy, clarabel)
upgrad        theta    Quinton & Rey (2024), via torchjd (needs qpsolvers, quadprog)
============  =======  ============================================================

Nash-MTL is not provided (torchjd 0.18 has no Gramian weighting for it; see
:mod:`reloc_train.mtl.torchjd_extras`).

Training step (see :mod:`reloc_train.mtl.engine` for the levels and for data-parallel
training)::

    method = build_method(cfg.method, n_tasks=2, **cfg.options)
    opt = torch.optim.AdamW([{"params": model.parameters()}, *method.param_groups(method_lr)], lr=lr)
    ...
    preds, z = model.forward_pair(x_a, x_b)              # one forward per step
    losses = torch.stack([loss_t(preds, y), loss_q(preds, y)])
    stats = mtl_backward(method, losses, shared_params=model.shared_parameters(),
                         task_params=model.task_parameters(), z=z,
                         layer_params=list(last_shared_layer.parameters()))
    opt.step(); method.after_step()
"""

from __future__ import annotations

from reloc_ros.core.registry import Registry

from .aligned import AlignedMTL, AlignedMTLUB, balance_transformation
from .base import LEVELS, Weighting, gram_stats
from .engine import (all_reduce_mean_fn, all_reduce_sum_fn, distributed_reducers, gram64,
                     mtl_backward)
from .gradnorm import GradNorm
from .mgda import MGDA, MGDAUB, active_set_refine, frank_wolfe, min_norm_2, min_norm_weights
from .pcgrad import PCGrad, pcgrad_weights
from .torchjd_extras import CAGrad, IMTLG, UPGrad
from .uncertainty import Uncertainty
from .uniform import Uniform

#: The MTL methods by name, in the order of the table above; a plugin adds one with
#: ``@METHODS.register(name)`` on its :class:`Weighting` subclass (docs/extending.md).
METHODS: Registry = Registry("MTL method")
for _cls in (Uniform, Uncertainty, MGDA, MGDAUB, GradNorm, PCGrad, AlignedMTL, AlignedMTLUB, IMTLG, CAGrad, UPGrad):
    METHODS.register(_cls.name)(_cls)


def build_method(name: str, n_tasks: int, **cfg) -> Weighting:
    """The weighting ``name`` (case-insensitive, ``-`` read as ``_``) for ``n_tasks`` tasks.

    ``cfg`` holds the method's options (e.g. ``alpha=1.5`` for gradnorm); an unknown option
    raises ``TypeError``. The torchjd-backed methods raise ``ImportError`` (with the install
    hint) when torchjd or the solver they need is missing.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"unknown MTL method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[key](n_tasks=n_tasks, **cfg)


def available_methods(n_tasks: int = 2) -> list[str]:
    """The registered methods that can be built in this environment (optional solvers)."""
    out = []
    for name in METHODS:
        try:
            build_method(name, n_tasks)
        except ImportError:
            continue
        out.append(name)
    return out


__all__ = [
    "METHODS", "LEVELS", "build_method", "available_methods", "mtl_backward", "Weighting",
    "Uniform", "Uncertainty", "MGDA", "MGDAUB", "GradNorm", "PCGrad", "AlignedMTL",
    "AlignedMTLUB", "IMTLG", "CAGrad", "UPGrad",
    "min_norm_2", "min_norm_weights", "frank_wolfe", "active_set_refine", "pcgrad_weights", "balance_transformation",
    "gram_stats", "gram64", "all_reduce_mean_fn", "all_reduce_sum_fn", "distributed_reducers",
]
