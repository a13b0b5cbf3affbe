r"""The generic MTL backward step: :func:`mtl_backward`.

The trainer does one forward pass (so BatchNorm statistics are updated once per step),
computes the per-task losses ``losses`` (shape ``(T,)``, each a mean over the batch) and
calls ``mtl_backward(method, losses, shared_params=..., task_params=..., z=...,
layer_params=...)``, then ``optimizer.step()`` and ``method.after_step()``. The forward is
never re-run per task. ``mtl_backward`` computes what the method's level needs, gets
:math:`\alpha` from ``method.weights``, and leaves in ``.grad`` of every shared, task-specific
and method parameter the gradient of

.. math::  \sum_t \alpha_t L_t \;(+\ \text{method.own\_loss}),

with :math:`\alpha` constant (the package's one rule). ``.grad`` is *assigned*, not
accumulated: the engine discards whatever those parameters held before (parameters outside
the three lists that the backward reaches would accumulate as usual, so list every trainable
parameter). Parameters with ``requires_grad=False`` are left alone.

Levels
------
``"loss"``  one backward of :math:`\sum_t\alpha_t L_t` (+ own loss).

``"theta"`` T calls ``torch.autograd.grad(L_t, shared + task params, retain_graph=t < T-1)``
    give the per-task gradient matrix :math:`J` (T x P, shared columns first); the Gram
    :math:`M = G G^\top` of its shared part :math:`G` is formed in float64 (in column chunks);
    :math:`\alpha` = ``method.weights(losses, gram=M)``; then ``p.grad`` =
    :math:`\sum_t \alpha_t \partial L_t/\partial p` from :math:`\alpha^\top J` (no further
    backward). The graph is freed by the last call.

``"z"``     T calls ``torch.autograd.grad(L_t, z, retain_graph=True)`` go through the heads
    only; each :math:`\nabla_Z L_t` is flattened over batch x feature and the Gram is formed in
    float64; :math:`\alpha` from the method; then one backward of :math:`\sum_t\alpha_t L_t`
    (+ own loss) through everything.

``"layer"`` T calls ``torch.autograd.grad(L_t, layer_params, retain_graph=True)`` (heads and
    the last shared layer only) give the per-task gradient norms :math:`G_t` at that layer;
    :math:`\alpha` and the own loss (GradNorm's) from the method; then one backward of
    :math:`\sum_t\alpha_t L_t` + own loss (the own loss reaches only the method's weights).

Data-parallel training (``torch.distributed``)
-----------------------------------------------
Use the plain module (no ``DistributedDataParallel`` wrapper: ``torch.autograd.grad`` bypasses
its gradient hooks) and pass the reducers, e.g. ``**distributed_reducers(method)``. Every rank
holds an equal shard :math:`B/R` of the global batch and its per-task losses are means over
its shard, so the global loss is :math:`L_t = \frac1R\sum_r L_t^{(r)}` and

* ``reduce_grads`` must be an all-reduce **mean** (of any tensor). It is applied to the
  detached per-task losses that the weighting sees (GradNorm's loss ratios, MGDA's
  ``'loss'`` normalisation), so that :math:`\alpha` is identical on all ranks, and then:

  - ``theta``: to the stacked per-task gradient matrix :math:`J` (shared **and** task-specific
    columns, one collective): :math:`\nabla L_t = \frac1R\sum_r\nabla L_t^{(r)}`, so every
    rank holds the global per-task gradients, the global Gram and the same :math:`\alpha`, and
    the combined gradient needs no further reduction. It equals the single-process gradient
    on the full batch (up to floating-point rounding). Traffic: T times that of plain DDP.
  - ``layer``: to the T x P_W per-task gradients at the last shared layer (global norms), and
    after the backward to all parameter gradients (as DDP does).
  - ``z`` and ``loss``: after the backward, to all parameter gradients (as DDP does).
* ``reduce_gram`` (``z`` only) must be an all-reduce **sum**. :math:`Z` is per sample, so the
  gradient of the global loss w.r.t. the global :math:`Z` is the concatenation over ranks of
  :math:`\frac1R\nabla_{Z^{(r)}} L_t^{(r)}`, whose Gram is :math:`\frac1{R^2}\sum_r M^{(r)}`:
  the sum of the local Grams is :math:`R^2` times the global Gram. MGDA-UB and Aligned-MTL-UB
  are invariant to a positive scaling of the Gram, so :math:`\alpha` equals the
  single-process one; the logged eigenvalues are :math:`R^2` times larger.

Caveats: with unequal shards the mean of the rank means is not the global mean (as in DDP);
non-synchronised BatchNorm makes every rank's model see its own batch statistics, so the
"global" gradient is that of the per-rank-BN model (as in DDP), not of the full-batch model;
random methods (PCGrad) need identical RNG draws on all ranks (``seed=``); after a reduction
every listed parameter has a gradient (zeros where it had none), identically on all ranks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .base import Weighting, gram_stats

Reducer = Callable[[Tensor], Tensor]

__all__ = ["mtl_backward", "LEVEL_STEPS", "gram64", "all_reduce_mean_fn", "all_reduce_sum_fn", "distributed_reducers"]


# ---------------------------------------------------------------------------- helpers
def gram64(mat: Tensor, chunk: int = 1 << 22) -> Tensor:
    """``mat @ mat.T`` in float64 for a T x P matrix, cast in column chunks (memory O(T*chunk))."""
    n = mat.shape[0]
    flat = mat.reshape(n, -1)
    out = torch.zeros(n, n, dtype=torch.float64, device=mat.device)
    for s in range(0, flat.shape[1], chunk):
        c = flat[:, s:s + chunk].to(torch.float64)
        out += c @ c.T
    return out


def _trainable(params: Iterable[nn.Parameter] | None, exclude: set[int] = frozenset()) -> list[nn.Parameter]:
    """Unique parameters that require grad, in order, minus ``exclude`` (ids)."""
    out, seen = [], set(exclude)
    for p in params or ():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _numel(params: Sequence[Tensor]) -> int:
    return sum(p.numel() for p in params)


def _common_dtype(params: Sequence[Tensor]) -> torch.dtype:
    return functools.reduce(torch.promote_types, (p.dtype for p in params), torch.float32)


def _fill_row(row: Tensor, grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> list[bool]:
    """Write the flattened ``grads`` into ``row`` (zeros for None); returns which were not None."""
    off, used = 0, []
    for g, p in zip(grads, params):
        n = p.numel()
        if g is None:
            row[off:off + n].zero_()
            used.append(False)
        else:
            row[off:off + n].copy_(g.reshape(-1))
            used.append(True)
        off += n
    return used


def _assign(params: Sequence[nn.Parameter], flat: Tensor, present: Sequence[bool] | None = None) -> None:
    """``p.grad`` <- the slice of ``flat`` for each parameter (None where not ``present``)."""
    off = 0
    for i, p in enumerate(params):
        n = p.numel()
        if present is not None and not present[i]:
            p.grad = None
        else:
            g = torch.empty_like(p, memory_format=torch.preserve_format)
            g.copy_(flat[off:off + n].view(p.shape))
            p.grad = g
        off += n


def _zero(params: Iterable[nn.Parameter]) -> None:
    for p in params:
        p.grad = None


def _reduce_param_grads(params: Sequence[nn.Parameter], reduce: Reducer) -> None:
    """All-reduce every listed gradient with one collective; every parameter ends with a grad."""
    if not params:
        return
    dtype = _common_dtype(params)
    flat = torch.zeros(_numel(params), dtype=dtype, device=params[0].device)
    _fill_row(flat, [p.grad for p in params], params)
    flat = reduce(flat)
    _assign(params, flat)


def _per_task_grads(losses: Tensor, inputs: Sequence[Tensor], *, retain_last: bool) -> tuple[Tensor, list[bool]]:
    """T x P matrix of flattened ``d L_t / d inputs`` (one autograd call per task)."""
    n_tasks = losses.shape[0]
    dtype = _common_dtype(inputs)
    mat = torch.empty(n_tasks, _numel(inputs), dtype=dtype, device=inputs[0].device)
    present = [False] * len(inputs)
    for t in range(n_tasks):
        retain = retain_last or t < n_tasks - 1
        grads = torch.autograd.grad(losses[t], list(inputs), retain_graph=retain, allow_unused=True)
        used = _fill_row(mat[t], grads, inputs)
        present = [a or b for a, b in zip(present, used)]
    return mat, present


# ---------------------------------------------------------------------------- the step
@dataclass
class _Step:
    """What one call of :func:`mtl_backward` works on."""

    method: Weighting
    losses: Tensor  # (T,), with graph
    seen: Tensor  # (T,) detached losses as the weighting sees them (rank mean when distributed)
    shared: list[nn.Parameter]
    task: list[nn.Parameter]
    own: list[nn.Parameter]
    z: Tensor | Sequence[Tensor] | None
    layer: list[nn.Parameter]
    reduce_grads: Reducer | None
    reduce_gram: Reducer | None

    @property
    def net(self) -> list[nn.Parameter]:
        return self.shared + self.task


@dataclass
class _Outcome:
    """What a level computed: the weights, the Gram (or None), the own loss, the passes."""

    alpha: Tensor
    gram: Tensor | None
    own_loss: Tensor | None
    encoder_backwards: int
    head_backwards: int


def _weighted_backward(step: _Step, alpha: Tensor, own_loss: Tensor | None) -> None:
    """One backward of sum_t alpha_t L_t (+ own loss) through everything; then the DDP-style
    all-reduce of every gradient."""
    _zero(step.net + step.own)
    total = (alpha.to(device=step.losses.device, dtype=step.losses.dtype) * step.losses).sum()
    if own_loss is not None and own_loss.requires_grad:
        total = total + own_loss.to(device=total.device, dtype=total.dtype)
    total.backward()
    if step.reduce_grads is not None:
        _reduce_param_grads(step.net + step.own, step.reduce_grads)


def _level_loss(step: _Step) -> _Outcome:
    """Weights from the losses alone; one backward."""
    alpha = step.method.weights(step.seen)
    own_loss = step.method.own_loss(step.seen)
    _weighted_backward(step, alpha, own_loss)
    return _Outcome(alpha, None, own_loss, 1, 0)


def _level_theta(step: _Step) -> _Outcome:
    """T per-task gradients of every parameter; weights from the Gram of the shared part;
    the combined gradient alpha^T J assigned directly (no further backward)."""
    net = step.net
    if not net:
        raise ValueError("mtl_backward: no trainable shared or task parameters")
    jac, present = _per_task_grads(step.losses, net, retain_last=False)
    if step.reduce_grads is not None:
        jac = step.reduce_grads(jac)
        present = [True] * len(net)
    gram = gram64(jac[:, :_numel(step.shared)])
    alpha = step.method.weights(step.seen, gram=gram)
    _assign(net, alpha.to(device=jac.device, dtype=jac.dtype) @ jac, present)
    own_loss = step.method.own_loss(step.seen)
    _zero(step.own)
    if own_loss is not None and own_loss.requires_grad:
        own_loss.backward()
        if step.reduce_grads is not None:
            _reduce_param_grads(step.own, step.reduce_grads)
    return _Outcome(alpha, gram, own_loss, step.method.n_tasks, 0)


def _level_z(step: _Step) -> _Outcome:
    """T gradients w.r.t. Z through the heads only; weights from their Gram; one backward."""
    z = step.z
    parts = [z] if isinstance(z, Tensor) else list(z) if isinstance(z, (list, tuple)) else []
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        raise ValueError(f"mtl_backward: method {step.method.name!r} needs the shared representation z")
    if not all(p.requires_grad for p in parts):
        raise ValueError("mtl_backward: z does not require grad")
    zg, _ = _per_task_grads(step.losses, parts, retain_last=True)
    gram = gram64(zg)
    del zg
    if step.reduce_gram is not None:
        gram = step.reduce_gram(gram.clone())
    alpha = step.method.weights(step.seen, gram=gram)
    own_loss = step.method.own_loss(step.seen)
    _weighted_backward(step, alpha, own_loss)
    return _Outcome(alpha, gram, own_loss, 1, step.method.n_tasks)


def _level_layer(step: _Step) -> _Outcome:
    """T gradients at the last shared layer (their norms); weights and own loss; one backward."""
    if not step.layer:
        raise ValueError(f"mtl_backward: method {step.method.name!r} needs layer_params "
                         "(the last shared layer's parameters)")
    lg, _ = _per_task_grads(step.losses, step.layer, retain_last=True)
    if step.reduce_grads is not None:
        lg = step.reduce_grads(lg)
    gram = gram64(lg)
    del lg
    grad_norms = gram.diagonal().clamp_min(0.0).sqrt().to(device=step.losses.device, dtype=torch.float32)
    alpha = step.method.weights(step.seen, gram=gram, grad_norms=grad_norms)
    own_loss = step.method.own_loss(step.seen, grad_norms=grad_norms)
    _weighted_backward(step, alpha, own_loss)
    return _Outcome(alpha, gram, own_loss, 1, step.method.n_tasks)


#: level -> the function that computes it.
LEVEL_STEPS: dict[str, Callable[[_Step], _Outcome]] = {
    "loss": _level_loss, "theta": _level_theta, "z": _level_z, "layer": _level_layer,
}


def mtl_backward(method: Weighting, losses: Tensor, *, shared_params: Iterable[nn.Parameter],
                 task_params: Iterable[nn.Parameter], z: Tensor | Sequence[Tensor] | None = None,
                 layer_params: Iterable[nn.Parameter] | None = None,
                 reduce_grads: Reducer | None = None,
                 reduce_gram: Reducer | None = None) -> dict[str, Any]:
    r"""Set ``.grad`` of all parameters for one MTL step of ``method`` (see the module docstring).

    Args:
        method: the weighting (``method.level`` selects what is computed).
        losses: ``(T,)`` per-task losses of this step's single forward pass (with graph).
        shared_params: the encoder's parameters θ.
        task_params: the heads' parameters.
        z: the shared representation (``"z"`` level), a tensor of the graph, e.g. ``(B, 2d)``,
            or a list of them (Z is then their concatenation, flattened: its Gram is the sum
            of the parts' Grams; e.g. the heads' and an auxiliary decoder's inputs).
        layer_params: the last shared layer's parameters (``"layer"`` level).
        reduce_grads: data-parallel all-reduce **mean** of a tensor (returns the result; may
            work in place on its argument, which the engine owns).
        reduce_gram: data-parallel all-reduce **sum** of the local Z Gram (``"z"`` level).

    Returns:
        statistics (python numbers): ``method``, ``level``, ``alpha`` (list; also as
        ``weights``), ``losses`` (list, as seen by the weighting), ``encoder_backwards``
        (backward passes that reach the encoder), ``head_backwards`` (partial passes through
        the heads / last layer only), ``backward_passes`` (their sum), ``own_loss`` when the
        method has one, and ``method_stats``: for the gradient levels the Gram statistics
        (``lambda_min``, ``lambda_max``, ``condition``, ``grad_norms``, ``cos``, ``cos_min``;
        see ``gram_stats``, computed once per step here) updated with ``method.last_stats``.
        The entries of ``method_stats`` are also copied at the top level where they do not
        clash.
    """
    if method.level not in LEVEL_STEPS:
        raise ValueError(f"mtl_backward: unknown level {method.level!r} of method {method.name!r}")
    if not isinstance(losses, Tensor) or losses.dim() != 1 or losses.shape[0] != method.n_tasks:
        raise ValueError(f"mtl_backward: losses must be a ({method.n_tasks},) tensor")
    if not losses.requires_grad:
        raise ValueError("mtl_backward: losses do not require grad (no graph to differentiate)")
    shared = _trainable(shared_params)
    task = _trainable(task_params, exclude={id(p) for p in shared})
    own = _trainable(method.parameters(), exclude={id(p) for p in shared + task})
    seen = losses.detach().to(torch.float32)
    if reduce_grads is not None:
        seen = reduce_grads(seen.clone())
    step = _Step(method, losses, seen, shared, task, own, z, _trainable(layer_params), reduce_grads, reduce_gram)
    out = LEVEL_STEPS[method.level](step)

    stats: dict[str, Any] = {"method": method.name, "level": method.level, "alpha": out.alpha.tolist()}
    stats["weights"] = stats["alpha"]
    stats["losses"] = seen.tolist()
    stats["encoder_backwards"] = out.encoder_backwards
    stats["head_backwards"] = out.head_backwards
    stats["backward_passes"] = out.encoder_backwards + out.head_backwards
    if out.own_loss is not None:
        stats["own_loss"] = float(out.own_loss.detach())
    method_stats: dict[str, Any] = gram_stats(out.gram) if out.gram is not None else {}
    method_stats.update(method.last_stats)
    stats["method_stats"] = method_stats
    for k, v in method_stats.items():
        stats.setdefault(k, v)
    return stats


# ---------------------------------------------------------------------------- distributed
def all_reduce_mean_fn(group=None) -> Reducer:
    """A ``reduce_grads`` for ``torch.distributed``: in-place all-reduce mean over ``group``."""
    def reduce(t: Tensor) -> Tensor:
        t = t.contiguous()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return t.div_(dist.get_world_size(group))

    return reduce


def all_reduce_sum_fn(group=None) -> Reducer:
    """A ``reduce_gram`` for ``torch.distributed``: in-place all-reduce sum over ``group``."""
    def reduce(t: Tensor) -> Tensor:
        t = t.contiguous()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return t

    return reduce


def distributed_reducers(method: Weighting, group=None) -> dict[str, Reducer]:
    """The ``reduce_*`` keyword arguments of :func:`mtl_backward` for ``method``'s level
    (empty when ``torch.distributed`` is not initialised or has a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return {}
    out = {"reduce_grads": all_reduce_mean_fn(group)}
    if method.level == "z":
        out["reduce_gram"] = all_reduce_sum_fn(group)
    return out
