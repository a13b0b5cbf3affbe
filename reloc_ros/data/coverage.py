"""Map coverage: how close the nearest map frame is to each query, for any set of camera poses.

The **oracle neighbour** of a query is the map frame that minimises ``d + r / 30°``: ``d``
the distance between the camera centres (m), ``r`` the angle between the two rotations
(degrees). One definition serves everywhere: this coverage, the oracle recall of retrieval
and the oracle-neighbour rows of Table 4. The figures of a set of queries against a map:

* ``median_d_m`` / ``median_r_deg``: the medians of d and r of the oracle neighbours;
* ``within_50cm_30deg``: the share of queries with a map frame within 0.5 m **and** 30°;
* ``within_25cm_15deg``: the same within 0.25 m and 15°.

A retrieval cannot find a frame that is not there: when a query has no map frame within
0.5 m and 30°, no relocalizer that starts from a retrieved frame has much to work with.
Real 7-Scenes (mean over its 7 scenes): 0.265 m, 9.9°, 95% and 46%.

Also reads the 7-Scenes pose lists of ``7scenes-poses`` (``<scene>_{train,test}.txt``, one
line per frame: ``name qw qx qy qz tx ty tz f`` with (q, t) world-to-camera).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from reloc_ros.core.geometry import invert, matrix_to_quat, quat_to_matrix

__all__ = ["DEG_PER_M", "Coverage", "rotation_angles_deg", "oracle_neighbours", "coverage",
           "read_pose_list", "REAL_7SCENES"]

#: The oracle neighbour minimises d + r / DEG_PER_M (1 m counts as much as 30°).
DEG_PER_M = 30.0


@dataclass(frozen=True)
class Coverage:
    """Coverage of ``queries`` query poses by ``frames`` map poses (see the module docstring)."""

    name: str
    frames: int
    queries: int
    median_d_m: float
    median_r_deg: float
    within_50cm_30deg: float
    within_25cm_15deg: float

    def as_dict(self) -> dict:
        return asdict(self)


#: Real 7-Scenes, the mean over its 7 scenes (the figures quoted in ``7scenes-poses/README.md``).
REAL_7SCENES = Coverage("real 7-Scenes (mean of 7 scenes)", 0, 0, 0.265, 9.93, 0.95, 0.46)


def _quats(T: np.ndarray) -> np.ndarray:
    return np.stack([matrix_to_quat(R) for R in np.asarray(T)[:, :3, :3]]) if len(T) else np.zeros((0, 4))


def rotation_angles_deg(q_a: np.ndarray, q_b: np.ndarray) -> np.ndarray:
    """(A, B) angles in degrees between the rotations of unit w-first quaternions (A, 4) and (B, 4)."""
    dot = np.clip(np.abs(q_a @ q_b.T), 0.0, 1.0)
    return np.degrees(2.0 * np.arccos(dot))


def oracle_neighbours(T_map_N44: np.ndarray, T_query_Q44: np.ndarray, chunk: int = 512,
                      thresholds: Sequence[tuple[float, float]] = ((0.5, 30.0), (0.25, 15.0))):
    """The oracle neighbour of every query, and whether any map frame is within each threshold.

    Args:
        T_map_N44: (N, 4, 4) camera-to-world poses of the map.
        T_query_Q44: (Q, 4, 4) camera-to-world poses of the queries.
        chunk: queries per block (memory ``chunk x N``).
        thresholds: (metres, degrees) pairs for the ``within`` flags.

    Returns:
        ``(index_Q, d_Q, r_Q, within_QK)``: the map row of each query's oracle neighbour, its
        centre distance (m) and rotation angle (°), and for each threshold k whether some map
        frame is within both of its limits.
    """
    T_map_N44, T_query_Q44 = np.asarray(T_map_N44, float), np.asarray(T_query_Q44, float)
    if len(T_map_N44) == 0:
        raise ValueError("the map holds no frame")
    c_map, q_map = T_map_N44[:, :3, 3], _quats(T_map_N44)
    c_q, q_q = T_query_Q44[:, :3, 3], _quats(T_query_Q44)
    idx, d_out, r_out = [], [], []
    within = np.zeros((len(T_query_Q44), len(thresholds)), dtype=bool)
    for s in range(0, len(T_query_Q44), chunk):
        d = np.linalg.norm(c_q[s:s + chunk, None] - c_map[None], axis=2)
        r = rotation_angles_deg(q_q[s:s + chunk], q_map)
        best = np.argmin(d + r / DEG_PER_M, axis=1)
        rows = np.arange(len(best))
        idx.append(best)
        d_out.append(d[rows, best])
        r_out.append(r[rows, best])
        for k, (tm, tr) in enumerate(thresholds):
            within[s:s + chunk, k] = np.any((d <= tm) & (r <= tr), axis=1)
    cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
    return cat(idx, np.int64), cat(d_out, float), cat(r_out, float), within


def coverage(T_map_N44: np.ndarray, T_query_Q44: np.ndarray, name: str = "", query_stride: int = 1) -> Coverage:
    """The four coverage figures of the queries (every ``query_stride``-th) against the map."""
    Tq = np.asarray(T_query_Q44)[::max(1, int(query_stride))]
    _, d, r, within = oracle_neighbours(T_map_N44, Tq)
    nan = math.nan
    return Coverage(name=name, frames=len(T_map_N44), queries=len(Tq),
                    median_d_m=float(np.median(d)) if len(d) else nan,
                    median_r_deg=float(np.median(r)) if len(r) else nan,
                    within_50cm_30deg=float(within[:, 0].mean()) if len(d) else nan,
                    within_25cm_15deg=float(within[:, 1].mean()) if len(d) else nan)


def read_pose_list(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Frame names and (N, 4, 4) camera-to-world poses of a ``7scenes-poses`` list file.

    Each line is ``seq-01/frame-000226.color.png qw qx qy qz tx ty tz f``, with (q, t) the
    world-to-camera transform (the COLMAP convention); the result is its inverse.

    Raises:
        ValueError: a malformed line (the message names the file and the line).
    """
    path = Path(path)
    names, poses = [], []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(v) for v in parts[1:8])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{k}: expected 'name qw qx qy qz tx ty tz f', got {line!r}") from None
        T_wc = np.eye(4)  # world to camera
        T_wc[:3, :3] = quat_to_matrix(np.array([qw, qx, qy, qz]))
        T_wc[:3, 3] = (tx, ty, tz)
        names.append(parts[0])
        poses.append(invert(T_wc))
    order = np.argsort(names)  # the files are not in frame order
    return [names[i] for i in order], np.stack(poses)[order] if poses else np.zeros((0, 4, 4))
