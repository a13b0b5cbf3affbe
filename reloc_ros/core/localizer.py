"""The relocalizer: one RGB image in, one absolute pose with a covariance out (no ROS here).

    image ─> encoder (once) ─> top-k retrieval ─> heads on k (db feature, query feature) pairs
          ─> k hypotheses T_db,i @ T_rel,i ─> fusion ─> pose, 6x6 covariance, inliers, confidence
          ─> optional refinement against the top frames' depth (``refiner``: a registered
             unit of :mod:`reloc_ros.core.refiners`: pnp, lm, dro, or a plugin's)

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from reloc_ros.core.calibration import Calibration, CalibrationError, signals
from reloc_ros.core.checks import CHECKS
from reloc_ros.core.database import PARTS, DatabaseError, FrameDatabase, load_pair
from reloc_ros.core.device import resolve_device
from reloc_ros.core.fusion import FusionConfig, FusionResult, fuse_hypotheses
from reloc_ros.core.hypotheses import Hypotheses
from reloc_ros.core.model import RelPoseNet
from reloc_ros.core.pnp import PnPConfig
from reloc_ros.core.refiners import NO_REFINER, REFINERS, Refiner, RefinerSetup, refiner_names
from reloc_ros.core.retrieval import build_index
from reloc_ros.core.uncalibrated import DefaultCovariance

__all__ = ["LocalizerConfig", "Hypotheses", "LocalizationResult", "Localizer"]

log = logging.getLogger(__name__)


@dataclass
class LocalizerConfig:
    """Attributes:
        top_k: database frames retrieved per query (hypotheses to fuse).
        fusion: how hypotheses become one pose (:class:`reloc_ros.core.fusion.FusionConfig`).
        scene: restrict to this scene of the database (None: pick by the top-1 match).
        index: 'exact' (torch) or 'hnsw' (faiss).
        calibration: a fitted :class:`reloc_ros.core.calibration.Calibration`: the covariance
            and confidence of poses fused with its method come from it (None: the estimator's
            own covariance inflated by the conservative default of
            :mod:`reloc_ros.core.uncalibrated`, and the fusion's inlier score).
        default_covariance: without a calibration, inflate the raw covariance by the shipped
            default (False: publish the raw one, for analysis only).
        min_confidence: a pose with a lower confidence is not used (``ok`` False, reason
            given, pose kept for analysis). None: the calibration's threshold, or 0.
        refiner: 'none', or the name of a registered refiner (:mod:`reloc_ros.core.refiners`:
            'pnp' SIFT + PnP, 'lm' feature-metric LM, 'dro' the learned optimizer, or one a
            plugin adds); each says what the database must hold. A query the refiner cannot
            solve is not used: the fused pose is kept for analysis only.
        pnp: the PnP refiner's settings (None: those the database keypoints were made with).
        refine_iterations: the refiner's iterations (None: its default).
        checks: publish checks (:data:`reloc_ros.core.checks.CHECKS`) a refined pose must
            pass, by name, in order.
    """

    top_k: int = 5
    fusion: FusionConfig = field(default_factory=FusionConfig)
    scene: str | None = None
    index: str = "exact"
    calibration: Calibration | None = None
    default_covariance: bool = True
    min_confidence: float | None = None
    refiner: str = "none"
    pnp: PnPConfig | None = None
    refine_iterations: int | None = None
    checks: tuple[str, ...] = ()

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.refiner != NO_REFINER and self.refiner not in REFINERS:
            raise ValueError(f"unknown refiner {self.refiner!r}: use one of {', '.join(refiner_names())} "
                             "(a plugin adds more: docs/extending.md)")
        if self.refine_iterations is not None and self.refine_iterations < 0:
            raise ValueError("refine_iterations must be >= 0")

    @property
    def threshold(self) -> float:
        """The confidence a pose needs to be used."""
        if self.min_confidence is not None:
            return float(self.min_confidence)
        return self.calibration.threshold if self.calibration is not None else 0.0


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
    raw_covariance: np.ndarray | None = None  # the estimator's own, before a calibration or the default inflation
    covariance_source: str = "calibrated"  # or "default" (reloc_ros.core.uncalibrated), or "raw"


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
                 device: str | torch.device = "auto", refiner_files: dict | None = None,
                 model_info=None, db_path: Path | str | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.db = db
        if cfg.top_k > len(db):
            log.warning("top_k %d is larger than the database (%d frames): using %d", cfg.top_k, len(db), len(db))
            cfg = replace(cfg, top_k=max(1, len(db)))
        self.cfg = cfg
        self.model_info = model_info
        self.refiner_files = dict(refiner_files or {})
        self.features = db.features.to(self.device, torch.float32)
        self.poses = db.poses.numpy()
        self.index = build_index(cfg.index, db.descriptors, self.device)
        self.scene_rows = [torch.nonzero(db.scene_index == k).flatten() for k in range(len(db.scenes))]
        if cfg.scene is not None and cfg.scene not in db.scene_names:
            raise ValueError(f"scene {cfg.scene!r} is not in the database (has {db.scene_names})")
        self._sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.refiner: Refiner | None = None
        if cfg.refiner != NO_REFINER:
            unit = REFINERS.get(cfg.refiner)
            missing = db.missing(unit.needs)
            if missing:
                problem = (f"has no {' or '.join(PARTS[m][0] for m in missing)}, which refiner {cfg.refiner!r} needs; "
                           "rebuild it with python -m reloc_ros.mapping.database build "
                           + " ".join(PARTS[m][1] for m in missing))
                raise DatabaseError(db_path, problem) if db_path else ValueError(f"the database {problem}")
            self.refiner = unit.build(RefinerSetup(
                model=self.model, db=db, poses_N44=self.poses, device=self.device, model_info=model_info,
                iterations=cfg.refine_iterations, pnp=cfg.pnp, db_path=Path(db_path) if db_path else None,
                files=dict(refiner_files or {})))
        self.checks = [(name, CHECKS.get(name)(self)) for name in cfg.checks]

    @classmethod
    def from_files(cls, model_path: Path | str, db_path: Path | str, cfg: LocalizerConfig = LocalizerConfig(),
                   device: str | torch.device = "auto", calibration_path: Path | str | None = None,
                   dro_path: Path | str | None = None, refiner_files: dict | None = None) -> "Localizer":
        """Load and cross-check a model file, a database, optionally a calibration file fitted
        for that database, and the refiner's own files (errors name the file).

        Args:
            model_path, db_path: the model and the database built with it.
            cfg: the localizer's settings.
            device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
            calibration_path: a calibration fitted for this database, model and refiner.
            dro_path: the DRO file (read by refiner 'dro' only; same as
                ``refiner_files={"dro_path": ...}``).
            refiner_files: more files for the refiner, by parameter name.
        """
        dev = resolve_device(device)
        model, info, db = load_pair(model_path, db_path, dev)
        if len(db) == 0:
            raise DatabaseError(db_path, "database holds no frame")
        files = {**({"dro_path": dro_path} if dro_path else {}), **(refiner_files or {})}
        loc = cls(model, db, replace(cfg, calibration=None), dev, refiner_files=files, model_info=info,
                  db_path=db_path)
        if calibration_path:
            cal = Calibration.load(calibration_path, db)
            fitted = cal.info.get("fusion_method")
            if fitted is not None and fitted != cfg.fusion.method:
                raise CalibrationError(calibration_path, f"was fitted for fusion method {fitted!r}, but the "
                                                         f"localizer fuses with {cfg.fusion.method!r}; refit it "
                                                         "(python -m reloc_ros.eval.calibrate) or set that method")
            if cal.refiner != cfg.refiner:
                raise CalibrationError(calibration_path, f"was fitted for refiner {cal.refiner!r}, but the localizer "
                                                         f"refines with {cfg.refiner!r}; refit it (python -m "
                                                         "reloc_ros.eval.calibrate --refiner)")
            cal.check_binding(loc.calibration_binding(), calibration_path)
            loc.cfg = replace(loc.cfg, calibration=cal)
        return loc

    def calibration_binding(self) -> dict:
        """Every setting the calibration signals depend on: the model and database, the
        fusion, ``top_k``, the model's input size, the refiner and the settings its unit
        declares (:meth:`reloc_ros.core.refiners.Refiner.signal_settings`: its image size,
        iterations, matcher, weights) and the publish checks. A calibration records it when
        fitted and is refused when it differs (:meth:`Calibration.load`)."""
        info = self.model_info
        return {"model": info.fingerprint if info is not None else self.db.model.get("fingerprint"),
                "database": self.db.checksum, "fusion": asdict(self.cfg.fusion), "top_k": int(self.cfg.top_k),
                "input_size": list(self.model.cfg.input_size), "refiner": self.cfg.refiner,
                "refiner_settings": self.refiner.signal_settings() if self.refiner is not None else {},
                "checks": list(self.cfg.checks)}

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
        h.descriptor = d
        return h

    @torch.no_grad()
    def encode_image_levels(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
        """:meth:`encode_image`, plus the dense stage features of the query that the refiner
        reads (:meth:`Refiner.query_levels`), from the same single encoder pass (``{}`` when
        it reads none)."""
        levels = self.refiner.query_levels() if self.refiner is not None else ()
        if not levels:
            return (*self.encode_image(image), {})
        _check_rgb(image)
        t0 = time.perf_counter()
        x = self.model.preprocess(torch.as_tensor(np.array(image)[None]).to(self.device))
        f, d, maps = self.model.encode_levels(x, levels)
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
        r: FusionResult = fuse_hypotheses(h, fc)
        ok, cov, conf, reason, x = r.ok, r.covariance, r.confidence, r.reason, None
        cal = self.cfg.calibration
        calibrated = cal is not None and cal.info.get("fusion_method", fc.method) == fc.method \
            and cal.refiner == NO_REFINER
        raw, source = cov, "raw"
        if r.ok:
            x = signals(h.poses, h.scores, r.pose, len(r.inliers),
                        h.feature_dist if h.feature_dist is not None else np.full(len(h.t), np.nan), h.t)
            if calibrated:
                conf, cov, source = cal.confidence(x), cal.covariance(x, r.pose[:3, :3]), "calibrated"
            elif self.cfg.default_covariance:
                cov, source = DefaultCovariance.for_refiner(NO_REFINER).apply(cov), "default"
        if ok:
            ok, reason = self._decide(calibrated, conf, cov, reason)
        ms = (time.perf_counter() - t0) * 1e3
        timings = dict(h.timings_ms, fusion=ms)
        timings["total"] = sum(timings.values())
        return LocalizationResult(ok=ok, pose=r.pose, covariance=cov, confidence=conf,
                                  n_inliers=len(r.inliers), inliers=r.inliers, reason=reason,
                                  scene=h.scene, hypotheses=h, timings_ms=timings, calibrated=calibrated, signals=x,
                                  raw_covariance=raw, covariance_source=source)

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
        if self.refiner.query_levels() and r.hypotheses.levels is None:  # made without them: one more pass
            r.hypotheses.levels = self.encode_image_levels(image)[3]
        out = self.refiner.run(r, image, K_33)
        timings = dict(r.timings_ms, refine=(time.perf_counter() - t0) * 1e3)
        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        if not out.ok:
            return replace(r, ok=False, reason=f"refinement failed: {out.reason}", refinement=out.info,
                           timings_ms=timings)
        cal = self.cfg.calibration
        calibrated = cal is not None and cal.refiner == self.cfg.refiner
        # uncalibrated: the unit's own covariance (how well the data pin the pose, not whether
        # it is right), inflated by the conservative default measured for the unit
        if calibrated:
            conf, cov, source = cal.confidence(out.signals), cal.covariance(out.signals, out.pose[:3, :3]), "calibrated"
        elif self.cfg.default_covariance:
            conf, cov, source = out.confidence, DefaultCovariance.for_refiner(self.cfg.refiner).apply(out.covariance), \
                "default"
        else:
            conf, cov, source = out.confidence, out.covariance, "raw"
        ok, reason = self._decide(calibrated, conf, cov, "")
        checks = {}
        for name, check in self.checks:
            passed, why, value = check(r, out, image, K_33)
            checks[name] = {"passed": passed, "value": value}
            if ok and not passed:
                ok, reason = False, f"publish check {name}: {why}"
        info = {**out.info, "checks": checks} if checks else out.info
        return replace(r, ok=ok, pose=out.pose, covariance=cov, confidence=float(conf), reason=reason,
                       calibrated=calibrated, signals=out.signals, refinement=info, timings_ms=timings,
                       raw_covariance=out.covariance, covariance_source=source)

    @property
    def refine_image_size(self) -> tuple[int, int] | None:
        """(width, height) the refiner wants the query's intrinsics at (None: no refiner)."""
        return None if self.refiner is None else tuple(self.refiner.image_size())

    def localize(self, image: np.ndarray, K_33: np.ndarray | None = None) -> LocalizationResult:
        """The whole pipeline for one RGB uint8 image (``K_33``: its intrinsics at
        :attr:`refine_image_size`, used by the refiner only)."""
        return self.refine(self.fuse(self.hypothesize(image)), image, K_33)
