r"""The conservative covariance of a pose that no calibration applies to.

A refiner's own covariance says how well the data pin the pose (Gauss–Newton on the inliers),
and the fusion's says how well the k hypotheses agree: neither sees a consistently wrong
retrieval or a repeated texture, so both understate the error (on the validation rooms the
raw PnP covariance puts few of its poses inside their 95 % region). Where no calibration
applies (a map too small to fit one, or none given), the localizer publishes this module's
inflation of the raw covariance instead, per refiner:

.. math::

    \Sigma' = \begin{pmatrix} g_t \Sigma_{tt} + f_t^2 I_3 & \sqrt{g_t g_r}\,\Sigma_{tr} \\
              \sqrt{g_t g_r}\,\Sigma_{rt} & g_r \Sigma_{rr} + f_r^2 I_3 \end{pmatrix}

a scale ``g`` and a floor ``f`` (m, rad) per block, fitted by
``python -m reloc_train.experiments.trust inflation`` on the **validation** rooms (never on
test scenes) so that 95 % of the poses the uncalibrated node publishes lie inside their 95 %
χ²₃ region, translation and rotation alike, and no pose more than 0.5 m off gets a position
σ below 0.1 m (a confidently wrong pose); among the floors that reach both, the one with
the smallest median σ. The fitted numbers, with their provenance, ship in
``reloc_ros/core/uncalibrated.json``; a refiner without an entry (a plugin) gets the
largest translation and rotation terms of the shipped ones.

Example::

    d = DefaultCovariance.for_refiner("pnp")
    cov_66 = d.apply(raw_cov_66)          # what the node publishes without a calibration
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["DefaultCovariance", "DEFAULTS_FILE", "defaults"]

DEFAULTS_FILE = Path(__file__).with_name("uncalibrated.json")
#: No validation pose more than WRONG_M off may get a position σ below CONFIDENT_M (m).
WRONG_M, CONFIDENT_M = 0.5, 0.1


@dataclass(frozen=True)
class DefaultCovariance:
    """The inflation of one refiner's raw covariance (see the module docstring).

    Attributes:
        refiner: whose raw covariance it inflates ("none": the fused pose's).
        g_t, g_r: scales of the translation and rotation blocks.
        f_t_m, f_r_rad: floors (standard deviations added in quadrature per axis).
    """

    refiner: str
    g_t: float
    g_r: float
    f_t_m: float
    f_r_rad: float

    def apply(self, cov_66: np.ndarray) -> np.ndarray:
        """The inflated 6x6 covariance (ROS order); a non-finite raw covariance gets the floors alone."""
        c = np.asarray(cov_66, dtype=np.float64)
        if c.shape != (6, 6) or not np.all(np.isfinite(c)):
            c = np.zeros((6, 6))
        out = np.empty((6, 6))
        out[:3, :3] = self.g_t * c[:3, :3] + self.f_t_m ** 2 * np.eye(3)
        out[3:, 3:] = self.g_r * c[3:, 3:] + self.f_r_rad ** 2 * np.eye(3)
        s = math.sqrt(self.g_t * self.g_r)
        out[:3, 3:], out[3:, :3] = s * c[:3, 3:], s * c[3:, :3]
        return 0.5 * (out + out.T)

    def describe(self) -> str:
        return (f"{self.g_t:.3g} x the raw translation covariance + ({self.f_t_m:.3f} m)^2, "
                f"{self.g_r:.3g} x the rotation's + ({math.degrees(self.f_r_rad):.2f} deg)^2")

    @classmethod
    def for_refiner(cls, refiner: str) -> "DefaultCovariance":
        """The shipped default of ``refiner``; for one without an entry, the most conservative terms."""
        table = defaults()
        if refiner in table:
            return table[refiner]
        if not table:
            return cls(refiner, 1.0, 1.0, 1.0, math.radians(30.0))
        v = list(table.values())
        return cls(refiner, max(d.g_t for d in v), max(d.g_r for d in v), max(d.f_t_m for d in v),
                   max(d.f_r_rad for d in v))


@lru_cache(maxsize=1)
def defaults() -> dict[str, DefaultCovariance]:
    """The shipped defaults by refiner (empty if the file is missing)."""
    if not DEFAULTS_FILE.is_file():
        return {}
    d = json.loads(DEFAULTS_FILE.read_text())
    return {name: DefaultCovariance(refiner=name, **{k: float(e[k]) for k in ("g_t", "g_r", "f_t_m", "f_r_rad")})
            for name, e in d.get("refiners", {}).items()}


def fit_default(refiner: str, E_N6: np.ndarray, C_N66: np.ndarray, level: float = 0.95,
                floors_t=None, floors_r=None, groups_N=None) -> tuple[DefaultCovariance, dict]:
    """Fit the inflation of ``refiner`` on validation poses (errors ``E_N6`` and raw
    covariances ``C_N66`` of every pose the uncalibrated node would publish).

    For each floor on a grid (quantiles of the errors' norms), the smallest scale that puts
    ``level`` of the poses inside the ``level`` χ²₃ region, per block, in every group of
    ``groups_N`` (e.g. the data source: rendered rooms, a real map); the floor with the
    smallest median σ wins. Returns the default and the fit's numbers.
    """
    from reloc_ros.core.calibration import chi2_quantile  # lazy: calibration imports the refiners

    E, C = np.asarray(E_N6, np.float64), np.asarray(C_N66, np.float64)
    fin = np.all(np.isfinite(C.reshape(len(C), -1)), axis=1)
    C = np.where(fin[:, None, None], C, 0.0)
    lim = chi2_quantile(level, 3)
    groups = np.zeros(len(E), int) if groups_N is None else np.unique(np.asarray(groups_N), return_inverse=True)[1]
    out, report = {}, {}
    for name, sl, grid in (("t", slice(0, 3), floors_t), ("r", slice(3, 6), floors_r)):
        e = E[:, sl]
        norms = np.linalg.norm(e, axis=1)
        grid = np.r_[np.quantile(norms, [0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]) / math.sqrt(3),
                     CONFIDENT_M if name == "t" else []] if grid is None else grid
        best = None
        for f in grid:
            def inside(g):
                Cb = g * C[:, sl, sl] + (f ** 2 + 1e-12) * np.eye(3)
                inside_N = np.einsum("ni,ni->n", e, np.linalg.solve(Cb, e[..., None])[..., 0]) <= lim
                return min(np.mean(inside_N[groups == g]) for g in np.unique(groups)) >= level

            lo, hi = 1e-6, 1e8
            if inside(lo):
                hi = lo
            elif not inside(hi):
                continue  # this floor cannot reach the level at any scale
            for _ in range(60):  # bisection in log scale: the inside share grows with g
                if hi / lo < 1.01:
                    break
                g = math.sqrt(lo * hi)
                lo, hi = (lo, g) if inside(g) else (g, hi)
            g = hi
            sig = np.sqrt(np.maximum(np.linalg.eigvalsh(g * C[:, sl, sl] + f ** 2 * np.eye(3))[:, -1], 0))
            if name == "t" and np.any((norms > WRONG_M) & (sig < CONFIDENT_M)):
                continue  # a pose metres off with a σ of centimetres: never
            cand = (float(np.median(sig)), float(g), float(f))
            if best is None or cand[0] < best[0]:
                best = cand
        out[name] = best
        report[f"median_sigma_{name}"] = best[0]
    d = DefaultCovariance(refiner, g_t=out["t"][1], g_r=out["r"][1], f_t_m=out["t"][2], f_r_rad=out["r"][2])
    return d, {"poses": int(len(E)), "level": level, **report, **asdict(d)}
