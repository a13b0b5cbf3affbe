r"""A calibrated covariance and a calibrated confidence for the fused pose.

The spread of the k hypotheses says how well they agree with each other, not whether
they are right: k hypotheses regressed from a consistently wrong retrieval agree well
and are all wrong. This module maps signals that *do* see a wrong retrieval to

* a 6x6 covariance (ROS order x, y, z, rot_x, rot_y, rot_z; metres, radians; rotations
  about the map axes, the convention of :func:`reloc_ros.core.fusion.pose_covariance`),
* a confidence: the probability that the pose is within ``target_t_m`` and
  ``target_r_deg`` of the truth, and the threshold above which a pose is published.

Both are fitted on a *held-out split of the training sequences* (``calib``, see
:meth:`reloc_ros.data.sevenscenes.Scene.sequences`), never on test frames, by
``python -m reloc_train.calibrate``, and stored in a small JSON file that records the
checksum of the database it belongs to.

Signals (:data:`SIGNALS`, one vector ``x`` per query, from :func:`signals`):

``top1_score``
    similarity of the best retrieved frame;
``score_margin``
    its lead over the k-th one (a flat score list means an ambiguous place);
``log_spread_t`` / ``log_spread_r``
    log of the RMS distance (m) and angle (°) of *all* k hypotheses from the fused pose;
``log_db_spread``
    log of the RMS distance of the retrieved frames' centres from their mean (frames
    retrieved from several places of the map);
``inlier_share``
    the share of the k hypotheses that support the fused pose.

Models (all on standardised signals :math:`z`):

* scales: :math:`\log\sigma_t^2 = a_t^T [1, z]` and :math:`\log\sigma_r^2 = a_r^T [1, z]`,
  fitted by maximum likelihood of an isotropic 3-D Student-t (4 dof) on the translation
  and rotation errors, so that a few gross errors do not set every σ;
* shape: the 6x6 Student-t scatter :math:`M` of the errors whitened by those scales, in the
  *camera* axes of the estimate (regression errors are anisotropic along the viewing
  direction), so :math:`\Sigma = \gamma\, B D M D B^T` with :math:`D = \mathrm{diag}(\sigma_t
  I_3, \sigma_r I_3)`, :math:`B = \mathrm{diag}(R_{est}, R_{est})`;
* :math:`\gamma`: the 95 % quantile of the squared Mahalanobis distance over the
  published calibration poses divided by :math:`\chi^2_6(0.95)`, so that 95 % of them lie
  in the 95 % region (a split-conformal correction of the Gaussian's shape);
* confidence: logistic regression of "within the target" on :math:`[1, z]`.

The threshold is the lowest confidence at which the *calibration* poses above it reach
``precision`` (default 0.95) within the target: the most poses published at that
precision. The covariance is then fitted on those published poses only, because only
they reach a consumer.

Example::

    cal = fit_calibration(X_NF, E_N6, R_N33, ok_N)         # held-out training frames
    cal.save("calibration.json", db)                      # checksum of db recorded
    cal = Calibration.load("calibration.json", db)        # refuses another database
    x = signals(T_db, H, scores, pose, n_inliers)
    cov_66, p = cal.covariance(x, pose[:3, :3]), cal.confidence(x)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import chi2

from reloc_ros.core.files import FileProblem, atomic_write_text
from reloc_ros.core.geometry import rotation_error_deg

__all__ = ["SIGNALS", "CALIBRATION_FORMAT", "CalibrationError", "Calibration", "signals", "fit_calibration",
           "mahalanobis2", "chi2_shares", "precision_recall"]

CALIBRATION_FORMAT = "reloc_ros.calibration"
CALIBRATION_FORMAT_VERSION = 1
SIGNALS = ("top1_score", "score_margin", "log_spread_t", "log_spread_r", "log_db_spread", "inlier_share")
_RIDGE = 1e-2  # L2 penalty on the non-bias weights (standardised signals)


class CalibrationError(FileProblem):
    """A calibration file is missing, corrupt, or belongs to another database. Names the file."""


def signals(T_db_k44: np.ndarray, H_k44: np.ndarray, scores_k: np.ndarray, pose_44: np.ndarray,
            n_inliers: int) -> np.ndarray:
    """The signal vector (:data:`SIGNALS`) of one fused query.

    Args:
        T_db_k44: poses of the k retrieved database frames, best first.
        H_k44: the k absolute-pose hypotheses (non-finite ones are ignored).
        scores_k: their retrieval similarities, best first.
        pose_44: the fused pose.
        n_inliers: hypotheses that support it.
    """
    s = np.asarray(scores_k, dtype=np.float64).reshape(-1)
    k = len(s)
    fin = np.all(np.isfinite(H_k44), axis=(1, 2))
    H = H_k44[fin]
    d_t = np.linalg.norm(H[:, :3, 3] - pose_44[:3, 3], axis=1) if len(H) else np.zeros(1)
    d_r = rotation_error_deg(H, pose_44[None]) if len(H) else np.zeros(1)
    c = T_db_k44[:, :3, 3]
    db_spread = float(np.sqrt(np.mean(np.sum((c - c.mean(0)) ** 2, axis=1))))
    return np.array([
        s[0],
        s[0] - s[-1] if k > 1 else 0.0,
        math.log(0.01 + float(np.sqrt(np.mean(d_t ** 2)))),
        math.log(0.5 + float(np.sqrt(np.mean(d_r ** 2)))),
        math.log(0.01 + db_spread),
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


def chi2_shares(d2_N3: np.ndarray, level: float = 0.95) -> dict:
    """Shares of squared distances inside the ``level`` χ² region (6 dof, then 3 and 3)."""
    d2 = np.atleast_2d(d2_N3)
    lim = [chi2.ppf(level, 6), chi2.ppf(level, 3), chi2.ppf(level, 3)]
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

    signal_names: the signals it was fitted on (:data:`SIGNALS`).
    mean, std: standardisation of the signals.
    a_t, a_r: log-variance weights (bias first) of translation (m²) and rotation (rad²).
    shape: 6x6 second moment of the whitened errors, camera axes.
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
        return _design((x - np.asarray(self.mean)) / np.asarray(self.std))

    def sigmas(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(σ_t in m, σ_r in rad) per signal row, before the shape and inflation."""
        A = self._z(x)
        return np.exp(0.5 * A @ np.asarray(self.a_t)), np.exp(0.5 * A @ np.asarray(self.a_r))

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

    # -- files -----------------------------------------------------------------------------
    def save(self, path: Path | str, db=None) -> None:
        """Write atomically as JSON; ``db`` (a FrameDatabase) records its checksum."""
        payload = {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_FORMAT_VERSION,
                   "database_checksum": db.checksum if db is not None else None, **asdict(self)}
        atomic_write_text(path, json.dumps(payload, indent=1, default=float) + "\n")

    @classmethod
    def load(cls, path: Path | str, db=None) -> "Calibration":
        """Read a calibration file; with ``db``, refuse it unless it was fitted for that database."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(path, "calibration file does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CalibrationError(path, f"not a readable calibration file ({e})") from None
        if not isinstance(payload, dict) or payload.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(path, f"not a {CALIBRATION_FORMAT} file")
        if payload.get("format_version") != CALIBRATION_FORMAT_VERSION:
            raise CalibrationError(path, f"format version {payload.get('format_version')} is not "
                                         f"{CALIBRATION_FORMAT_VERSION}; refit it (python -m reloc_train.calibrate)")
        if db is not None and payload.get("database_checksum") != db.checksum:
            raise CalibrationError(path, "was fitted for another database (checksum differs); refit it "
                                         "with python -m reloc_train.calibrate")
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
        if list(cal.signal_names) != list(SIGNALS):
            raise CalibrationError(path, f"signals {cal.signal_names} are not this version's {list(SIGNALS)}")
        return cal


def fit_calibration(X_NF: np.ndarray, E_N6: np.ndarray, R_N33: np.ndarray, ok_N: np.ndarray,
                    target_t_m: float = 0.25, target_r_deg: float = 10.0, precision: float = 0.95,
                    level: float = 0.95, info: dict | None = None) -> Calibration:
    """Fit a :class:`Calibration` on held-out frames.

    Args:
        X_NF: signals of N queries (rows of frames without a fused pose are ignored).
        E_N6: their 6-vector errors (:func:`reloc_ros.core.geometry.pose_error_vector`).
        R_N33: rotations of the fused poses (camera-to-map).
        ok_N: whether fusion gave a pose (frames without one count as not published).
        target_t_m, target_r_deg: a pose is good within these.
        precision: the threshold is the lowest confidence at which the good share of the
            published calibration poses reaches this.
        level: the χ² region the inflation is fitted to (0.95: 95 % of published poses inside).
        info: provenance to record.
    """
    ok = np.asarray(ok_N, dtype=bool)
    X, E, R = np.asarray(X_NF, np.float64)[ok], np.asarray(E_N6, np.float64)[ok], np.asarray(R_N33, np.float64)[ok]
    if len(X) < 20:
        raise ValueError(f"calibration needs at least 20 fused poses, got {len(X)}")
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    A = _design((X - mean) / std)
    good = (np.linalg.norm(E[:, :3], axis=1) <= target_t_m) & \
           (np.degrees(np.linalg.norm(E[:, 3:], axis=1)) <= target_r_deg)
    a_conf = _fit_logistic(A, good) if 0 < good.sum() < len(good) else np.r_[8.0 if good.all() else -8.0,
                                                                            np.zeros(A.shape[1] - 1)]
    p = 1 / (1 + np.exp(-(A @ a_conf)))
    # Threshold: the lowest one whose published calibration poses reach `precision`.
    conf_all = np.full(len(ok), -np.inf)
    conf_all[ok] = p
    good_all = np.zeros(len(ok), bool)
    good_all[ok] = good
    cand = np.unique(np.r_[0.0, p])
    pr = precision_recall(conf_all, good_all, cand)
    reach = np.flatnonzero(np.nan_to_num(pr["precision"], nan=0.0) >= precision)
    reached = len(reach) > 0
    threshold = float(cand[reach[0]] if reached else cand[int(np.nanargmax(pr["precision"]))])
    pub = p >= threshold
    if pub.sum() < 20:  # too few published poses to fit a covariance on: use all fused ones
        pub = np.ones(len(p), bool)
    # Variances and shape on the published poses, in the estimate's camera axes.
    Ap, Rp, Ep = A[pub], R[pub], E[pub]
    u_t = np.einsum("nji,nj->ni", Rp, Ep[:, :3])
    u_r = np.einsum("nji,nj->ni", Rp, Ep[:, 3:])
    a_t = _fit_logvar(Ap, np.sum(u_t ** 2, 1), 3)
    a_r = _fit_logvar(Ap, np.sum(u_r ** 2, 1), 3)
    w = np.concatenate([u_t / np.exp(0.5 * Ap @ a_t)[:, None], u_r / np.exp(0.5 * Ap @ a_r)[:, None]], axis=1)
    shape = _t_scatter(w) + 1e-6 * np.eye(6)
    cal = Calibration(signal_names=list(SIGNALS), mean=mean.tolist(), std=std.tolist(), a_t=a_t.tolist(),
                      a_r=a_r.tolist(), shape=shape.tolist(), inflation=1.0, a_conf=a_conf.tolist(),
                      threshold=threshold, target_t_m=target_t_m, target_r_deg=target_r_deg)
    d2 = mahalanobis2(Ep, cal.covariance(X[pub], Rp))
    cal.inflation = float(max(np.quantile(d2[:, 0], level) / chi2.ppf(level, 6), 1e-6))
    d2 = d2 / cal.inflation
    cal.info = {**(info or {}), "queries": int(len(ok)), "fused": int(ok.sum()), "good": int(good.sum()),
                "published": int((p >= threshold).sum()), "precision_target": precision,
                "precision_reached": bool(reached),
                "precision_at_threshold": float(good[p >= threshold].mean()) if (p >= threshold).any() else None,
                "recall_at_threshold": float((p >= threshold).sum() / len(ok)),
                "fit_chi2": chi2_shares(d2, level)}
    return cal
