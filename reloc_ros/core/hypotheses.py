"""The k pose hypotheses of one query: what retrieval and the heads produce, what fusion reads.

Hypothesis i is the query's absolute pose seen from retrieved database frame i,

.. math::  H_i = T_i \\, \\mathrm{make\\_pose}(t_i, q_i),

with :math:`T_i` the frame's camera-to-world pose and :math:`(t_i, q_i)` the regressed pose of
the query in that frame's camera. One type carries them through the pipeline: the localizer
fills every field; :func:`reloc_ros.core.fusion.fuse` builds one from arrays; the fusion
methods read the finite subset (:meth:`Hypotheses.finite`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["Hypotheses", "compose"]


def compose(T_db_k44: np.ndarray, t_k3: np.ndarray, q_k4: np.ndarray) -> np.ndarray:
    """Absolute pose hypotheses :math:`H_i = T_i \\, \\mathrm{make\\_pose}(t_i, q_i)`.

    Args:
        T_db_k44: camera-to-world poses of the retrieved database frames.
        t_k3: predicted translation of the query in each database camera frame.
        q_k4: predicted w-first rotation of the query in each database camera frame
            (normalised here, so either sign and any positive norm).

    Returns:
        (k, 4, 4) camera-to-world hypotheses of the query pose. A row whose input is not
        finite or whose quaternion is zero is all NaN (it does not raise).
    """
    T_db, t, q = _check_inputs(T_db_k44, t_k3, q_k4)
    k = T_db.shape[0]
    out = np.full((k, 4, 4), np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        qn = np.linalg.norm(q, axis=1)
    ok = (np.all(np.isfinite(T_db), axis=(1, 2)) & np.all(np.isfinite(t), axis=1)
          & np.all(np.isfinite(q), axis=1) & np.isfinite(qn) & (qn > 1e-12))
    rows = np.flatnonzero(ok)
    if len(rows):
        rel = np.tile(np.eye(4), (len(rows), 1, 1))
        rel[:, :3, :3] = Rotation.from_quat(q[rows][:, [1, 2, 3, 0]]).as_matrix()  # scipy: x, y, z, w
        rel[:, :3, 3] = t[rows]
        out[rows] = T_db[rows] @ rel
    return out


@dataclass
class Hypotheses:
    """The hypotheses of one query, best retrieved first.

    Attributes:
        T_db: (k, 4, 4) poses of the database frames.
        t: (k, 3) regressed translations of the query in the database camera frames (m).
        q: (k, 4) regressed rotations (w-first).
        scores: (k,) retrieval similarities (higher is better).
        db_index: (k,) database rows (-1: not from a database).
        scene: the database scene they come from.
        timings_ms: the stages that made them (encode, search, heads).
        feature_dist: (k,) |f_query - f_db| of the heads' pose features, or None.
        levels: {stage: (C, h, w)} dense features of the query, for refiners that read them.
        descriptor: (1, D) the query's global descriptor (a tensor), for further retrieval.
        weights: (k,) non-negative fusion weights (set by :func:`reloc_ros.core.fusion.fuse`).
        rank: (k,) positions of these hypotheses among the k retrieved (a finite subset
            keeps the original positions).
        k: how many hypotheses were retrieved, finite or not.
    """

    T_db: np.ndarray
    t: np.ndarray
    q: np.ndarray
    scores: np.ndarray | None = None
    db_index: np.ndarray | None = None
    scene: str = ""
    timings_ms: dict = field(default_factory=dict)
    feature_dist: np.ndarray | None = None
    levels: dict | None = None
    descriptor: object | None = None
    weights: np.ndarray | None = None
    rank: np.ndarray | None = None
    k: int | None = None

    def __post_init__(self):
        n = len(self.T_db)
        if self.scores is None:
            self.scores = np.full(n, np.nan)
        if self.db_index is None:
            self.db_index = np.full(n, -1, dtype=np.int64)
        if self.weights is None:
            self.weights = np.ones(n)
        if self.rank is None:
            self.rank = np.arange(n)
        if self.k is None:
            self.k = n

    @cached_property
    def poses(self) -> np.ndarray:
        """(k, 4, 4) absolute-pose hypotheses of the query (NaN rows where not finite)."""
        return compose(self.T_db, self.t, self.q)

    def finite(self) -> "Hypotheses":
        """The hypotheses whose pose is finite (possibly none), ranks and ``k`` kept."""
        keep = np.flatnonzero(np.all(np.isfinite(self.poses), axis=(1, 2)))
        sub = replace(self, T_db=np.asarray(self.T_db, np.float64)[keep], t=np.asarray(self.t, np.float64)[keep],
                      q=np.asarray(self.q, np.float64)[keep], scores=np.asarray(self.scores)[keep],
                      db_index=np.asarray(self.db_index)[keep], weights=np.asarray(self.weights)[keep],
                      rank=np.asarray(self.rank)[keep],
                      feature_dist=None if self.feature_dist is None else self.feature_dist[keep])
        sub.__dict__["poses"] = self.poses[keep]
        return sub


def _check_inputs(T_db, t, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T_db = np.asarray(T_db, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if T_db.ndim != 3 or T_db.shape[1:] != (4, 4):
        raise ValueError(f"T_db must have shape (k, 4, 4), got {T_db.shape}")
    k = T_db.shape[0]
    if t.shape != (k, 3):
        raise ValueError(f"t must have shape ({k}, 3), got {t.shape}")
    if q.shape != (k, 4):
        raise ValueError(f"q must have shape ({k}, 4), got {q.shape}")
    return T_db, t, q
