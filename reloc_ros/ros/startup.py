"""What configuring the relocalization node takes, and what cleaning it up gives back.

:func:`checked_parameters` reads the node's parameters, imports the ``plugins`` modules and
validates everything (:mod:`reloc_ros.ros.parameters`); :func:`load_localizer` loads and
cross-checks the model, database, calibration and refiner files and warms up;
:func:`release_memory` returns the memory to the OS after cleanup. Every failure is a
:class:`StartupError` with one line that names the parameter or the file.
"""

from __future__ import annotations

import ctypes
import gc
import time
from typing import Any, Mapping

import torch

from reloc_ros.core.calibration import CalibrationError
from reloc_ros.core.database import DatabaseError
from reloc_ros.core.localizer import Localizer
from reloc_ros.core.model import ModelFileError
from reloc_ros.core.registry import PluginError, load_plugins
from reloc_ros.core.uncalibrated import DefaultCovariance
from reloc_ros.ros import parameters
from reloc_ros.ros.parameters import ParameterError

__all__ = ["StartupError", "checked_parameters", "load_localizer", "release_memory", "covariance_source",
           "initialpose_withheld"]


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, plugin, model or database). The message, one
    line, says why."""


def checked_parameters(node) -> dict[str, Any]:
    """The node's parameters, validated, after importing the modules of its ``plugins``
    parameter (so that the units they register count as known names).

    Args:
        node: a node on which :func:`reloc_ros.ros.parameters.declare` ran.

    Raises:
        StartupError: a plugin that cannot be imported, or bad parameters (one line).
    """
    values = parameters.read(node)
    try:
        load_plugins(parameters.plugin_modules(values))
        return parameters.validate(values)
    except (PluginError, ParameterError) as e:
        raise StartupError(str(e)) from None


def load_localizer(values: Mapping[str, Any], log) -> Localizer:
    """The localizer of validated parameters, warmed up; what it loaded goes to ``log``.

    Args:
        values: from :func:`checked_parameters`.
        log: the node's logger (``info`` / ``warning``).

    Raises:
        StartupError: a missing, unreadable, corrupt or mismatched file, or settings the
            localizer rejects (one line naming the file or the setting).
    """
    p = values
    t0 = time.time()
    try:
        loc = Localizer.from_files(p["model_path"], p["database_path"], parameters.localizer_config(p), p["device"],
                                   p["calibration_path"] or None, refiner_files=parameters.refiner_files(p))
        loc.warmup(p["warmup_iterations"])
    except (ModelFileError, DatabaseError, CalibrationError, ValueError, RuntimeError) as e:
        raise StartupError(str(e)) from None
    cal = loc.cfg.calibration
    if cal is None:
        log.warning(f"no calibration_path: the covariance is {covariance_source(loc)}; every pose the refiner "
                    "solves is published, none is sent on /initialpose (fit a calibration with python -m "
                    "reloc_ros.eval.calibrate)")
    else:
        log.info(f"calibration {p['calibration_path']}: publish threshold {loc.cfg.threshold:.3f} "
                 f"(P(within {cal.target_t_m:.2f} m, {cal.target_r_deg:.0f}°)), fitted on "
                 f"{cal.info.get('queries', '?')} held-out frames of {', '.join(cal.info.get('scenes', []))}")
        if not cal.target_met:
            log.warning(f"calibration {p['calibration_path']} missed its target: " + "; ".join(cal.misses())
                        + ": its poses are published, none is sent on /initialpose")
    if loc.cfg.checks:
        log.info("publish checks: " + ", ".join(loc.cfg.checks))
    if loc.refine_image_size is not None:  # a refiner runs
        if parameters.camera_intrinsics(p) is None and not p["use_camera_info"]:
            log.warning(f"refiner {p['refiner']}: no camera intrinsics (set camera_intrinsics, or "
                        "use_camera_info): no pose is published until intrinsics arrive")
        else:
            log.info(f"refiner {p['refiner']} at {loc.refine_image_size}, intrinsics from "
                     + ("camera_info" if p["use_camera_info"] else "camera_intrinsics"))
    if loc.cfg.top_k < p["top_k"]:
        log.warning(f"top_k {p['top_k']} is larger than the database ({len(loc.db)} frames): "
                    f"using top_k {loc.cfg.top_k}")
    info = loc.model_info
    log.info(f"loaded model {p['model_path']} ({info.config.arch} {info.config.input_size[0]}x"
             f"{info.config.input_size[1]}, {info.meta.get('mtl_method', '?')}, fingerprint "
             f"{info.fingerprint[:12]}) and database {p['database_path']} in {time.time() - t0:.1f} s "
             "(warm-up included)")
    return loc


def covariance_source(loc: Localizer) -> str:
    """Where the published covariance comes from, in words (startup line and /diagnostics)."""
    cal = loc.cfg.calibration
    if cal is not None:
        return "calibrated" + ("" if cal.target_met else " (missed its target: " + "; ".join(cal.misses()) + ")")
    if not loc.cfg.default_covariance:
        return "the estimator's raw covariance (NOT calibrated)"
    d = DefaultCovariance.for_refiner(loc.cfg.refiner)
    return f"NOT calibrated: the conservative default for refiner {loc.cfg.refiner} ({d.describe()})"


def initialpose_withheld(loc: Localizer) -> str:
    """Why no pose of this localizer may seed a localizer on /initialpose ('' when it may)."""
    cal = loc.cfg.calibration
    if cal is None:
        return "no calibration (the covariance is the conservative default)"
    if not cal.target_met:
        return "the calibration missed its target"
    return ""


def release_memory() -> None:
    """Return freed memory to the OS after the model and database are dropped: collect
    cycles, empty the CUDA cache, and ``malloc_trim`` glibc's heap (else RSS stays at its peak)."""
    gc.collect()
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
