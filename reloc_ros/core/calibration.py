r"""A calibrated covariance and a calibrated confidence for the fused pose.

The spread of the k hypotheses says how well they agree with each other, not whether
they are right: k hypotheses regressed from a consistently wrong retrieval agree well
and are all wrong. This module maps signals that *do* see a wrong retrieval to

* a 6x6 covariance (ROS order x, y, z, rot_x, rot_y, rot_z; metres, radians; rotations
  about the map axes, the convention of :func:`reloc_ros.core.fusion.pose_covariance`),
* a confidence: the probability that the pose is within ``target_t_m`` and
  ``target_r_deg`` of the truth, and the threshold above which a pose is published.

Both are fitted on held-out map frames (cross-fitted: each sequence, or each block of a single
run, localized against the map without it; or a held-out training sequence), never on test
frames, by ``python -m reloc_ros.eval.calibrate``, and stored in a small JSON file that
records the checksum of the database and every setting its signals depend on (its binding).

Signals (:data:`SIGNALS`, one vector ``x`` per query, from :func:`signals`):

``top1_score``
    similarity of the best retrieved frame;
``score_margin``
    its lead over the k-th one (a flat score list means an ambiguous place);
``log_feature_distance``
    log of the distance between the query's pose feature and the best frame's (the
    heads' own input: the further apart, the less the regression has seen such a pair);
``log_baseline``
    log of the predicted translation to the best frame (m): long baselines are regressed
    worse;
``log_spread_t``
    log of the RMS distance (m) of *all* k hypotheses from the fused pose;
``inlier_share``
    the share of the k hypotheses that support the fused pose.

A refined pose has the signals of its refiner (:attr:`reloc_ros.core.refiners.Refiner.signal_names`;
for SIFT + PnP: the inlier count and share, the RMS reprojection error, the Gauss-Newton σ
of position and rotation, and the top-1 score). A calibration records its refiner
(``info['refiner']``, :attr:`Calibration.refiner`), and is used only with it.

On the benchmark preset the two feature signals separate right from wrong poses best
(rank AUC 0.77 and 0.70 on test frames, against 0.75 for the top-1 score and about 0.5
for the hypotheses' spread, which cannot see a consistently wrong retrieval).

Models (all on standardised signals :math:`z`):

* scales: :math:`\log\sigma_t^2 = a_t^T [1, z]` and :math:`\log\sigma_r^2 = a_r^T [1, z]`,
  fitted on *all* fused calibration poses by maximum likelihood of an isotropic 3-D
  Student-t (4 dof) on the translation and rotation errors, so that a few gross errors do
  not set every σ;
* shape: block-isotropic, :math:`\Sigma = \gamma\,\mathrm{diag}(m_t\sigma_t^2 I_3,
  m_r\sigma_r^2 I_3)` in map axes, with :math:`m_t, m_r` the Student-t scatter of the
  whitened errors. A full 6x6 scatter (anisotropy along the viewing direction,
  translation-rotation correlation) fitted on one held-out sequence per scene did not
  carry over to the test sequences (63-75 % inside the 95 % region against 92-94 % for
  this shape, benchmark preset), so it is not used;
* confidence: logistic regression of "within the target" on :math:`[1, z]`;
* threshold: the lowest confidence at which the 95 % Wilson lower bound of the precision of
  the calibration poses above it reaches ``precision`` (default 0.97, chosen on validation
  rooms): the most poses published at that guaranteed precision; when none reaches it, the
  one with the highest bound, and the calibration records the miss. A recall floor (default
  half of the good calibration poses published) is recorded the same way; at least
  :data:`MIN_CALIBRATION_POSES` solved poses are needed;
* :math:`\gamma`: split-conformal on the *published* calibration poses: the
  :math:`\lceil (n+1) 0.95 \rceil / n` quantile of their squared Mahalanobis distance
  divided by :math:`\chi^2_6(0.95)`, so that (for exchangeable frames) at least 95 % of
  the published poses lie in their 95 % region.

Example::

    cal = fit_calibration(X_NF, E_N6, ok_N)                # held-out training frames
    cal.save("calibration.json", db)                      # checksum of db recorded
    cal = Calibration.load("calibration.json", db)        # refuses another database
    x = signals(H, scores, pose, n_inliers, feature_dist, t)
    cov_66, p = cal.covariance(x, pose[:3, :3]), cal.confidence(x)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import chdtri, ndtri

from reloc_ros.core.files import FileProblem, atomic_write_text, version_problem
from reloc_ros.core.refiners import NO_REFINER, REFINERS

__all__ = ["SIGNALS", "signal_names",
           "CALIBRATION_FORMAT", "CalibrationError",
           "Calibration", "signals", "fit_calibration",
           "mahalanobis2", "chi2_quantile", "chi2_shares", "precision_recall", "wilson_lower", "planar_mahalanobis2", "position_sigma",
           "binding_hash", "MIN_CALIBRATION_POSES", "DEFAULT_RECALL_FLOOR", "DEFAULT_PRECISION"]

CALIBRATION_FORMAT = "reloc_ros.calibration"
CALIBRATION_FORMAT_VERSION = 3
#: Fewer fused calibration poses than this make no calibration: below it the Wilson bound of a
#: 97 % precision cannot be reached at all (n / (n + 1.96²) < 0.97 for n < 125 all good), and
#: the node uses the conservative default covariance instead (:mod:`reloc_ros.core.uncalibrated`).
MIN_CALIBRATION_POSES = 50
#: The default publish decision (chosen on the validation rooms, docs/trust.md): the 95 % Wilson
#: lower bound of the precision of the published
#: calibration poses reaches this, ...
DEFAULT_PRECISION = 0.97
#: ... and at least this share of the good calibration poses is published.
DEFAULT_RECALL_FLOOR = 0.5
SIGNALS = ("top1_score", "score_margin", "log_feature_distance", "log_baseline", "log_spread_t", "inlier_share")
_RIDGE = 1e-2  # L2 penalty on the non-bias weights (standardised signals)
#: Standardised signals are clipped to ±Z_CLIP: a query unlike every calibration frame gets
#: the scale and confidence of the most extreme ones, never an extrapolated one.
Z_CLIP = 4.0
#: Bounds of σ_t (m) and σ_r (rad), so that no signal value gives a zero or infinite covariance.
SIGMA_T_RANGE = (1e-3, 1e3)
SIGMA_R_RANGE = (1e-4, math.pi)


def signal_names(refiner: str) -> tuple[str, ...]:
    """The signals a calibration for ``refiner`` is fitted on: :data:`SIGNALS` for fused poses
    (``"none"``), else the registered unit's own (a ValueError for an unknown refiner)."""
    return SIGNALS if refiner == NO_REFINER else tuple(REFINERS.get(refiner).signal_names)


class CalibrationError(FileProblem):
    """A calibration file is missing, corrupt, or belongs to another database. Names the file."""


def signals(H_k44: np.ndarray, scores_k: np.ndarray, pose_44: np.ndarray, n_inliers: int,
            feature_dist_k: np.ndarray, t_k3: np.ndarray) -> np.ndarray:
    """The signal vector (:data:`SIGNALS`) of one fused query.

    Args:
        H_k44: the k absolute-pose hypotheses, best retrieved first (non-finite ones are
            ignored by the spread).
        scores_k: their retrieval similarities, best first.
        pose_44: the fused pose.
        n_inliers: hypotheses that support it.
        feature_dist_k: distances between the query's pose feature and each retrieved
            frame's (:attr:`reloc_ros.core.localizer.Hypotheses.feature_dist`).
        t_k3: the predicted relative translations (m), best first.
    """
    s = np.asarray(scores_k, dtype=np.float64).reshape(-1)
    k = len(s)
    fin = np.all(np.isfinite(H_k44), axis=(1, 2))
    H = H_k44[fin]
    d_t = np.linalg.norm(H[:, :3, 3] - pose_44[:3, 3], axis=1) if len(H) else np.zeros(1)
    base = float(np.linalg.norm(np.asarray(t_k3, dtype=np.float64).reshape(-1, 3)[0]))
    return np.array([
        s[0],
        s[0] - s[-1] if k > 1 else 0.0,
        math.log(1e-3 + float(np.asarray(feature_dist_k, dtype=np.float64).reshape(-1)[0])),
        math.log(0.01 + (base if np.isfinite(base) else 1e3)),
        math.log(0.01 + float(np.sqrt(np.mean(d_t ** 2)))),
        n_inliers / max(1, k),
    ])


def mahalanobis2(e_N6: np.ndarray, cov_N66: np.ndarray) -> np.ndarray:
    """(N, 3) squared Mahalanobis distances: over all 6 axes, translation alone, rotation alone."""
    e, C = np.atleast_2d(e_N6), np.asarray(cov_N66).reshape(-1, 6, 6)
    out = np.empty((len(e), 3))
    for j, sl in enumerate((slice(0, 6), slice(0, 3), slice(3, 6))):
        ee = e[:, sl]
        out[:, j] = np.einsum("ni,ni->n", ee, np.linalg.solve(C[:, sl, sl], ee[..., None])[..., 0])
    return out


def planar_mahalanobis2(e_N6: np.ndarray, cov_N66: np.ndarray) -> np.ndarray:
    """(N,) squared Mahalanobis distances over (x, y, yaw), what a planar localizer (AMCL)
    reads of the pose: the map's z axis is up (REP-103)."""
    idx = np.array([0, 1, 5])
    e, C = np.atleast_2d(e_N6)[:, idx], np.asarray(cov_N66).reshape(-1, 6, 6)[:, idx][:, :, idx]
    return np.einsum("ni,ni->n", e, np.linalg.solve(C, e[..., None])[..., 0])


def position_sigma(cov_66: np.ndarray) -> float:
    """The position σ (m): the square root of the largest eigenvalue of the position block."""
    c = np.asarray(cov_66, dtype=np.float64)[:3, :3]
    return float(np.sqrt(max(float(np.linalg.eigvalsh(0.5 * (c + c.T))[-1]), 0.0))) if np.all(np.isfinite(c)) \
        else float("nan")


def chi2_quantile(level: float, dof: int) -> float:
    """The ``level`` quantile of the χ² distribution with ``dof`` degrees of freedom
    (``scipy.stats.chi2.ppf(level, dof)``, from ``scipy.special``: the running node does not
    pay for importing ``scipy.stats``, about 0.6 s)."""
    return float(chdtri(dof, 1.0 - level))


def chi2_shares(d2_N3: np.ndarray, level: float = 0.95) -> dict:
    """Shares of squared distances inside the ``level`` χ² region (6 dof, then 3 and 3)."""
    d2 = np.atleast_2d(d2_N3)
    lim = [chi2_quantile(level, 6), chi2_quantile(level, 3), chi2_quantile(level, 3)]
    n = len(d2)
    return {"n": n, **{f"within_chi2_{name}": float(np.mean(d2[:, j] <= lim[j])) if n else float("nan")
                       for j, name in enumerate(("6", "t3", "r3"))}}


def precision_recall(conf_N: np.ndarray, good_N: np.ndarray, thresholds: np.ndarray | None = None) -> dict:
    """Precision (share of published poses that are good) and recall (share of all frames
    published) over confidence thresholds; a frame without a pose has confidence -inf."""
    c = np.asarray(conf_N, dtype=np.float64)
    g = np.asarray(good_N, dtype=bool)
    th = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pub = c[None, :] >= th[:, None]
    n_pub = pub.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(n_pub > 0, (pub & g[None]).sum(1) / np.maximum(n_pub, 1), np.nan)
    return {"threshold": th, "precision": prec, "recall": n_pub / max(1, len(c))}


def wilson_lower(k, n, z: float = float(ndtri(0.975))):
    """The Wilson score lower bound (95 % by default) of a proportion ``k / n`` (0 for n = 0);
    element-wise on arrays. It is what a precision measured on ``n`` poses guarantees: 10
    good poses of 10 give 0.72, 100 of 100 give 0.963, 300 of 300 give 0.987."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        c = p + z * z / (2 * n)
        r = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lb = (c - r) / (1 + z * z / n)
    lb = np.where(n > 0, lb, 0.0)
    return float(lb) if lb.ndim == 0 else lb


def binding_hash(binding: dict) -> str:
    """A short hash of a calibration's binding (:meth:`reloc_ros.core.localizer.Localizer.calibration_binding`)."""
    return hashlib.sha256(json.dumps(binding, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _design(z_NF: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones((len(z_NF), 1)), z_NF], axis=1)


def _fit_logvar(A_NP: np.ndarray, q_N: np.ndarray, dof: int, nu: float = 4.0) -> np.ndarray:
    r"""The log-scale regression :math:`\log\sigma^2 = a^T x`: maximum likelihood of a
    ``dof``-dimensional Student-t (``nu`` degrees of freedom) on squared norms ``q``.

    The t likelihood keeps a few gross errors (a wrong retrieval that still passed the
    threshold) from inflating every σ: the scale tracks the bulk, and the conformal factor
    fitted afterwards accounts for the tails."""
    q = np.maximum(q_N, 1e-12)
    a0 = np.zeros(A_NP.shape[1])
    a0[0] = math.log(float(np.median(q)) / dof)
    pen = np.r_[0.0, np.full(A_NP.shape[1] - 1, _RIDGE)]

    def f(a):
        u = A_NP @ a
        r = q * np.exp(-u) / nu
        nll = 0.5 * dof * u + 0.5 * (nu + dof) * np.log1p(r)
        g = 0.5 * dof - 0.5 * (nu + dof) * r / (1 + r)
        return float(np.mean(nll) + np.sum(pen * a * a)), A_NP.T @ g / len(q) + 2 * pen * a

    return minimize(f, a0, jac=True, method="L-BFGS-B").x


def _t_scatter(w_ND: np.ndarray, nu: float = 4.0, iters: int = 20) -> np.ndarray:
    """Scatter matrix of a multivariate Student-t (EM), robust to a few gross errors."""
    n, d = w_ND.shape
    M = w_ND.T @ w_ND / n + 1e-9 * np.eye(d)
    for _ in range(iters):
        m2 = np.einsum("ni,ni->n", w_ND, np.linalg.solve(M, w_ND.T).T)
        wt = (nu + d) / (nu + m2)
        M = (w_ND * wt[:, None]).T @ w_ND / n + 1e-9 * np.eye(d)
    return M


def _fit_logistic(A_NP: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    y = y_N.astype(np.float64)
    pen = np.r_[0.0, np.full(A_NP.shape[1] - 1, _RIDGE)]
    a0 = np.zeros(A_NP.shape[1])
    a0[0] = math.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3))

    def f(a):
        u = A_NP @ a
        p = 1 / (1 + np.exp(-u))
        nll = np.mean(np.logaddexp(0, u) - y * u)
        return float(nll + np.sum(pen * a * a)), A_NP.T @ (p - y) / len(y) + 2 * pen * a

    return minimize(f, a0, jac=True, method="L-BFGS-B").x


@dataclass
class Calibration:
    """A fitted calibration (see the module docstring for the models). Attributes:

    signal_names: the signals it was fitted on (:func:`signal_names` of its refiner).
    mean, std: standardisation of the signals.
    a_t, a_r: log-variance weights (bias first) of translation (m²) and rotation (rad²).
    shape: 6x6 scatter of the whitened errors in the estimate's camera axes (block-isotropic
        as fitted by :func:`fit_calibration`, so the axes do not change it).
    inflation: the conformal factor γ.
    a_conf: logistic weights (bias first) of the confidence.
    threshold: publish when the confidence is at least this.
    target_t_m, target_r_deg: what the confidence is the probability of.
    info: provenance and the fit's own numbers (samples, split, shares on the fit data).
    """

    signal_names: list[str]
    mean: list[float]
    std: list[float]
    a_t: list[float]
    a_r: list[float]
    shape: list[list[float]]
    inflation: float
    a_conf: list[float]
    threshold: float
    target_t_m: float = 0.25
    target_r_deg: float = 10.0
    info: dict = field(default_factory=dict)

    def _z(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != len(self.signal_names):
            raise ValueError(f"expected {len(self.signal_names)} signals {self.signal_names}, got {x.shape[1]}")
        return _design(np.clip((x - np.asarray(self.mean)) / np.asarray(self.std), -Z_CLIP, Z_CLIP))

    def sigmas(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(σ_t in m, σ_r in rad) per signal row, before the shape and inflation (a
        non-finite signal gives NaN: such a pose is not published)."""
        A = self._z(x)
        st = np.clip(np.exp(0.5 * np.clip(A @ np.asarray(self.a_t), -60, 60)), *SIGMA_T_RANGE)
        sr = np.clip(np.exp(0.5 * np.clip(A @ np.asarray(self.a_r), -60, 60)), *SIGMA_R_RANGE)
        return st, sr

    def confidence(self, x: np.ndarray) -> float | np.ndarray:
        """Probability that the pose is within the target (one row: a float)."""
        p = 1 / (1 + np.exp(-(self._z(x) @ np.asarray(self.a_conf))))
        return float(p[0]) if np.ndim(x) == 1 else p

    def covariance(self, x: np.ndarray, R_est: np.ndarray) -> np.ndarray:
        """6x6 covariance (map axes, ROS order) of a pose with rotation ``R_est`` and signals
        ``x``; batched as (N, F), (N, 3, 3) -> (N, 6, 6)."""
        single = np.ndim(x) == 1
        st, sr = self.sigmas(x)
        R = np.asarray(R_est, dtype=np.float64).reshape(-1, 3, 3)
        D = np.concatenate([np.repeat(st[:, None], 3, 1), np.repeat(sr[:, None], 3, 1)], axis=1)
        C = self.inflation * D[:, :, None] * np.asarray(self.shape)[None] * D[:, None, :]
        B = np.zeros((len(R), 6, 6))
        B[:, :3, :3] = R
        B[:, 3:, 3:] = R
        cov = B @ C @ np.swapaxes(B, 1, 2)
        cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        return cov[0] if single else cov

    @property
    def refiner(self) -> str:
        """The refiner whose poses it was fitted on (``"none"``: fused poses)."""
        return self.info.get("refiner", NO_REFINER)

    @property
    def target_met(self) -> bool:
        """Whether the publish decision met its targets at fit time (precision bound and recall floor)."""
        return not self.misses()

    def misses(self) -> list[str]:
        """What the fit missed, one phrase each (empty: every target met)."""
        i, out = self.info, []
        if not i.get("precision_reached", False):
            out.append(f"precision: its 95 % lower bound {i.get('precision_lower_bound', float('nan')):.3f} is below "
                       f"the target {i.get('precision_target', float('nan')):.3f}")
        if not i.get("recall_reached", False):
            out.append(f"recall: {i.get('recall_good', float('nan')):.3f} of the good calibration poses published, "
                       f"below the floor {i.get('recall_floor', float('nan')):.3f}")
        return out

    # -- files -----------------------------------------------------------------------------
    def save(self, path: Path | str, db=None) -> None:
        """Write atomically as JSON; ``db`` (a FrameDatabase) records its checksum (the
        binding, ``info['binding']``, is written as fitted)."""
        payload = {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_FORMAT_VERSION,
                   "database_checksum": db.checksum if db is not None else None, **asdict(self)}
        atomic_write_text(path, json.dumps(payload, indent=1, default=float) + "\n")

    @classmethod
    def load(cls, path: Path | str, db=None, binding: dict | None = None) -> "Calibration":
        """Read a calibration file; with ``db``, refuse it unless it was fitted for that
        database; with ``binding`` (:meth:`reloc_ros.core.localizer.Localizer.calibration_binding`),
        unless every setting its signals depend on is the same."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(path, "calibration file does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CalibrationError(path, f"not a readable calibration file ({e})") from None
        if not isinstance(payload, dict) or payload.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(path, f"not a {CALIBRATION_FORMAT} file")
        problem = version_problem("calibration file", payload.get("format_version"), CALIBRATION_FORMAT_VERSION,
                                  "python -m reloc_ros.eval.calibrate")
        if problem:
            raise CalibrationError(path, problem)
        if db is not None and payload.get("database_checksum") != db.checksum:
            raise CalibrationError(path, "was fitted for another database (checksum differs); refit it "
                                         "with python -m reloc_ros.eval.calibrate")
        try:
            cal = cls(**{k: payload[k] for k in cls.__dataclass_fields__ if k in payload})
            n = len(cal.signal_names)
            bad = [name for name, v in (("mean", cal.mean), ("std", cal.std)) if len(v) != n] + \
                  [name for name, v in (("a_t", cal.a_t), ("a_r", cal.a_r), ("a_conf", cal.a_conf)) if len(v) != n + 1]
            if np.shape(cal.shape) != (6, 6):
                bad.append("shape")
            vals = np.concatenate([np.ravel(v) for v in (cal.mean, cal.std, cal.a_t, cal.a_r, cal.a_conf, cal.shape)]
                                  + [[cal.inflation, cal.threshold]]).astype(np.float64)
        except (TypeError, ValueError, KeyError) as e:
            raise CalibrationError(path, f"inconsistent calibration file ({e})") from None
        if bad:
            raise CalibrationError(path, "entries of the wrong size: " + ", ".join(bad))
        if not np.all(np.isfinite(vals)) or cal.inflation <= 0 or np.min(cal.std) <= 0 \
                or np.min(np.linalg.eigvalsh(np.asarray(cal.shape))) <= 0:
            raise CalibrationError(path, "holds non-finite or non-positive values")
        try:
            names = signal_names(cal.refiner)
        except ValueError as e:
            raise CalibrationError(path, f"was fitted for refiner {cal.refiner!r}, which is not registered ({e})") \
                from None
        if list(cal.signal_names) != list(names):
            raise CalibrationError(path, f"signals {cal.signal_names} are not this version's "
                                         f"{list(names)} for refiner {cal.refiner!r}")
        if binding is not None:
            cal.check_binding(binding, path)
        return cal

    def check_binding(self, binding: dict, path: Path | str = "<calibration>") -> None:
        """Raise a :class:`CalibrationError` (naming ``path`` and each setting that differs)
        unless it was fitted with ``binding``."""
        fitted = self.info.get("binding")
        if not isinstance(fitted, dict):
            raise CalibrationError(path, "records no binding (settings it was fitted with); refit it")
        diff = binding_diff(fitted, binding)
        if diff:
            raise CalibrationError(path, "was fitted with other settings than these: " + "; ".join(diff)
                                   + " (refit it with python -m reloc_ros.eval.calibrate, or use its settings)")


def binding_diff(fitted: dict, now: dict, prefix: str = "") -> list[str]:
    """``key: fitted -> now`` for every setting that differs between two bindings (nested)."""
    out = []
    for k in sorted(set(fitted) | set(now)):
        a, b = fitted.get(k, "(unset)"), now.get(k, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += binding_diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            short = [str(v)[:24] for v in (a, b)]
            out.append(f"{prefix}{k} {short[0]} -> {short[1]}")
    return out


def fit_calibration(X_NF: np.ndarray, E_N6: np.ndarray, ok_N: np.ndarray,
                    target_t_m: float = 0.25, target_r_deg: float = 10.0, precision: float = DEFAULT_PRECISION,
                    level: float = 0.95, recall_floor: float = DEFAULT_RECALL_FLOOR,
                    min_poses: int = MIN_CALIBRATION_POSES, info: dict | None = None,
                    signal_names: tuple[str, ...] = SIGNALS) -> Calibration:
    """Fit a :class:`Calibration` on held-out frames.

    Args:
        X_NF: signals of N queries (rows of frames without a fused pose are ignored).
        E_N6: their 6-vector errors (:func:`reloc_ros.core.geometry.pose_error_vector`).
        ok_N: whether fusion gave a pose (frames without one count as not published).
        target_t_m, target_r_deg: a pose is good within these.
        precision: the threshold is the lowest confidence at which the 95 % Wilson lower bound
            of the good share of the published calibration poses reaches this (the most
            poses published at that guaranteed precision); where none does, the threshold
            with the highest bound, and the calibration records that it missed.
        level: the χ² region the inflation is fitted to (0.95: 95 % of published poses inside).
        recall_floor: the share of the good calibration poses that must be published at the
            threshold; a lower share is recorded as a miss.
        min_poses: fewer fused poses than this raise a ValueError (no bound means anything).
        info: provenance to record (``refiner``: whose poses these are, see :func:`signal_names`;
            ``binding``: the settings the signals depend on).
        signal_names: the names of the columns of ``X_NF``.
    """
    ok = np.asarray(ok_N, dtype=bool)
    X, E = np.asarray(X_NF, np.float64)[ok], np.asarray(E_N6, np.float64)[ok]
    if len(X) < min_poses:
        raise ValueError(f"calibration needs at least {min_poses} fused poses, got {len(X)}")
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    A = _design((X - mean) / std)
    good = (np.linalg.norm(E[:, :3], axis=1) <= target_t_m) & \
           (np.degrees(np.linalg.norm(E[:, 3:], axis=1)) <= target_r_deg)
    a_conf = _fit_logistic(A, good) if 0 < good.sum() < len(good) else np.r_[8.0 if good.all() else -8.0,
                                                                            np.zeros(A.shape[1] - 1)]
    p = 1 / (1 + np.exp(-(A @ a_conf)))
    # Threshold: the lowest one at which the Wilson bound of the published poses' precision
    # reaches `precision`; else the one with the highest bound.
    cand = np.unique(np.r_[0.0, p])
    pub_CN = p[None, :] >= cand[:, None]
    n_pub = pub_CN.sum(1)
    n_good = (pub_CN & good[None]).sum(1)
    lb = wilson_lower(n_good, n_pub)
    reach = np.flatnonzero(lb >= precision)
    reached = len(reach) > 0
    j = int(reach[0]) if reached else int(np.argmax(lb))
    threshold = float(cand[j])
    pub = p >= threshold
    recall_good = float(n_good[j] / max(1, good.sum()))
    # Scales on all fused poses (the trend over the signals needs the bad ones too); the
    # block-isotropic shape and the conformal inflation on the published ones.
    q_t, q_r = np.sum(E[:, :3] ** 2, 1), np.sum(E[:, 3:] ** 2, 1)
    a_t = _fit_logvar(A, q_t, 3)
    a_r = _fit_logvar(A, q_r, 3)
    w = np.concatenate([E[:, :3] / np.exp(0.5 * A @ a_t)[:, None], E[:, 3:] / np.exp(0.5 * A @ a_r)[:, None]], 1)
    M = _t_scatter(w)
    shape = np.diag(np.r_[np.full(3, np.trace(M[:3, :3]) / 3), np.full(3, np.trace(M[3:, 3:]) / 3)])
    if X.shape[1] != len(signal_names):
        raise ValueError(f"{X.shape[1]} signal columns for {len(signal_names)} names {list(signal_names)}")
    cal = Calibration(signal_names=list(signal_names), mean=mean.tolist(), std=std.tolist(), a_t=a_t.tolist(),
                      a_r=a_r.tolist(), shape=shape.tolist(), inflation=1.0, a_conf=a_conf.tolist(),
                      threshold=threshold, target_t_m=target_t_m, target_r_deg=target_r_deg)
    eye = np.broadcast_to(np.eye(3), (len(X), 3, 3))
    d2 = mahalanobis2(E, cal.covariance(X, eye))
    n = int(pub.sum())
    q_level = min(1.0, math.ceil((n + 1) * level) / n)
    cal.inflation = float(max(np.quantile(d2[pub, 0], q_level, method="higher") / chi2_quantile(level, 6), 1e-6))
    d2 = d2 / cal.inflation
    cal.info = {**(info or {}), "queries": int(len(ok)), "fused": int(ok.sum()), "good": int(good.sum()),
                "published": n, "precision_target": precision, "precision_reached": bool(reached),
                "precision_at_threshold": float(good[pub].mean()),
                "precision_lower_bound": float(lb[j]),
                "recall_at_threshold": float(n / len(ok)), "recall_good": recall_good,
                "recall_floor": recall_floor, "recall_reached": bool(recall_good >= recall_floor),
                "fit_chi2": chi2_shares(d2[pub], level), "fit_chi2_all_fused": chi2_shares(d2, level)}
    return cal
