"""Publish checks: independent evidence a refined pose must agree with before it is used.

A refiner that matches a repeated texture (the same poster on two walls, identical chairs)
finds many consistent inliers at the wrong place, and its own signals say it is sure. A
publish check compares the refined pose with evidence the refiner did not use, and stops a
pose that disagrees (``ok`` False, the reason names the check). Each check is a registered
unit, chosen by name (``LocalizerConfig.checks``, the node's ``publish_checks``)::

    @CHECKS.register("my_check")
    class MyCheck(PublishCheck):
        def __call__(self, fused, refined) -> tuple[bool, str, float]: ...

Built-in:

``regression``
    the fused regression (the k relative poses regressed from the retrieved frames, fused)
    must lie within ``max_t_m`` and ``max_r_deg`` of the refined pose. The regression reads
    whole images through the network, not local features, so a repeated patch does not pull
    it; its error in unseen rooms is about 0.5 m / 12° at the median, so the gate is wide and
    catches jumps of a metre and more. A query without a fused pose fails it.
``retrieved``
    the refined pose must lie within ``max_t_m`` and ``max_r_deg`` of one of the retrieved
    frames (the place retrieval says the query is).
``verify``
    the map frames nearest to the refined pose, their keypoints projected with their depth,
    must land on matching query keypoints (:class:`ProjectionVerification`).

Their gates are chosen on two scenes of the repeated-structure family
(``python -m reloc_train.experiments.trust repeated --check NAME``, ``docs/trust.md``). None
is on by default: on that family the wrong PnP poses are weak solutions a few decimetres off,
not jumps to a far repeated patch, and no check separates them well (the numbers are in
``docs/trust.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from reloc_ros.core.geometry import pose_errors
from reloc_ros.core.registry import Registry

if TYPE_CHECKING:  # type names only
    from reloc_ros.core.localizer import LocalizationResult
    from reloc_ros.core.refiners import Refinement

__all__ = ["CHECKS", "PublishCheck", "RegressionAgreement", "RetrievedAgreement", "ProjectionVerification"]

#: The publish checks by name.
CHECKS = Registry("publish check")


class PublishCheck:
    """Base class of a publish check, built with the localizer (``loc``: its database, poses):
    ``check(fused, refined, image, K_33) -> (passed, why, value)``, ``value`` a number for
    reports (NaN when it does not apply)."""

    max_t_m: ClassVar[float] = 1.0
    max_r_deg: ClassVar[float] = 30.0

    def __init__(self, loc=None):
        self.loc = loc

    def __call__(self, fused: "LocalizationResult", refined: "Refinement", image: np.ndarray | None = None,
                 K_33: np.ndarray | None = None) -> tuple[bool, str, float]:
        raise NotImplementedError


@CHECKS.register("regression")
class RegressionAgreement(PublishCheck):
    """The refined pose agrees with the fused regression (see the module docstring)."""

    max_t_m = 0.75
    max_r_deg = 30.0

    def __call__(self, fused, refined, image=None, K_33=None):
        if fused.pose is None or not np.all(np.isfinite(fused.pose)):
            return False, "no fused regression to compare with", float("nan")
        t, r = (float(v) for v in pose_errors(refined.pose, fused.pose))
        if t > self.max_t_m or r > self.max_r_deg:
            return False, (f"the refined pose is {t:.2f} m / {r:.0f}° from the fused regression (gate "
                           f"{self.max_t_m:.2f} m / {self.max_r_deg:.0f}°)"), t
        return True, "", t


@CHECKS.register("retrieved")
class RetrievedAgreement(PublishCheck):
    """The refined pose lies near one of the retrieved frames (see the module docstring)."""

    max_t_m = 1.0
    max_r_deg = 45.0

    def __call__(self, fused, refined, image=None, K_33=None):
        T = np.asarray(fused.hypotheses.T_db)
        te, re = pose_errors(T, np.broadcast_to(refined.pose, T.shape))
        ok = (te <= self.max_t_m) & (re <= self.max_r_deg)
        d = float(np.min(te))
        if not ok.any():
            return False, (f"the refined pose is {d:.2f} m from the nearest retrieved frame (gate "
                           f"{self.max_t_m:.2f} m / {self.max_r_deg:.0f}°)"), d
        return True, "", d


@CHECKS.register("verify")
class ProjectionVerification(PublishCheck):
    """The map, rendered at the refined pose, must look like the query: the keypoints (with
    their depth) of the ``frames`` map frames nearest to the refined pose, chosen by pose and
    not by retrieval, are projected into the query, and at least ``min_share`` of those in
    view must land within ``radius_px`` of a query keypoint they match (the matcher's own
    test). A pose pulled to a repeated patch, or a weak solution half a metre off, projects
    the rest of the map beside the query's features. Needs the database's keypoints."""

    frames = 3
    radius_px = 4.0
    min_share = 0.05  # chosen on repeated_a and repeated_b (docs/trust.md)

    def __init__(self, loc=None):
        super().__init__(loc)
        if loc is None or loc.db.keypoints is None:
            raise ValueError("publish check 'verify' needs a database with keypoints (--keypoints)")
        self.kp, self.poses = loc.db.keypoints, loc.poses
        self.cfg = self.kp.config
        self.unit = self.cfg.unit()

    def _query_features(self, image):
        """The query's keypoints: those the PnP refiner just extracted from this image, else new."""
        unit = getattr(self.loc, "refiner", None)
        while unit is not None and not hasattr(unit, "last_query"):
            unit = getattr(unit, "pnp", None)  # SiftPnP.pnp is the PnPRefiner; a chain's .pnp is SiftPnP
        last = getattr(unit, "last_query", None)
        if last is not None and last[0] == id(image):
            return last[1]
        return self.unit.extract(image, self.cfg.image_size, self.cfg.n_query)

    def __call__(self, fused, refined, image=None, K_33=None):
        from reloc_ros.core.pnp import nearest_frames  # lazy: pnp imports the matchers

        if image is None or K_33 is None:
            return False, "no image or intrinsics to verify with", float("nan")
        rows = nearest_frames(self.poses, refined.pose, self.frames)
        if not rows:
            return False, "no map frame near the refined pose", float("nan")
        fq = self._query_features(image)
        w, h = self.cfg.image_size
        T_cw = np.linalg.inv(refined.pose)
        K = np.asarray(K_33, dtype=np.float64)
        seen = hit = 0
        for i in rows:
            xyz, f = self.kp.features(i)
            Xc = (T_cw @ self.poses[i])[:3, :3] @ xyz.T.astype(np.float64) + (T_cw @ self.poses[i])[:3, 3:4]
            z = Xc[2]
            uv = (K @ Xc)[:2] / np.where(z > 1e-3, z, np.nan)
            vis = (z > 0.1) & (uv[0] >= 0) & (uv[0] < w) & (uv[1] >= 0) & (uv[1] < h)
            if not vis.any() or len(fq) == 0:
                continue
            idx = np.flatnonzero(vis)
            seen += len(idx)
            sub = type(f)(f.uv[idx], f.desc[idx], f.scores[idx] if len(f.scores) else f.scores)
            pairs = self.unit.match(sub, fq, self.cfg.image_size)
            if len(pairs):
                d = np.linalg.norm(uv[:, idx[pairs[:, 0]]].T - fq.uv[pairs[:, 1]], axis=1)
                hit += int(np.sum(d <= self.radius_px))
        share = hit / seen if seen else 0.0
        if share < self.min_share:
            return False, (f"{share:.0%} of the nearest map frames' {seen} points in view land on matching query "
                           f"features (at least {self.min_share:.0%} needed)"), share
        return True, "", share
