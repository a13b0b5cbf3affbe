"""MGDA: the min-norm point of the convex hull of the task gradients (on θ and on Z)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import THETA_COST, Z_COST, Weighting, as_gram64

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_2(m11: float, m12: float, m22: float) -> float:
    r"""Exact min-norm weight of the first of two vectors.

    Returns :math:`\gamma \in [0, 1]` minimising :math:`|\gamma g_1 + (1-\gamma) g_2|^2`
    given :math:`m_{11} = g_1\cdot g_1`, :math:`m_{12} = g_1\cdot g_2`, :math:`m_{22} = g_2\cdot g_2`:

    .. math::  \gamma = \mathrm{clip}\Big(\frac{(g_2 - g_1)\cdot g_2}{|g_1 - g_2|^2}, 0, 1\Big)
               = \mathrm{clip}\Big(\frac{m_{22} - m_{12}}{m_{11} - 2 m_{12} + m_{22}}, 0, 1\Big).

    When :math:`g_1 = g_2` (zero denominator) every :math:`\gamma` is optimal; 0.5 is returned.
    """
    den = m11 - 2.0 * m12 + m22
    if not den > 1e-300 or den <= 1e-14 * max(m11 + m22, 0.0):
        return 0.5
    gamma = (m22 - m12) / den
    return min(max(gamma, 0.0), 1.0)


def frank_wolfe(gram: Tensor, max_iters: int = 250, tol: float = 1e-5) -> Tensor:
    r"""Frank-Wolfe iterations for the min-norm point (Algorithm 2 of Sener & Koltun 2018).

    From the uniform point, at each iteration the vertex :math:`e_t`,
    :math:`t = \arg\min_t (M\gamma)_t`, is the linear minimiser, and the exact line search on
    :math:`[\gamma, e_t]` gives the step (the 2-vector problem of :func:`min_norm_2`); it stops
    after ``max_iters`` iterations or when the step size falls below ``tol``. This is step
    for step ``torchjd.aggregation.MGDAWeighting(epsilon=tol, max_iters=max_iters)``.
    Returns a float64 CPU tensor on the simplex.
    """
    if max_iters < 1 or not tol > 0:
        raise ValueError("frank_wolfe: max_iters must be >= 1 and tol > 0")
    m = as_gram64(gram)
    n = m.shape[0]
    alpha = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(max_iters):
        m_alpha = m @ alpha
        t = int(torch.argmin(m_alpha))
        a = float(m_alpha[t])          # <alpha, e_t>_M
        b = float(alpha @ m_alpha)     # <alpha, alpha>_M
        c = float(m[t, t])             # <e_t, e_t>_M
        # step towards e_t: minimise |(1-g) alpha + g e_t|_M^2
        if c <= a:
            gamma = 1.0
        elif b <= a:
            gamma = 0.0
        else:
            gamma = (b - a) / (b + c - 2.0 * a)
        alpha = (1.0 - gamma) * alpha
        alpha[t] += gamma
        if gamma < tol:
            break
    return alpha


def active_set_refine(gram: Tensor, start: Tensor, max_iters: int | None = None) -> Tensor:
    r"""Exact min-norm weights by a primal active-set method started from ``start``.

    Solves :math:`\min \tfrac12\gamma^\top M\gamma` s.t. :math:`\mathbf 1^\top\gamma = 1,
    \gamma \ge 0` exactly (finite termination; at most a few T x T solves when started from
    a Frank-Wolfe iterate, whose support is usually already right). The working set holds
    the zero coordinates; each iteration solves the equality-constrained KKT system on the
    free coordinates, steps to the first blocking bound, or, at a stationary point, frees
    the coordinate with the most negative multiplier
    :math:`\lambda_i = (M\gamma)_i - (M\gamma)_F`. Optimality:
    :math:`(M\gamma)_i \ge \gamma^\top M\gamma` for all i, with equality on the support.
    The result is returned only if it does not increase the objective (else ``start``).
    """
    m = as_gram64(gram)
    n = m.shape[0]
    scale = float(m.diagonal().max()) if n else 0.0
    x0 = start.detach().to(device="cpu", dtype=torch.float64).clamp_min(0.0)
    if not scale > 0 or not torch.isfinite(m).all() or not float(x0.sum()) > 0:
        return start.detach().to(device="cpu", dtype=torch.float64)
    mn = m / scale                        # scale-free tolerances
    x0 = x0 / x0.sum()
    x = torch.where(x0 > 1e-12, x0, torch.zeros_like(x0))
    x = x / x.sum()
    active = [bool(v == 0) for v in x]
    eps = 1e-12
    for _ in range(max_iters or 10 * n + 10):
        free = [i for i in range(n) if not active[i]]
        k = len(free)
        grad = mn @ x
        kkt = torch.zeros(k + 1, k + 1, dtype=torch.float64)
        kkt[:k, :k] = mn[free][:, free]
        kkt[:k, k] = 1.0
        kkt[k, :k] = 1.0
        rhs = torch.zeros(k + 1, dtype=torch.float64)
        rhs[:k] = -grad[free]
        sol = torch.linalg.lstsq(kkt, rhs.unsqueeze(1), driver="gelsd").solution.squeeze(1)
        p = torch.zeros(n, dtype=torch.float64)
        p[free] = sol[:k]
        g_free = grad[free]
        if float(p.abs().max()) <= 1e-13 or float(g_free.max() - g_free.min()) <= eps:
            # stationary on the free set (KKT there: equal gradient components)
            gf = g_free.mean()
            lam = {i: float(grad[i] - gf) for i in range(n) if active[i]}
            worst = min(lam, key=lam.get) if lam else None
            if worst is None or lam[worst] >= -eps:
                break
            active[worst] = False
            continue
        step, block = 1.0, None
        for i in free:
            if p[i] < 0:
                s_i = float(-x[i] / p[i])
                if s_i < step:
                    step, block = s_i, i
        x = (x + step * p).clamp_min(0.0)
        if block is not None:
            x[block] = 0.0
            active[block] = True
        x = x / x.sum()
    f_new, f_old = float(x @ mn @ x), float(x0 @ mn @ x0)
    if not f_new <= f_old + 1e-15:
        return x0
    return x


def min_norm_weights(gram: Tensor, max_iters: int = 250, tol: float = 1e-5,
                     refine: bool = True) -> Tensor:
    r"""Weights :math:`\gamma` on the simplex of the min-norm element of the hull of the tasks'
    gradients, from their Gram matrix :math:`M = G G^\top`:

    .. math::  \gamma^\star = \arg\min_{\gamma \in \Delta^{T-1}} \gamma^\top M \gamma
               \quad (= |\textstyle\sum_t \gamma_t g_t|^2).

    T = 1: ``[1]``. T = 2: the closed form of :func:`min_norm_2`. T > 2: Frank-Wolfe
    (:func:`frank_wolfe`, ``max_iters``, ``tol``), then, with ``refine`` (default), an exact
    active-set solve started from the Frank-Wolfe point (:func:`active_set_refine`).
    Frank-Wolfe converges sublinearly and, for ill-conditioned Grams (where the min-norm
    point is small), its error can dominate the min-norm direction itself; the refinement
    makes the result exact. ``refine=False`` reproduces torchjd's ``MGDAWeighting``.

    Args:
        gram: T x T PSD matrix (any dtype/device; solved in float64 on the CPU).
    Returns:
        ``(T,)`` float64 CPU tensor, non-negative, summing to 1.
    """
    m = as_gram64(gram)
    n = m.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    if n == 2:
        g = min_norm_2(float(m[0, 0]), float(m[0, 1]), float(m[1, 1]))
        return torch.tensor([g, 1.0 - g], dtype=torch.float64)
    alpha = frank_wolfe(m, max_iters=max_iters, tol=tol)
    if refine:
        alpha = active_set_refine(m, alpha)
    return alpha


class MGDA(Weighting):
    r"""MGDA on the shared parameters θ: the min-norm point of the convex hull of the
    per-task gradients.

    References:
        O. Sener, V. Koltun, "Multi-Task Learning as Multi-Objective Optimization",
        NeurIPS 2018 (Frank-Wolfe solver, Algorithm 2; gradient normalisations of the
        official code). J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for
        multiobjective optimization", C. R. Math. 2012.

    Math. With the per-task gradients :math:`g_t = \nabla_\theta L_t` and optional
    normalisers :math:`n_t > 0`, :math:`\hat g_t = g_t / n_t`, solve (in float64)

    .. math::  \gamma^\star = \arg\min_{\gamma\in\Delta} \big|\textstyle\sum_t \gamma_t \hat g_t\big|^2,
               \qquad \hat M = \mathrm{diag}(1/n)\, M\, \mathrm{diag}(1/n),

    exactly for T = 2, by Frank-Wolfe for T > 2, refined to the exact solution by an
    active-set solve (:func:`min_norm_weights`), and return
    :math:`\alpha_t \propto \gamma^\star_t / n_t`, scaled so that :math:`\sum_t\alpha_t = 1`
    (``normalize_weights=True``, default). The shared gradient
    :math:`\sum_t \alpha_t g_t` is then the min-norm point of the normalised gradients
    (rescaled); with ``normalization='none'`` it is exactly the MGDA min-norm point
    :math:`d^\star`, which satisfies :math:`d^{\star\top} g_t \ge |d^\star|^2` for every task,
    with equality where :math:`\gamma^\star_t > 0`.

    Normalisations (the official code's ``gradient_normalizers``), :math:`n_t =`
    ``'none'``: 1; ``'l2'``: :math:`|g_t|`; ``'loss'``: :math:`L_t`; ``'loss+'``:
    :math:`L_t |g_t|` (losses clamped to ``>= 1e-12``). Note: the official training script
    multiplies the *un-normalised* losses by :math:`\gamma^\star`, which equals this
    :math:`\alpha` only for ``'none'``; here the normalisation is applied consistently so that
    the step is the min-norm point of the normalised gradients.

    Cost: T backward passes through the whole network per step (one per task, shared and
    task-specific parameters together); no further backward.

    Args:
        n_tasks: T.
        normalization: ``'none'`` (default), ``'l2'``, ``'loss'`` or ``'loss+'``.
        max_iters: Frank-Wolfe iterations for T > 2 (default 250, as the official code).
        tol: Frank-Wolfe stops when its step size is below ``tol`` (default 1e-5).
        normalize_weights: scale alpha to sum 1 (default True).
        refine: exact active-set refinement of the Frank-Wolfe point for T > 2 (default
            True; False: Frank-Wolfe only, as the paper's code and torchjd).
    """

    name = "mgda"
    level = "theta"
    cost = THETA_COST

    def __init__(self, n_tasks: int, normalization: str = "none", max_iters: int = 250,
                 tol: float = 1e-5, normalize_weights: bool = True, refine: bool = True) -> None:
        super().__init__(n_tasks)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"{self.name}: normalization must be one of {NORMALIZATIONS}, "
                             f"got {normalization!r}")
        if int(max_iters) < 1 or not tol > 0:
            raise ValueError(f"{self.name}: max_iters must be >= 1 and tol > 0")
        self.normalization = normalization
        self.max_iters = int(max_iters)
        self.tol = float(tol)
        self.normalize_weights = bool(normalize_weights)
        self.refine = bool(refine)

    def normalizers(self, gram: Tensor, losses: Tensor) -> Tensor:
        """The :math:`n_t` of the chosen normalisation (float64, CPU, positive)."""
        m = as_gram64(gram)
        tiny = 1e-12
        norms = m.diagonal().clamp_min(0.0).sqrt()
        loss = losses.detach().to(device="cpu", dtype=torch.float64).abs().clamp_min(tiny)
        if self.normalization == "none":
            n = torch.ones_like(norms)
        elif self.normalization == "l2":
            n = norms
        elif self.normalization == "loss":
            n = loss
        else:
            n = loss * norms
        return n.clamp_min(tiny)

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        m = as_gram64(gram)
        n = self.normalizers(m, losses)
        m_hat = m / (n[:, None] * n[None, :])
        gamma = min_norm_weights(m_hat, max_iters=self.max_iters, tol=self.tol, refine=self.refine)
        alpha = gamma / n
        if self.normalize_weights:
            alpha = alpha / alpha.sum()
        self.last_stats = {"min_norm": float((gamma @ m_hat @ gamma).clamp_min(0.0).sqrt()),
                           "gamma": gamma.tolist()}
        return alpha

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, normalization={self.normalization!r}, "
                f"max_iters={self.max_iters}, tol={self.tol}")


class MGDAUB(MGDA):
    r"""MGDA-UB: the MGDA solver on the Gram of the per-task gradients w.r.t. the shared
    representation Z (Sener & Koltun, NeurIPS 2018, Section 3.3, "MGDA-UB").

    Math. By the chain rule :math:`g_t = (\partial Z/\partial\theta)^\top \nabla_Z L_t`, so
    :math:`|\sum_t \gamma_t g_t| \le |\partial Z/\partial\theta|\,|\sum_t\gamma_t\nabla_Z L_t|`:
    minimising the upper bound only needs the Z-gradients. Here :math:`\nabla_Z L_t` is
    flattened over batch x feature (as the official code's per-element sum), the Gram
    :math:`M^Z_{ij} = \langle\nabla_Z L_i, \nabla_Z L_j\rangle` is formed in float64, and the
    weights are those of :class:`MGDA` (same normalisations and options) on :math:`M^Z`.
    The weights are invariant to a positive scaling of the Gram (e.g. the :math:`R^2` of a
    data-parallel sum of local Grams).

    Cost: T backward passes through the heads only (to Z) + 1 backward pass through the
    whole network, i.e. O(1) encoder backward passes per step.
    """

    name = "mgda_ub"
    level = "z"
    cost = Z_COST
