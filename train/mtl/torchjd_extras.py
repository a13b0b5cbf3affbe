"""Extra θ-level weightings backed by torchjd's Gramian weightings (imported lazily).

torchjd (``pip install torchjd``; this project pins 0.18.0) is an optional dependency of
these four classes only. Some torchjd weightings need further optional solvers, which
torchjd checks when the weighting is built; building the method then raises an
``ImportError`` with torchjd's install hint:

* ``imtl_g``: none;
* ``cagrad``: ``cvxpy`` and ``clarabel`` (``pip install "torchjd[cagrad]"``);
* ``upgrad``: ``qpsolvers`` and ``quadprog`` (``pip install "torchjd[quadprog_projector]"``).

Nash-MTL is not provided: torchjd 0.18 exposes it only as the stateful ``NashMTL``
aggregator of the Jacobian matrix (its weighting, ``_NashMTLWeighting``, is private and takes
the matrix, not its Gramian), and it needs ``cvxpy`` and ``ecos``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import THETA_COST, Weighting, as_gram64



class _TorchJDWeighting(Weighting):
    """A θ-level method whose weights come from a torchjd Gramian weighting."""

    level = "theta"
    cost = THETA_COST

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        try:
            import torchjd.aggregation  # noqa: F401  # lazy: optional (about 3.5 s), only for these weightings
        except ImportError as e:  # pragma: no cover - torchjd is in the test requirements
            raise ImportError(f"{self.name} needs torchjd (pip install torchjd==0.18.0)") from e

    def _build(self) -> None:
        """Build the torchjd weighting (raises ImportError when its solvers are missing).

        Kept as a plain attribute, not a submodule: it holds no learnable state.
        """
        object.__setattr__(self, "_jd", self._make())

    def _make(self):
        raise NotImplementedError

    def _weights(self, losses: Tensor, gram: Tensor | None, grad_norms: Tensor | None) -> Tensor:
        m = as_gram64(gram)
        self.last_stats = {}
        return self._jd(m).detach().to(device="cpu", dtype=torch.float64)


class IMTLG(_TorchJDWeighting):
    r"""IMTL-G (gradient part of Impartial MTL), via ``torchjd.aggregation.IMTLGWeighting``.

    References:
        L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards
        Impartial Multi-task Learning", ICLR 2021. Generalised to linearly dependent
        gradients in P. Quinton, V. Rey, "Jacobian Descent for Multi-Objective Optimization",
        arXiv:2406.16232, 2024.

    Math. The update :math:`d = G^\top\alpha` has equal projections on all unit task
    gradients, :math:`d\cdot g_t/|g_t| = \text{const}`: with :math:`M = GG^\top` and
    :math:`u_t = |g_t| = \sqrt{M_{tt}}`, :math:`v = M^{+} u` and :math:`\alpha = v / \sum_t v_t`
    (0 when :math:`\sum_t v_t = 0`).

    Cost: T backward passes through the whole network per step; no further backward.
    """

    name = "imtl_g"

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self._build()

    def _make(self):
        from torchjd.aggregation import IMTLGWeighting  # lazy: optional, checked in __init__

        return IMTLGWeighting()


class CAGrad(_TorchJDWeighting):
    r"""CAGrad (conflict-averse gradient descent), via ``torchjd.aggregation.CAGradWeighting``.

    Reference:
        B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu, "Conflict-Averse Gradient Descent for
        Multi-task Learning", NeurIPS 2021.

    Math. With the average gradient :math:`g_0 = \frac1T\sum_t g_t` and
    :math:`\phi = c^2|g_0|^2`, the dual
    :math:`w^\star = \arg\min_{w\in\Delta} g_w^\top g_0 + \sqrt\phi\,|g_w|`
    (:math:`g_w = G^\top w`) gives the update :math:`d = g_0 + \frac{\sqrt\phi}{|g_w|} g_w`,
    i.e. :math:`\alpha = \frac1T\mathbf 1 + \frac{\sqrt\phi}{|g_w|} w^\star` (solved by torchjd
    with cvxpy/Clarabel on the trace-normalised Gram; not rescaled by :math:`1/(1+c^2)`).

    Cost: T backward passes through the whole network per step; no further backward.

    Args:
        n_tasks: T.
        c: radius scale :math:`c \ge 0` (default 0.4).
        norm_eps: torchjd's normalisation epsilon (default 1e-4).
    """

    name = "cagrad"

    def __init__(self, n_tasks: int, c: float = 0.4, norm_eps: float = 1e-4) -> None:
        super().__init__(n_tasks)
        self.c = float(c)
        self.norm_eps = float(norm_eps)
        self._build()

    def _make(self):
        from torchjd.aggregation import CAGradWeighting  # lazy: optional, checked in __init__

        return CAGradWeighting(c=self.c, norm_eps=self.norm_eps)


class UPGrad(_TorchJDWeighting):
    r"""UPGrad (unconflicting projection of gradients), via ``torchjd.aggregation.UPGradWeighting``.

    Reference:
        P. Quinton, V. Rey, "Jacobian Descent for Multi-Objective Optimization",
        arXiv:2406.16232, 2024.

    Math. Each :math:`p_t g_t` (preference :math:`p`, default :math:`1/T`) is projected onto
    the dual cone :math:`\{d: Gd \ge 0\}` of the task gradients; the projection is
    :math:`G^\top v_t` with :math:`v_t = \arg\min_{v \ge p_t e_t} v^\top M v`, and
    :math:`\alpha = \sum_t v_t` (a QP per task, solved by quadprog on the Gram).

    Cost: T backward passes through the whole network per step; no further backward.

    Args:
        n_tasks: T.
        pref: the preference vector (default None: :math:`1/T` each).
    """

    name = "upgrad"

    def __init__(self, n_tasks: int, pref: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(n_tasks)
        p = None if pref is None else torch.as_tensor(pref, dtype=torch.float64).detach().cpu().flatten()
        if p is not None and (p.numel() != self.n_tasks or not torch.isfinite(p).all()):
            raise ValueError(f"upgrad: pref needs {self.n_tasks} finite values")
        object.__setattr__(self, "pref", p)
        self._build()

    def _make(self):
        from torchjd.aggregation import UPGradWeighting  # lazy: optional, checked in __init__

        return UPGradWeighting(pref_vector=self.pref)
