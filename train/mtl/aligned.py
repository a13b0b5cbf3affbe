"""Aligned-MTL: align the principal components of the task-gradient matrix (on θ and on Z)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import THETA_COST, Z_COST, Weighting, as_gram64

SCALE_MODES = ("min", "median", "rmse")
#: The default relative eigenvalue threshold of the rank: float32's machine epsilon, as in the
#: authors' code (its Gram is float32, ``tol = max(lambda) * T * torch.finfo().eps``). A task
#: whose gradient vanishes below it leaves the rank instead of taking all the weight (see
#: :func:`balance_transformation`). ``rank_rtol=FLOAT64_EPS`` gives torchjd's threshold on a
#: float64 Gram: the published form without that guard.
OFFICIAL_RTOL = float(torch.finfo(torch.float32).eps)
FLOAT64_EPS = float(torch.finfo(torch.float64).eps)


def balance_transformation(gram: Tensor, scale_mode: str = "min",
                           rank_rtol: float | None = None) -> tuple[Tensor, dict]:
    r"""Aligned-MTL's balance matrix :math:`B` from the Gram matrix :math:`M = GG^\top`.

    With the eigendecomposition :math:`M = V\Lambda V^\top` (float64), keep the
    non-degenerate part :math:`\lambda_i > \tau`, :math:`\tau = \lambda_{\max}\cdot T\cdot
    \text{rank\_rtol}` (default ``rank_rtol`` = :data:`OFFICIAL_RTOL`, float32's machine
    epsilon, the authors' code's threshold), giving :math:`V_r, \Lambda_r` (rank :math:`r`), and

    .. math::  B = \sqrt{\lambda_{\text{scale}}}\; V_r \Lambda_r^{-1/2} V_r^\top,

    with :math:`\lambda_{\text{scale}}` the smallest kept eigenvalue (``'min'``, the paper),
    their median (``'median'``) or their mean (``'rmse'``). Then :math:`BG` is the closest
    (Procrustes) matrix to :math:`G` with orthogonal rows of equal norm:
    :math:`(BG)(BG)^\top = B M B = \lambda_{\text{scale}}\, V_r V_r^\top` (:math:`=\lambda_{\min} I`
    when :math:`M` is non-singular). When :math:`M = 0`, :math:`B = I`.

    A vanishing task. With ``'min'``, task :math:`k`'s weight in the direction of a task whose
    eigenvalue is :math:`\lambda` is :math:`\sqrt{\lambda_{\min}/\lambda}`: when one task's
    gradient vanishes (a retrieval loss that reached 0), :math:`\lambda_{\min} \to 0` and every
    other task's weight goes to 0 with it, while the vanishing task keeps weight 1. Under Adam,
    which rescales the tiny update to a full step, training then follows the vanishing task's
    noise, and the other losses climb. This is the method as published; its authors' code is
    guarded by its float32 threshold, which drops such a task from the rank once
    :math:`\lambda_{\min} < \lambda_{\max} T \epsilon_{32}`. ``rank_rtol=FLOAT64_EPS`` (torchjd on a
    float64 Gram) removes that guard; a larger ``rank_rtol`` guards earlier.

    Returns:
        ``(B, info)``: ``B`` T x T float64 CPU; ``info`` with ``rank`` and ``lambda_scale``.
    """
    if scale_mode not in SCALE_MODES:
        raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
    m = as_gram64(gram)
    n = m.shape[0]
    lam, v = torch.linalg.eigh(m)
    eps = OFFICIAL_RTOL if rank_rtol is None else float(rank_rtol)
    tol = lam.max() * n * eps
    keep = lam > tol
    rank = int(keep.sum())
    if rank == 0:
        return torch.eye(n, dtype=torch.float64), {"rank": 0, "lambda_scale": 0.0}
    order = torch.argsort(lam, descending=True)[:rank]
    lam_r, v_r = lam[order], v[:, order]
    if scale_mode == "min":
        scale = lam_r[-1]
    elif scale_mode == "median":
        scale = torch.median(lam_r)
    else:
        scale = lam_r.mean()
    b = scale.sqrt() * (v_r / lam_r.sqrt()) @ v_r.T
    return b, {"rank": rank, "lambda_scale": float(scale)}


class AlignedMTL(Weighting):
    r"""Aligned-MTL on the shared parameters θ.

    Reference:
        D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent Component Alignment
        for Multi-Task Learning", CVPR 2023.

    Math. With the per-task gradient matrix :math:`G` (rows :math:`g_t = \nabla_\theta L_t`)
    and :math:`M = GG^\top`, :math:`B` from :func:`balance_transformation`, the aligned
    gradients are the rows of :math:`\hat G = BG` (orthogonal, all of norm
    :math:`\sqrt{\lambda_{\min}}`: the condition number of :math:`\hat G` is 1), and the update
    is :math:`\hat G^\top w = G^\top B w`, so

    .. math::  \alpha = B\,w, \qquad w = \text{pref} = (1, \dots, 1) \text{ by default}

    (the official implementation sums the aligned gradients; ``pref=[1/T]*T`` gives their
    mean). ``last_stats`` records ``rank`` and ``lambda_scale``; the engine adds the Gram's
    eigen-statistics (``lambda_min``, ``lambda_max``, ``condition``, cosine similarities).

    Cost: T backward passes through the whole network per step; no further backward.

    Args:
        n_tasks: T.
        pref: the preference vector :math:`w` (default ones).
        scale_mode: ``'min'`` (default, the paper), ``'median'`` or ``'rmse'``.
        rank_rtol: relative eigenvalue threshold of the rank (default :data:`OFFICIAL_RTOL`,
            the authors' float32 threshold; :data:`FLOAT64_EPS`: torchjd's on a float64 Gram).
    """

    name = "aligned"
    level = "theta"
    cost = THETA_COST

    def __init__(self, n_tasks: int, pref: Sequence[float] | Tensor | None = None,
                 scale_mode: str = "min", rank_rtol: float | None = None) -> None:
        super().__init__(n_tasks)
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"{self.name}: scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
        if rank_rtol is not None and not rank_rtol > 0:
            raise ValueError(f"{self.name}: rank_rtol must be positive")
        w = torch.ones(self.n_tasks, dtype=torch.float64) if pref is None else \
            torch.as_tensor(pref, dtype=torch.float64).detach().cpu().flatten()
        if w.numel() != self.n_tasks or not torch.isfinite(w).all():
            raise ValueError(f"{self.name}: pref needs {self.n_tasks} finite values")
        self.register_buffer("pref", w, persistent=False)
        self.scale_mode = scale_mode
        self.rank_rtol = rank_rtol

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        m = as_gram64(gram)
        b, info = balance_transformation(m, self.scale_mode, self.rank_rtol)
        self.last_stats = dict(info)
        return b @ self.pref.to(device="cpu", dtype=torch.float64)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_mode={self.scale_mode!r}, pref={self.pref.tolist()}"


class AlignedMTLUB(AlignedMTL):
    r"""Aligned-MTL-UB: Aligned-MTL on the Gram of the per-task gradients w.r.t. the shared
    representation Z (Senushkin et al., CVPR 2023, the upper-bound variant).

    Math. As :class:`AlignedMTL` with :math:`G` replaced by the matrix of the flattened (batch x
    feature) :math:`\nabla_Z L_t`; then one backward of :math:`\sum_t\alpha_t L_t` propagates
    :math:`\sum_t \alpha_t \nabla_Z L_t = (BZ\text{-grads})^\top w` through the encoder.
    Cost: as :class:`~reloc_train.mtl.mgda.MGDAUB` (O(1) encoder backward passes per step),
    and likewise invariant to a positive scaling of the Gram.
    """

    name = "aligned_ub"
    level = "z"
    cost = Z_COST
