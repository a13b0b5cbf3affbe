"""The relocalizer: one RGB image in, one absolute pose with a covariance out (no ROS here).

    image ─> encoder (once) ─> top-k retrieval ─> heads on k (db feature, query feature) pairs
          ─> k hypotheses T_db,i @ T_rel,i ─> fusion ─> pose, 6x6 covariance, inliers, confidence
          ─> optional refinement against the top frames' depth (``refiner``: 'pnp' SIFT +
             PnP, 'lm' feature-metric Levenberg-Marquardt, 'dro' the learned recurrent optimizer)

Every stage is timed (``encode``, ``search``, ``heads``, ``fusion``, ``refine``, ``total``, in
ms; with CUDA synchronisation on a GPU so the numbers are real).

A multi-scene database is searched in two steps: the top-1 frame over all scenes picks the
scene, then the k neighbours come from that scene only (hypotheses from different scenes
live in unrelated world frames). ``LocalizerConfig.scene`` pins the scene instead.

The retrieval step can be bypassed: given database rows (``neighbours=``) are regressed
and fused instead of the retrieved ones. Training validation uses that for the
oracle-neighbour metric, through the same code as the node.
"""

from __future__ import annotations

import time
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.calibration import Calibration, CalibrationError, dro_signals, lm_signals, pnp_signals, signals
from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.featuremetric import FeatureMetricLM, LMConfig, normalize_channels
from reloc_ros.core.database import DatabaseError, FrameDatabase, load_pair
from reloc_ros.core.device import resolve_device
from reloc_ros.core.dro import DRO, load_dro
from reloc_ros.core.fusion import FusionConfig, FusionResult, fuse, hypotheses
from reloc_ros.core.model import RelPoseNet
from reloc_ros.core.pnp import PnPConfig, PnPRefiner
from reloc_ros.core.retrieval import build_index

__all__ = ["REFINERS", "LocalizerConfig", "Hypotheses", "LocalizationResult", "Localizer"]

#: Refinement after fusion: none, SIFT + PnP-RANSAC against the database depth, or
#: feature-metric Levenberg-Marquardt from the fused pose against the database depth, or
#: DRO (:mod:`reloc_ros.core.dro`), the learned recurrent optimizer, on the same cost.
REFINERS = ("none", "pnp", "lm", "dro")

log = logging.getLogger(__name__)


@dataclass
class LocalizerConfig:
    """Attributes:
        top_k: database frames retrieved per query (hypotheses to fuse).
        fusion: how hypotheses become one pose (:class:`reloc_ros.core.fusion.FusionConfig`).
        scene: restrict to this scene of the database (None: pick by the top-1 match).
        index: 'exact' (torch) or 'hnsw' (faiss).
        calibration: a fitted :class:`reloc_ros.core.calibration.Calibration`: the covariance
            and confidence of poses fused with its method come from it (None: the hypotheses'
            spread and the fusion's inlier score, which are *not* calibrated).
        min_confidence: a pose with a lower confidence is not used (``ok`` False, reason
            given, pose kept for analysis). None: the calibration's threshold, or 0.
        refiner: 'none'; 'pnp' (:mod:`reloc_ros.core.pnp`; needs a database built with
            keypoints, and the query's intrinsics); or 'lm' (feature-metric Levenberg-Marquardt
            from the fused pose, :mod:`reloc_ros.core.featuremetric`; needs a database built
            with dense points). A query the refiner cannot solve is not used: the fused pose
            is kept for analysis only. 'dro': the learned optimizer on the same cost
            (:mod:`reloc_ros.core.dro`; needs dense points and a DRO file).
        pnp: the PnP refiner's settings (None: those the database keypoints were made with).
        refine_iterations: iterations of 'lm' (per level) or 'dro' (per stage); None: the
            database's (lm) or the DRO file's (dro) default.
    """

    top_k: int = 5
    fusion: FusionConfig = field(default_factory=FusionConfig)
    scene: str | None = None
    index: str = "exact"
    calibration: Calibration | None = None
    min_confidence: float | None = None
    refiner: str = "none"
    pnp: PnPConfig | None = None
    refine_iterations: int | None = None

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.refiner not in REFINERS:
            raise ValueError(f"unknown refiner {self.refiner!r}: use one of {', '.join(REFINERS)}")
        if self.refine_iterations is not None and self.refine_iterations < 0:
            raise ValueError("refine_iterations must be >= 0")

    @property
    def threshold(self) -> float:
        """The confidence a pose needs to be used."""
        if self.min_confidence is not None:
            return float(self.min_confidence)
        return self.calibration.threshold if self.calibration is not None else 0.0


@dataclass
class Hypotheses:
    """What one query produced before fusion."""

    db_index: np.ndarray  # (k,) database rows, best first
    scores: np.ndarray  # (k,) descriptor similarities
    T_db: np.ndarray  # (k, 4, 4) database poses
    t: np.ndarray  # (k, 3) predicted relative translations
    q: np.ndarray  # (k, 4) predicted relative rotations (w-first)
    scene: str
    timings_ms: dict
    feature_dist: np.ndarray | None = None  # (k,) |f_query - f_db| of the heads' pose features
    levels: dict | None = None  # {stage: (C, h, w) numpy map} of the query, for the 'lm' refiner

    @property
    def poses(self) -> np.ndarray:
        """(k, 4, 4) absolute-pose hypotheses of the query."""
        return hypotheses(self.T_db, self.t, self.q)


@dataclass
class LocalizationResult:
    """The localizer's answer. ``ok`` False means: do not use (``reason`` says why).

    A pose whose confidence is below the threshold keeps ``pose``, ``covariance`` and
    ``confidence`` (for evaluation) with ``ok`` False. ``calibrated``: the covariance and
    confidence come from a fitted calibration; ``signals`` are its inputs (None without a
    fused pose).
    """

    ok: bool
    pose: np.ndarray | None
    covariance: np.ndarray | None
    confidence: float
    n_inliers: int
    inliers: np.ndarray
    reason: str
    scene: str
    hypotheses: Hypotheses
    timings_ms: dict
    calibrated: bool = False
    signals: np.ndarray | None = None
    refinement: dict | None = None  # the refiner's numbers (ok, inliers, matches, rms, ms), or None


def _dro_misfit(dro: DRO, dense) -> str:
    """Why a DRO cannot read a database's dense grids ('' when it can)."""
    chans = tuple(int(f.shape[-1]) for f in dense.feat)
    if tuple(dro.cfg.levels) == tuple(dense.config.levels) and tuple(dro.cfg.in_channels) == chans:
        return ""
    return (f"dense grids of levels {list(dense.config.levels)} with {list(chans)} channels do not fit a DRO "
            f"that reads levels {list(dro.cfg.levels)} with {list(dro.cfg.in_channels)} channels")


def _check_rgb(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")


class Localizer:
    """Model + database + retrieval index + fusion.

    Args:
        model: the relative-pose network (its config gives input size and normalisation).
        db: the frame database built with that model (checked by the caller, see from_files).
        cfg: retrieval and fusion settings.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.

    A ``top_k`` larger than the database is clamped to its size, with a warning.
    """

    def __init__(self, model: RelPoseNet, db: FrameDatabase, cfg: LocalizerConfig = LocalizerConfig(),
                 device: str | torch.device = "auto", dro: DRO | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.db = db
        if cfg.top_k > len(db):
            log.warning("top_k %d is larger than the database (%d frames): using %d", cfg.top_k, len(db), len(db))
            cfg = replace(cfg, top_k=max(1, len(db)))
        self.cfg = cfg
        self.features = db.features.to(self.device, torch.float32)
        self.poses = db.poses.numpy()
        self.index = build_index(cfg.index, db.descriptors, self.device)
        self.scene_rows = [torch.nonzero(db.scene_index == k).flatten() for k in range(len(db.scenes))]
        if cfg.scene is not None and cfg.scene not in db.scene_names:
            raise ValueError(f"scene {cfg.scene!r} is not in the database (has {db.scene_names})")
        self._sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.refiner = None
        if cfg.refiner == "pnp":
            if db.keypoints is None:
                raise ValueError("refiner 'pnp' needs a database with keypoints "
                                 "(python -m reloc_ros.mapping.database build --keypoints)")
            self.refiner = PnPRefiner(db.keypoints, self.poses, cfg.pnp)
        elif cfg.refiner == "lm":
            if db.dense is None:
                raise ValueError("refiner 'lm' needs a database with dense points "
                                 "(python -m reloc_ros.mapping.database build --dense)")
            d = db.dense.config
            it = d.iterations if cfg.refine_iterations is None else cfg.refine_iterations
            self.refiner = FeatureMetricLM(LMConfig(iterations=it, huber=d.huber))
        elif cfg.refiner == "dro":
            if db.dense is None or dro is None:
                raise ValueError("refiner 'dro' needs a database with dense grids (python -m "
                                 "reloc_ros.mapping.database build --dense) and a DRO (python -m reloc_train.dro)")
            if _dro_misfit(dro, db.dense):
                raise ValueError(_dro_misfit(dro, db.dense))
            self.refiner = dro.to(self.device).eval()
            self.gn = FeatureMetricLM(LMConfig(huber=db.dense.config.huber))  # its covariance at the solution

    @classmethod
    def from_files(cls, model_path: Path | str, db_path: Path | str, cfg: LocalizerConfig = LocalizerConfig(),
                   device: str | torch.device = "auto", calibration_path: Path | str | None = None,
                   dro_path: Path | str | None = None) -> "Localizer":
        """Load and cross-check a model file, a database, optionally a calibration file fitted
        for that database, and for refiner 'dro' the DRO file trained on that model's
        features (errors name the file)."""
        dev = resolve_device(device)
        model, info, db = load_pair(model_path, db_path, dev)
        if len(db) == 0:
            raise DatabaseError(db_path, "database holds no frame")
        if cfg.refiner == "pnp" and db.keypoints is None:
            raise DatabaseError(db_path, "has no keypoints, which refiner 'pnp' needs; rebuild it with "
                                         "python -m reloc_ros.mapping.database build --keypoints")
        if cfg.refiner in ("lm", "dro") and db.dense is None:
            raise DatabaseError(db_path, f"has no dense grids, which refiner {cfg.refiner!r} needs; rebuild it "
                                         "with python -m reloc_ros.mapping.database build --dense")
        dro = None
        if cfg.refiner == "dro":
            if not dro_path:
                raise ValueError("refiner 'dro' needs a DRO file (dro_path; python -m reloc_train.dro)")
            dro, _ = load_dro(dro_path, info, dev)
            if _dro_misfit(dro, db.dense):
                raise DatabaseError(db_path, f"{_dro_misfit(dro, db.dense)} (DRO file {dro_path})")
        if calibration_path:
            cal = Calibration.load(calibration_path, db)
            fitted = cal.info.get("fusion_method")
            if fitted is not None and fitted != cfg.fusion.method:
                raise CalibrationError(calibration_path, f"was fitted for fusion method {fitted!r}, but the "
                                                         f"localizer fuses with {cfg.fusion.method!r}; refit it "
                                                         "(python -m reloc_ros.eval.calibrate) or set that method")
            if cal.info.get("refiner", "none") != cfg.refiner:
                raise CalibrationError(calibration_path, f"was fitted for refiner {cal.info.get('refiner', 'none')!r}, "
                                                         f"but the localizer refines with {cfg.refiner!r}; refit "
                                                         "it (python -m reloc_ros.eval.calibrate --refiner)")
            cfg = replace(cfg, calibration=cal)
        loc = cls(model, db, cfg, dev, dro=dro)
        loc.model_info = info
        return loc

    def warmup(self, n: int = 3, image_size: tuple[int, int] | None = None) -> None:
        """Run a few dummy queries so that the first real one is not slow.

        Args:
            n: number of queries.
            image_size: (width, height) of the camera images to expect; by default the image
                size recorded for the database's first scene, so that the resize path the
                real frames take is warmed up too.
        """
        w, h = image_size or tuple(self.db.scenes[0].get("image_size") or (0, 0))
        if not (w and h):
            h, w = self.model.cfg.input_size
        img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        for _ in range(n):
            self.hypothesize(img)

    # -- the pipeline ----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images_BHW3: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features f_BC, descriptors desc_BC) of RGB uint8 images (B, H, W, 3), on the device."""
        x = torch.as_tensor(images_BHW3).to(self.device)
        f, d = self.model.encode(self.model.preprocess(x))
        return f.float(), d.float()

    @torch.no_grad()
    def hypothesize(self, image: np.ndarray, neighbours: np.ndarray | None = None) -> Hypotheses:
        """Encode, retrieve and regress: the k hypotheses of one RGB uint8 (H, W, 3) image.

        Args:
            image: the query.
            neighbours: database rows to regress from instead of the retrieved ones (best
                first), e.g. the oracle neighbour of a test frame; None: retrieve top-k.
        """
        f, d, encode_ms, maps = self.encode_image_levels(image)
        h = self.hypothesize_encoded(f, d, neighbours)
        h.timings_ms = {"encode": encode_ms, **h.timings_ms}
        h.levels = maps or None
        return h

    @torch.no_grad()
    def encode_image_levels(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
        """:meth:`encode_image`, plus the query's dense stage features that the 'lm' refiner
        reads, from the same single encoder pass (``{}`` for the other refiners)."""
        if self.cfg.refiner not in ("lm", "dro"):
            return (*self.encode_image(image), {})
        _check_rgb(image)
        t0 = time.perf_counter()
        x = self.model.preprocess(torch.as_tensor(np.array(image)[None]).to(self.device))
        f, d, maps = self.model.encode_levels(x, self.db.dense.config.levels)
        self._sync()
        ms = (time.perf_counter() - t0) * 1e3
        return f.float(), d.float(), ms, {k: v[0].float().cpu().numpy() for k, v in maps.items()}

    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(feature f_1C, descriptor desc_1C, milliseconds) of one RGB uint8 (H, W, 3) image."""
        _check_rgb(image)
        t0 = time.perf_counter()
        img = image if image.flags.writeable and image.flags.c_contiguous else np.array(image)
        f, d = self.encode(img[None])
        self._sync()
        return f, d, (time.perf_counter() - t0) * 1e3

    @torch.no_grad()
    def hypothesize_encoded(self, f_1C: torch.Tensor, desc_1C: torch.Tensor,
                            neighbours: np.ndarray | None = None) -> Hypotheses:
        """Retrieve and regress for an already encoded query (see :meth:`hypothesize`)."""
        t1 = time.perf_counter()
        if neighbours is not None:
            rows_t = torch.as_tensor(np.asarray(neighbours, dtype=np.int64).reshape(-1))
            if len(rows_t) == 0 or int(rows_t.min()) < 0 or int(rows_t.max()) >= len(self.db):
                raise ValueError(f"neighbours must be database rows in 0..{len(self.db) - 1}")
            k_scene = int(self.db.scene_index[int(rows_t[0])])
            scores = (desc_1C.to(self.index.device) @ self.index_descriptors(rows_t).T)[0]
            idx = rows_t
        else:
            k_scene, scores, idx = self.retrieve(desc_1C, self.cfg.top_k)
        self._sync()
        t2 = time.perf_counter()
        idx_dev = idx.to(self.device)
        k = len(idx_dev)
        pred = self.model.predict(self.features[idx_dev], f_1C.float().expand(k, -1))
        tt, qq = pred["t"].float().cpu().numpy(), pred["q"].float().cpu().numpy()
        fdist = torch.linalg.norm(self.features[idx_dev] - f_1C.float(), dim=1).cpu().numpy()
        t3 = time.perf_counter()
        rows = idx.cpu().numpy()
        return Hypotheses(db_index=rows, scores=scores.float().cpu().numpy(), T_db=self.poses[rows], t=tt, q=qq,
                          scene=self.db.scenes[k_scene]["name"], feature_dist=fdist,
                          timings_ms={"search": (t2 - t1) * 1e3, "heads": (t3 - t2) * 1e3})

    def retrieve(self, desc_1C: torch.Tensor, k: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """The scene (by the top-1 match, or ``cfg.scene``) and the k most similar database
        rows of that scene: ``(scene index, scores (k,), rows (k,))``, best first."""
        if self.cfg.scene is not None:
            k_scene = self.db.scene_names.index(self.cfg.scene)
        elif len(self.scene_rows) == 1:
            k_scene = 0
        else:
            _, top = self.index.search(desc_1C, 1)
            k_scene = int(self.db.scene_index[int(top[0, 0])])
        subset = None if len(self.scene_rows) == 1 else self.scene_rows[k_scene]
        scores, idx = self.index.search(desc_1C, k, subset)
        return k_scene, scores[0], idx[0]

    def index_descriptors(self, rows: torch.Tensor) -> torch.Tensor:
        """Database descriptors of ``rows`` (float32, on the index's device)."""
        return self.db.descriptors[rows.cpu()].to(self.index.device, torch.float32)

    def _decide(self, calibrated: bool, conf: float, cov: np.ndarray, reason: str) -> tuple[bool, str]:
        """Whether a pose with this confidence and covariance is used, and why not."""
        if calibrated and not (np.isfinite(conf) and np.all(np.isfinite(cov))):
            return False, "the calibration gave no finite confidence and covariance (a non-finite signal)"
        if (calibrated or self.cfg.min_confidence is not None) and not conf >= self.cfg.threshold:
            return False, f"confidence {conf:.2f} is below the threshold {self.cfg.threshold:.2f}"
        return True, reason

    def fuse(self, h: Hypotheses, fusion: FusionConfig | None = None) -> LocalizationResult:
        """Fuse hypotheses with the configured (or the given) fusion settings."""
        t0 = time.perf_counter()
        fc = fusion or self.cfg.fusion
        r: FusionResult = fuse(h.T_db, h.t, h.q, h.scores, fc)
        ok, cov, conf, reason, x = r.ok, r.covariance, r.confidence, r.reason, None
        cal = self.cfg.calibration
        calibrated = cal is not None and cal.info.get("fusion_method", fc.method) == fc.method \
            and cal.info.get("refiner", "none") == "none"
        if r.ok:
            x = signals(h.poses, h.scores, r.pose, len(r.inliers),
                        h.feature_dist if h.feature_dist is not None else np.full(len(h.t), np.nan), h.t)
            if calibrated:
                conf, cov = cal.confidence(x), cal.covariance(x, r.pose[:3, :3])
        if ok:
            ok, reason = self._decide(calibrated, conf, cov, reason)
        ms = (time.perf_counter() - t0) * 1e3
        timings = dict(h.timings_ms, fusion=ms)
        timings["total"] = sum(timings.values())
        return LocalizationResult(ok=ok, pose=r.pose, covariance=cov, confidence=conf,
                                  n_inliers=len(r.inliers), inliers=r.inliers, reason=reason,
                                  scene=h.scene, hypotheses=h, timings_ms=timings, calibrated=calibrated, signals=x)

    def refine(self, r: LocalizationResult, image: np.ndarray, K_33: np.ndarray | None) -> LocalizationResult:
        """Refine a fused result with the configured refiner (none: ``r`` as it is).

        Args:
            r: the fusion's result (its retrieved rows are matched; its pose is not needed).
            image: the query's RGB uint8 (H, W, 3) image.
            K_33: the query camera's intrinsics at the refiner's image size
                (:attr:`refine_image_size`), or None when unknown: then nothing is used.
        """
        if self.refiner is None:
            return r
        t0 = time.perf_counter()
        if K_33 is None:
            return replace(r, ok=False, reason="no camera intrinsics for the refiner (camera_info or the "
                                               "camera_intrinsics parameter)", refinement=None)
        run = {"lm": self._run_lm, "dro": self._run_dro, "pnp": self._run_pnp}[self.cfg.refiner]
        pose, cov_gn, x, info, conf_uncal, failure = run(r, image, K_33)
        timings = dict(r.timings_ms, refine=(time.perf_counter() - t0) * 1e3)
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        if failure:
            return replace(r, ok=False, reason=f"refinement failed: {failure}", refinement=info, timings_ms=timings)
        cal = self.cfg.calibration
        calibrated = cal is not None and cal.info.get("refiner", "none") == self.cfg.refiner
        # uncalibrated: the Gauss-Newton covariance, how well the data pin the pose (not whether it is right)
        conf, cov = (cal.confidence(x), cal.covariance(x, pose[:3, :3])) if calibrated else (conf_uncal, cov_gn)
        ok, reason = self._decide(calibrated, conf, cov, "")
        return replace(r, ok=ok, pose=pose, covariance=cov, confidence=float(conf), reason=reason,
                       calibrated=calibrated, signals=x, refinement=info, timings_ms=timings)

    def _run_pnp(self, r: LocalizationResult, image: np.ndarray, K_33: np.ndarray):
        """(pose, Gauss-Newton covariance, signals, info, uncalibrated confidence, failure reason)."""
        p = self.refiner.refine(image, K_33, r.hypotheses.db_index)
        info = {"ok": p.ok, "inliers": p.inliers, "matches": p.matches, "reproj_rms_px": p.reproj_rms_px,
                "ms": p.ms}
        if not p.ok:
            return None, None, None, info, 0.0, p.reason
        x = pnp_signals(p.inliers, p.matches, p.reproj_rms_px, p.covariance, float(r.hypotheses.scores[0]))
        return p.pose, p.covariance, x, info, p.inliers / max(1, p.matches), None

    @torch.no_grad()
    def _run_lm(self, r: LocalizationResult, image: np.ndarray, K_33: np.ndarray):
        """As :meth:`_run_pnp`, for feature-metric LM from the fused pose."""
        if r.pose is None:
            return None, None, None, {"ok": False}, 0.0, "no fused pose to start from"
        dense = self.db.dense
        cfg = dense.config
        maps = r.hypotheses.levels  # from the query's encoder pass (hypothesize)
        if maps is None:  # hypotheses made without them: one more encoder pass
            _, _, _, maps = self.encode_image_levels(image)
        w0, h0 = self.refine_image_size
        intr = Intrinsics(fx=K_33[0, 0], fy=K_33[1, 1], cx=K_33[0, 2], cy=K_33[1, 2], width=w0, height=h0)
        levels, Ks, refs = [], [], []
        rows = r.hypotheses.db_index[: cfg.top_m]
        for li, lvl in enumerate(cfg.levels):
            F = normalize_channels(maps[lvl])
            levels.append(F)
            Ks.append(intr.scaled(F.shape[2], F.shape[1]).K)
            refs.append([(self.poses[int(i)], *dense.frame(li, int(i))) for i in rows])
        T, out = self.refiner.refine(r.pose, levels, Ks, refs)
        cov_gn = out["covariance"]
        moved = float(np.linalg.norm(T[:3, 3] - r.pose[:3, 3]))
        info = {"ok": bool(np.all(np.isfinite(cov_gn)) and out["points"] >= self.refiner.cfg.min_points),
                "iterations": out["iterations"], "points": out["points"],
                "final_cost": out["cost"][-1] if out["cost"] else float("nan"), "moved_m": moved}
        if not info["ok"]:
            return None, None, None, info, 0.0, "too few visible points"
        x = lm_signals(out["cost"], out["points"], moved, cov_gn, float(r.hypotheses.scores[0]))
        return T, cov_gn, x, info, r.confidence, None

    @torch.no_grad()
    def _run_dro(self, r: LocalizationResult, image: np.ndarray, K_33: np.ndarray):
        """As :meth:`_run_lm`, for DRO from the fused pose (the Gauss-Newton covariance of its
        own adapted-feature cost at the solution)."""
        if r.pose is None:
            return None, None, None, {"ok": False}, 0.0, "no fused pose to start from"
        dro, dense = self.refiner, self.db.dense
        maps = r.hypotheses.levels
        if maps is None:
            _, _, _, maps = self.encode_image_levels(image)
        w0, h0 = self.refine_image_size
        intr = Intrinsics(fx=K_33[0, 0], fy=K_33[1, 1], cx=K_33[0, 2], cy=K_33[1, 2], width=w0, height=h0)
        rows = np.asarray(r.hypotheses.db_index[: dro.cfg.top_m], dtype=np.int64)
        q, Ks, xyz, feat = [], [], [], []
        for li, lvl in enumerate(dense.config.levels):
            Fq = torch.nn.functional.normalize(torch.as_tensor(maps[lvl], device=self.device).float()[None], dim=1)
            q.append(dro.adapt(Fq, li))
            Ks.append(torch.as_tensor(intr.scaled(Fq.shape[3], Fq.shape[2]).K, device=self.device).float()[None])
            x, f = dense.grid(li, rows)
            xyz.append(x.to(self.device)[None])
            feat.append(dro.adapt_grid(f.to(self.device)[None], li))
        T_db = torch.as_tensor(self.poses[rows], device=self.device).float()[None]
        T0 = torch.as_tensor(r.pose, device=self.device).float()[None]
        it = self.cfg.refine_iterations
        poses, out = dro(T0, q, Ks, xyz, feat, T_db, iterations=it)
        T = poses[-1][0].double().cpu().numpy()
        valid = int(out["valid"][0])
        # the Gauss-Newton covariance of the adapted-feature cost, at the finest stage's level
        li = dro.cfg.stages[-1]
        Fq = q[li][0].double().cpu().numpy()
        x_m = xyz[li][0].reshape(len(rows), -1, 3).double().cpu().numpy()
        f_m = feat[li][0].reshape(len(rows), dro.cfg.dim, -1).transpose(1, 2).double().cpu().numpy()
        ok_m = x_m[..., 2] > 0
        pts = np.concatenate([x_m[j][ok_m[j]] @ self.poses[i][:3, :3].T + self.poses[i][:3, 3]
                              for j, i in enumerate(rows)])
        ref = np.concatenate([f_m[j][ok_m[j]] for j in range(len(rows))])
        cov = self.gn.covariance(T, Fq, Ks[li][0].double().cpu().numpy(), pts, ref) if len(pts) else \
            np.full((6, 6), np.inf)
        moved = float(np.linalg.norm(T[:3, 3] - r.pose[:3, 3]))
        info = {"ok": bool(np.all(np.isfinite(T)) and np.all(np.isfinite(cov)) and valid >= self.gn.cfg.min_points),
                "iterations": len(poses) - 1, "points": valid, "final_cost": float(out["cost"][0]),
                "low_share": float(out["low_share"][0]), "moved_m": moved}
        if not info["ok"]:
            return None, None, None, info, 0.0, (f"too few points with valid depth in view ({valid})"
                                                 if valid < self.gn.cfg.min_points else "a non-finite solution")
        x = dro_signals(info["final_cost"], info["low_share"], valid, moved, cov, float(r.hypotheses.scores[0]))
        return T, cov, x, info, r.confidence, None

    @property
    def refine_image_size(self) -> tuple[int, int] | None:
        """(width, height) the refiner wants the query's intrinsics at (None: no refiner): the
        keypoints' size for 'pnp', the model's input size for 'lm' and 'dro'."""
        if self.refiner is None:
            return None
        if self.cfg.refiner in ("lm", "dro"):
            h, w = self.model.cfg.input_size
            return (int(w), int(h))
        return tuple(self.refiner.cfg.image_size)

    def localize(self, image: np.ndarray, K_33: np.ndarray | None = None) -> LocalizationResult:
        """The whole pipeline for one RGB uint8 image (``K_33``: its intrinsics at
        :attr:`refine_image_size`, used by the refiner only)."""
        return self.refine(self.fuse(self.hypothesize(image)), image, K_33)
