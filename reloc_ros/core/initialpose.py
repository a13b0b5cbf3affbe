"""When a relocalized pose may seed a localizer: the ``/initialpose`` gate (no ROS here).

One ``/initialpose`` teleports AMCL's particle cloud, or a SLAM back end's trajectory, to
the given pose. A single wrong pose does lasting damage, so the node sends one only when
``n_consecutive`` consecutive published poses agree with the odometry between them:

for every pair (i, j) in the window, the relocalized motion
:math:`T_{map,i}^{-1} T_{map,j}` and the odometry motion :math:`T_{odom,i}^{-1} T_{odom,j}`
(both of the camera, from TF ``odom -> camera`` at the image stamps) differ by at most
``max_t_m + drift_per_m * distance`` in translation and ``max_r_deg`` in rotation.

A wrong pose seldom agrees with the odometry about the motion from a right one, and two
wrong ones agree only if they are wrong by the same rigid transform. A pose that
disagrees restarts the window with itself (it may be the right one). Poses more than
``max_gap_s`` apart, or without odometry, also restart it. After a send the window is
emptied, and no pose is sent again for ``min_interval_s``.

Example::

    gate = InitialPoseGate(GateConfig(n_consecutive=3))
    d = gate.offer(stamp_s, T_map_cam, T_odom_cam)   # for every published pose
    if d.send: publish(T_map_cam)                    # else: d.reason says why not
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from reloc_ros.core.geometry import invert, rotation_error_deg

__all__ = ["GateConfig", "GateDecision", "InitialPoseGate"]


@dataclass
class GateConfig:
    """Attributes:
        n_consecutive: poses that must agree with the odometry before one is sent.
        max_t_m: allowed difference (m) between relocalized and odometry motion ...
        drift_per_m: ... plus this much per metre travelled (odometry drift).
        max_r_deg: allowed rotation difference (degrees).
        max_gap_s: poses further apart than this do not form a window.
        min_interval_s: no second send within this time of the previous one.
    """

    n_consecutive: int = 3
    max_t_m: float = 0.15
    drift_per_m: float = 0.05
    max_r_deg: float = 5.0
    max_gap_s: float = 5.0
    min_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if int(self.n_consecutive) != self.n_consecutive or self.n_consecutive < 1:
            raise ValueError(f"n_consecutive must be an integer >= 1 (got {self.n_consecutive})")
        for name in ("max_t_m", "drift_per_m", "max_r_deg", "max_gap_s", "min_interval_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {v})")
        self.n_consecutive = int(self.n_consecutive)


@dataclass(frozen=True)
class GateDecision:
    """``send``: publish this pose on /initialpose; ``reason``: why (not); ``agreeing``: the
    consecutive poses that agree with the odometry, this one included."""

    send: bool
    reason: str
    agreeing: int


class InitialPoseGate:
    """See the module docstring. Not thread-safe: one caller (the node's worker)."""

    def __init__(self, cfg: GateConfig | None = None):
        self.cfg = cfg or GateConfig()
        self.window: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.last_sent_s: float | None = None
        self.sent = 0
        #: decisions so far by kind: sent, no odometry, disagree with the odometry, waiting for
        #: agreement, within the min interval
        self.counts: Counter = Counter()

    def summary(self) -> str:
        """One line of the decisions so far, for logs and diagnostics."""
        n = sum(self.counts.values())
        return f"{n} poses offered, {self.sent} sent" + "".join(
            f", {v} {k}" for k, v in sorted(self.counts.items()) if k != "sent")

    def reset(self) -> None:
        self.window = []

    def disagreement(self, a: tuple, b: tuple) -> tuple[float, float, float]:
        """(translation difference m, rotation difference °, allowed translation m) of the
        motion from window entry ``a`` to ``b``, relocalized versus odometry."""
        M_rel = invert(a[1]) @ b[1]
        M_odo = invert(a[2]) @ b[2]
        dt = float(np.linalg.norm(M_rel[:3, 3] - M_odo[:3, 3]))
        dr = float(rotation_error_deg(M_rel, M_odo))
        allowed = self.cfg.max_t_m + self.cfg.drift_per_m * float(np.linalg.norm(M_odo[:3, 3]))
        return dt, dr, allowed

    def offer(self, stamp_s: float, T_map_cam: np.ndarray, T_odom_cam: np.ndarray | None) -> GateDecision:
        """Offer a published pose (camera-to-map) and the odometry pose at its stamp."""
        kind, d = self._offer(stamp_s, T_map_cam, T_odom_cam)
        self.counts[kind] += 1
        return d

    def _offer(self, stamp_s: float, T_map_cam: np.ndarray, T_odom_cam: np.ndarray | None
               ) -> tuple[str, GateDecision]:
        c = self.cfg
        if T_odom_cam is None:
            self.reset()
            return "no odometry", GateDecision(False, "no odometry (TF odom -> camera) at the image stamp", 0)
        entry = (float(stamp_s), np.asarray(T_map_cam, np.float64), np.asarray(T_odom_cam, np.float64))
        if self.window and entry[0] - self.window[-1][0] > c.max_gap_s:
            self.window = []
        if self.window and entry[0] <= self.window[-1][0]:
            self.window = []  # time went backwards (a replay restarted): start again
        for old in self.window:
            dt, dr, allowed = self.disagreement(old, entry)
            if dt > allowed or dr > c.max_r_deg:
                self.window = [entry]
                return "disagree with the odometry", GateDecision(
                    False, f"disagrees with the odometry since {entry[0] - old[0]:.2f} s ago by {dt:.2f} m / "
                           f"{dr:.1f}° (allowed {allowed:.2f} m / {c.max_r_deg:.1f}°)", 1)
        self.window = (self.window + [entry])[-c.n_consecutive:]
        n = len(self.window)
        if n < c.n_consecutive:
            return "waiting for agreement", GateDecision(
                False, f"{n} of {c.n_consecutive} consecutive poses agree with the odometry", n)
        if self.last_sent_s is not None and 0 <= entry[0] - self.last_sent_s < c.min_interval_s:
            return "within the min interval", GateDecision(
                False, f"sent {entry[0] - self.last_sent_s:.1f} s ago (min interval {c.min_interval_s:.1f} s)", n)
        self.last_sent_s = entry[0]
        self.sent += 1
        self.window = []
        return "sent", GateDecision(True, f"{n} consecutive poses agree with the odometry", n)
