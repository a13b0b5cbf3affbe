"""The relocalization node's parameters, declared once.

:data:`PARAMETERS` lists each parameter once (a :class:`Param`: name, type, default,
description, range or choices, launch-argument name). Everything else is derived from it:

* :func:`declare` declares them on a node, each with a ``ParameterDescriptor`` (type,
  description, ``FloatingPointRange`` / ``IntegerRange``, choices as
  ``additional_constraints``), so ``ros2 param describe`` shows the same text;
* :func:`read` reads them back, and :func:`validate` checks them all at once: a wrong type,
  a value out of range or not among the choices, a missing file name, and whatever the
  core's configurations reject (an unknown refiner, ...) become ONE line,
  ``invalid parameters: <problem>; <problem>; ...`` (:class:`ParameterError`);
* :func:`fusion_config`, :func:`localizer_config`, :func:`gate_config` and
  :func:`camera_intrinsics` map validated values to the core's configurations;
* :func:`yaml_text` is the default parameter file (``config/relocalization.yaml`` equals it),
  :func:`markdown_table` the table of ``docs/node.md``, and :func:`launch_arguments` the
  node's launch arguments (:mod:`reloc_ros.ros.launch`).

Regenerate the two texts with::

    python -m reloc_ros.ros.parameters --yaml > config/relocalization.yaml
    python -m reloc_ros.ros.parameters --markdown

ROS parameter types are strict: ``-p max_rate_hz:=5`` is an integer, not a double. Such an
override cannot be declared with the parameter's type; :func:`declare` then declares that
parameter untyped so that :func:`validate` can name it (``max_rate_hz must be a double (got
integer 5)``) instead of rclpy raising from the constructor.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.fusion import FUSION_METHODS, FusionConfig
from reloc_ros.core.initialpose import GateConfig

__all__ = ["Param", "Range", "ParameterError", "PARAMETERS", "BY_NAME", "declare", "read", "validate",
           "plugin_modules", "refiner_files", "fusion_config", "localizer_config", "gate_config", "camera_intrinsics",
           "yaml_text", "markdown_table", "launch_arguments", "launch_parameters"]

#: type name -> (ROS ParameterType, Python type of the value or of each element, is an array).
TYPES = {
    "bool": (ParameterType.PARAMETER_BOOL, bool, False),
    "integer": (ParameterType.PARAMETER_INTEGER, int, False),
    "double": (ParameterType.PARAMETER_DOUBLE, float, False),
    "string": (ParameterType.PARAMETER_STRING, str, False),
    "double array": (ParameterType.PARAMETER_DOUBLE_ARRAY, float, True),
    "string array": (ParameterType.PARAMETER_STRING_ARRAY, str, True),
}

_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class ParameterError(ValueError):
    """Parameters the node cannot run with; ``str(err)`` is one line naming every one."""


@dataclass(frozen=True)
class Range:
    """A numeric interval: ``low`` to ``high`` (infinite: open-ended), each end included
    unless ``low_open`` / ``high_open``. Values in a range must also be finite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, v: float) -> bool:
        """Whether ``v`` (a finite number) lies in the range."""
        if not math.isfinite(v):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def text(self) -> str:
        """The range as people write it: ``>= 0``, ``> 0``, ``[0, 1]``, ``(0, 180]``."""
        lo, hi = _num(self.low), _num(self.high)
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {lo}"
        if math.isinf(self.low):
            return f"{'<' if self.high_open else '<='} {hi}"
        return f"{'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Param:
    """One node parameter.

    Attributes:
        name: the ROS parameter name (``fusion.method``: nested ``fusion: {method: ...}`` in YAML).
        type: a key of :data:`TYPES` (``"double"``, ``"string array"``, ...).
        default: the value when none is given (of that type).
        description: what it means, for ``ros2 param describe``, the YAML file and the docs.
        range: the allowed numeric interval (numbers only), or None.
        choices: the allowed strings, or a function returning them (read when validating, so
            that units registered by plugins count), or None.
        check: ``check(value, values) -> problem or None``: a rule beyond range and choices,
            given the value and all the parameters' values; the problem completes the
            sentence "<name> ..." (e.g. ``"is required"``).
        constraints: the rule of ``check`` in words (for the descriptor, table and YAML).
        launch: the launch argument that sets it (``model`` for ``model_path``), or None.
    """

    name: str
    type: str
    default: Any
    description: str
    range: Range | None = None
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    check: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    constraints: str = ""
    launch: str | None = None

    def allowed(self) -> tuple[str, ...] | None:
        """The choices now (a function's are read at each call), or None."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def constraint_text(self) -> str:
        """Range, choices and the rule of ``check``, in words (empty when none)."""
        parts = []
        if self.range is not None:
            parts.append(self.range.text())
        if self.choices is not None:
            parts.append("one of: " + ", ".join(self.allowed()))
        if self.constraints:
            parts.append(self.constraints)
        return "; ".join(parts)

    def descriptor(self) -> ParameterDescriptor:
        """The ``ParameterDescriptor`` it is declared with."""
        ros_type = TYPES[self.type][0]
        d = ParameterDescriptor(name=self.name, type=ros_type, description=self.description,
                                additional_constraints=self.constraint_text())
        if self.range is not None and ros_type == ParameterType.PARAMETER_DOUBLE:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.range.low),
                                                         to_value=float(self.range.high), step=0.0)]
        elif self.range is not None and ros_type == ParameterType.PARAMETER_INTEGER:
            lo = _INT64[0] if math.isinf(self.range.low) else int(math.ceil(self.range.low))
            hi = _INT64[1] if math.isinf(self.range.high) else int(math.floor(self.range.high))
            d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=0)]
        return d


# --------------------------------------------------------------------------- rules
def _required(v: Any, values: Mapping[str, Any]) -> str | None:
    return None if v else "is required"


def _device(v: str, values: Mapping[str, Any]) -> str | None:
    ok = v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())
    return None if ok else f"must be auto, cpu, cuda or cuda:N (got {v!r})"


def _frame_id(v: str, values: Mapping[str, Any]) -> str | None:
    return None if v and not v.startswith("/") else f"must be a non-empty frame id without a leading '/' (got {v!r})"


def _min_inliers(v: int, values: Mapping[str, Any]) -> str | None:
    top_k = values.get("top_k")
    if type(top_k) is int and top_k >= 1 and v > top_k:  # (a bad top_k is reported on its own)
        return f"must be at most top_k (got {v}, top_k {top_k})"
    return None


def _publish_checks(v, values) -> str | None:
    from reloc_ros.core.checks import CHECKS  # lazy: numpy only, but the launch files import this module

    unknown = [c for c in v if c not in CHECKS]
    if unknown:
        return f"names unknown checks {unknown} (known: {', '.join(CHECKS.names())})"
    if v and values.get("refiner") == "none":
        return "needs a refiner (the checks compare a refined pose with other evidence)"
    return None


def _min_confidence(v: float, values: Mapping[str, Any]) -> str | None:
    return None if v == -1 or 0 <= v <= 1 else f"must be -1 (the calibration's threshold) or in [0, 1] (got {v})"


def _intrinsics(v: list, values: Mapping[str, Any]) -> str | None:
    ok = len(v) == 6 and all(math.isfinite(x) for x in v) and (
        v[0] <= 0 or (v[0] > 0 and v[1] > 0 and v[4] >= 1 and v[5] >= 1))
    return None if ok else ("must be [fx, fy, cx, cy, width, height] with positive fx, fy and size, or fx 0 "
                            f"for unset (got {list(v)})")


_NONNEG = Range(0.0)
_POSITIVE = Range(0.0, low_open=True)

#: Every parameter of the node, in the order of the YAML file and the docs.
def _key_paths(v, values) -> str | None:
    bad = [e for e in v if "=" not in e or not e.split("=", 1)[0].strip() or not e.split("=", 1)[1].strip()]
    return f"entries must be key=path (got {bad})" if bad else None


def refiner_files(values: Mapping[str, Any]) -> dict[str, str]:
    """The refiner's files: ``refiner_files`` (key=path) and ``dro_path``, by key."""
    files = dict(e.split("=", 1) for e in values.get("refiner_files", []) if "=" in e)
    files = {k.strip(): v.strip() for k, v in files.items()}
    if values.get("dro_path"):
        files.setdefault("dro_path", values["dro_path"])
    return files


PARAMETERS: tuple[Param, ...] = (
    Param("model_path", "string", "", "model file written by training (reloc_train)", check=_required,
          constraints="required", launch="model"),
    Param("database_path", "string", "", "frame database built with that model (python -m "
          "reloc_ros.mapping.database)", check=_required, constraints="required", launch="database"),
    Param("device", "string", "auto", "inference device (auto: CUDA when available)",
          check=_device, constraints="auto, cpu, cuda or cuda:N", launch="device"),
    Param("plugins", "string array", [], "Python modules to import before the localizer is built, so that "
          "the units they register (e.g. a refiner) can be named here (docs/extending.md)"),
    Param("mode", "string", "continuous", "continuous: localize every frame it can; on_demand: only after "
          "~/relocalize", choices=("continuous", "on_demand"), launch="mode"),
    Param("max_rate_hz", "double", 5.0, "continuous mode: at most this many localizations per second (0: no "
          "limit)", range=_NONNEG),
    Param("top_k", "integer", 5, "database frames retrieved per query (hypotheses to fuse)", range=Range(1)),
    Param("scene", "string", "", "restrict retrieval to this scene of the database (empty: chosen by the "
          "top-1 match)"),
    Param("fusion.method", "string", "consensus", "how the hypotheses become one pose",
          choices=lambda: tuple(FUSION_METHODS)),
    Param("fusion.inlier_t_m", "double", 0.5, "consensus and top1: translation inlier threshold (m)",
          range=_POSITIVE),
    Param("fusion.inlier_r_deg", "double", 15.0, "consensus and top1: rotation inlier threshold (deg)",
          range=Range(0.0, 180.0, low_open=True)),
    Param("fusion.ray_inlier_deg", "double", 10.0, "triangulate: ray inlier threshold (deg)",
          range=Range(0.0, 90.0, low_open=True, high_open=True)),
    Param("min_inliers", "integer", 2, "fewer agreeing hypotheses: no pose is published", range=Range(1),
          check=_min_inliers, constraints="at most top_k"),
    Param("calibration_path", "string", "", "covariance and confidence calibration fitted for this database "
          "and these settings (python -m reloc_ros.eval.calibrate); empty: NOT calibrated (the conservative default "
          "covariance of the refiner, no /initialpose)", launch="calibration"),
    Param("min_confidence", "double", -1.0, "publish only poses with at least this confidence; -1: the "
          "calibration's threshold (0 without a calibration)", check=_min_confidence, constraints="-1 or in [0, 1]"),
    Param("refiner", "string", "none", "refinement after fusion: a registered refiner: none, pnp, lm, dro, or one "
          "a plugin adds (pnp: SIFT + PnP-RANSAC against the database depth, database built with --keypoints; "
          "lm: feature-metric Levenberg-Marquardt, database built with --dense; dro: the learned recurrent "
          "optimizer, --dense and dro_path); refiners need the camera's intrinsics"),
    Param("publish_checks", "string array", [], "publish checks a refined pose must pass, by name "
          "(reloc_ros.core.checks: regression, retrieved, or one a plugin adds): independent evidence against a "
          "refiner that matched a repeated texture", check=_publish_checks,
          constraints="registered check names; needs a refiner"),
    Param("dro_path", "string", "", "DRO file for refiner dro (python -m reloc_train.dro), trained on "
          "model_path's features"),
    Param("refiner_files", "string array", [], "more files for the refiner, as key=path (a plugin refiner "
          "reads its own keys; dro_path may be given here too)", check=_key_paths, constraints="each key=path"),
    Param("refine_iterations", "integer", -1, "iterations of the refiner (lm: per pyramid level, dro: per "
          "stage); -1: the database's (lm) or the DRO file's (dro) default", range=Range(-1)),
    Param("camera_intrinsics", "double array", [0.0] * 6, "fx, fy, cx, cy, width, height of the camera, for "
          "the refiner (fx 0: unset; camera_info, with use_camera_info, takes precedence)", check=_intrinsics,
          constraints="6 numbers; fx 0 or positive fx, fy and size"),
    Param("use_compressed", "bool", False, "subscribe to image/compressed (sensor_msgs/CompressedImage) "
          "instead of image"),
    Param("image_reliable", "bool", False, "subscribe to images with reliable QoS instead of sensor-data "
          "(best effort)"),
    Param("use_camera_info", "bool", False, "subscribe to camera_info: the refiner's intrinsics, and "
          "diagnostics"),
    Param("map_frame", "string", "map", "REP-105 map frame: poses are published in it when TF map_frame -> "
          "database_frame exists", check=_frame_id, constraints="a frame id"),
    Param("database_frame", "string", "reloc_map", "TF frame of the database's world (the visual map); poses "
          "are published in it while TF has no map_frame -> database_frame (equal to map_frame: no TF needed)",
          check=_frame_id, constraints="a frame id"),
    Param("odom_frame", "string", "odom", "odometry frame, for tf_mode map_to_odom and the /initialpose gate",
          check=_frame_id, constraints="a frame id"),
    Param("camera_frame", "string", "", "camera optical frame (empty: the image header's frame_id)"),
    Param("robot_frame", "string", "", "publish the pose of this frame (e.g. base_link) instead of the "
          "camera's, via TF (empty: the camera's)"),
    Param("tf_mode", "string", "none", "TF to broadcast (opt-in, so it never fights AMCL): none, map_to_odom "
          "(corrects odometry) or map_to_camera (no odometry)", choices=("none", "map_to_odom", "map_to_camera"),
          launch="tf_mode"),
    Param("tf_timeout_s", "double", 0.1, "how long to wait for odom -> camera (and camera -> robot) at the "
          "image stamp", range=_NONNEG),
    Param("publish_initialpose", "bool", False, "also publish on initialpose_topic (seed AMCL, SLAM "
          "recovery) when initialpose.n_consecutive poses agree with the odometry"),
    Param("initialpose_topic", "string", "/initialpose", "topic of the initial-pose output"),
    Param("initialpose.n_consecutive", "integer", 3, "consecutive poses that must agree with the odometry "
          "(TF odom -> camera)", range=Range(1)),
    Param("initialpose.max_t_m", "double", 0.15, "allowed difference (m) between relocalized and odometry "
          "motion ...", range=_NONNEG),
    Param("initialpose.drift_per_m", "double", 0.05, "... plus this much per metre travelled", range=_NONNEG),
    Param("initialpose.max_r_deg", "double", 5.0, "allowed rotation difference (deg) between relocalized and "
          "odometry motion", range=_NONNEG),
    Param("initialpose.max_gap_s", "double", 5.0, "poses further apart (image stamps) do not form a window",
          range=_NONNEG),
    Param("initialpose.min_interval_s", "double", 10.0, "no second /initialpose within this time (image "
          "stamps)", range=_NONNEG),
    Param("trigger_timeout_s", "double", 10.0, "~/relocalize waits this long for a frame to be localized",
          range=_NONNEG),
    Param("warmup_iterations", "integer", 3, "dummy queries at startup so the first real one is not slow",
          range=Range(0)),
    Param("diagnostics_period_s", "double", 1.0, "period of /diagnostics", range=_POSITIVE),
    Param("warn_throttle_s", "double", 5.0, "at most one warning of each kind per this many seconds",
          range=_NONNEG),
)

#: name -> :class:`Param`.
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}


# --------------------------------------------------------------------------- the node side
def declare(node) -> None:
    """Declare every parameter on ``node`` with its descriptor.

    An override (``-p``, a parameter file) of the wrong type or out of range cannot be
    declared with the descriptor: that parameter is declared untyped instead, with the
    override's value, so that :func:`validate` reports it in its one line."""
    for p in PARAMETERS:
        # An empty array has no element type: declare the type alone (not set until overridden).
        default = Parameter.Type(TYPES[p.type][0]) if TYPES[p.type][2] and not p.default else p.default
        try:
            node.declare_parameter(p.name, default, p.descriptor())
        except (InvalidParameterTypeException, InvalidParameterValueException):
            node.declare_parameter(p.name, None, ParameterDescriptor(
                description=p.description, additional_constraints=p.constraint_text(), dynamic_typing=True))


def read(node) -> dict[str, Any]:
    """The parameters' current values on ``node`` (declared by :func:`declare`), unchecked:
    arrays as lists, an array that is not set as ``[]``, any other value not set as None."""
    values = {}
    for p in PARAMETERS:
        v = node.get_parameter_or(p.name).value
        if isinstance(v, (array.array, tuple)):
            v = list(v)
        if v is None and TYPES[p.type][2]:
            v = []
        values[p.name] = v
    return values


def type_name(value: Any) -> str:
    """The ROS type name of a parameter value (``"integer"``, ``"double array"``, ...)."""
    if value is None:
        return "not set"
    if isinstance(value, (list, tuple)):
        if not value:
            return "empty array"
        return type_name(value[0]) + " array" if len({type_name(v) for v in value}) == 1 else "mixed array"
    return {bool: "bool", int: "integer", float: "double", str: "string", bytes: "byte"}.get(type(value), "unknown")


def _has_type(value: Any, type_: str) -> bool:
    _, py, is_array = TYPES[type_]

    def scalar(v):
        return type(v) is py  # bool is not an integer here, nor an integer a double

    if is_array:
        return isinstance(value, list) and all(scalar(v) for v in value)
    return scalar(value)


def _problems(values: Mapping[str, Any]) -> tuple[list[str], set[str]]:
    """(problems, names of the bad parameters) of type, range, choices and rules."""
    problems, bad = [], set()
    for p in PARAMETERS:
        v = values[p.name]
        if not _has_type(v, p.type):
            got = "nothing" if v is None else f"{type_name(v)} {json.dumps(v) if isinstance(v, str) else v}"
            article = "an" if p.type[0] in "aeiou" else "a"
            problems.append(f"{p.name} must be {article} {p.type} (got {got})")
            bad.add(p.name)
            continue
        problem = None
        if p.range is not None and not p.range.contains(v):
            word = "in " if not (math.isinf(p.range.low) or math.isinf(p.range.high)) else ""
            problem = f"must be {word}{p.range.text()} (got {v})"
        elif p.choices is not None and v not in p.allowed():
            problem = f"must be one of {', '.join(p.allowed())} (got {v!r})"
        if problem is None and p.check is not None:
            problem = p.check(v, values)
        if problem:
            problems.append(f"{p.name} {problem}")
            bad.add(p.name)
    return problems, bad


def plugin_modules(values: Mapping[str, Any]) -> list[str]:
    """The ``plugins`` parameter's modules (none while it has the wrong type: :func:`validate`
    reports that)."""
    v = values.get("plugins", [])
    return list(v) if _has_type(v, "string array") else []


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every parameter, and that the core's configurations accept them.

    Args:
        values: parameter name -> value, as :func:`read` gives them (a missing name takes
            its default).

    Returns:
        The values (all names), ready for :func:`localizer_config` and the others.

    Raises:
        ParameterError: one line, ``invalid parameters: ...``, naming every bad parameter
            (wrong type, out of range, not a choice, a broken rule), and what the core's
            configurations reject (e.g. an unknown refiner, with the known names).
    """
    v = {p.name: values.get(p.name, p.default) for p in PARAMETERS}
    problems, bad = _problems(v)
    # The core's configurations, from the good values (defaults in place of the bad ones).
    safe = {**v, **{name: BY_NAME[name].default for name in bad}}
    fusion = None
    try:
        fusion = fusion_config(safe)
    except (ValueError, TypeError) as e:
        problems.append(f"fusion: {e}")
    try:
        gate_config(safe)
    except (ValueError, TypeError) as e:
        problems.append(f"initialpose: {e}")
    try:
        localizer_config(safe, fusion=fusion or FusionConfig())
    except (ValueError, TypeError) as e:
        problems.append(str(e))
    if problems:
        raise ParameterError("invalid parameters: " + "; ".join(problems))
    return v


# --------------------------------------------------------------------------- the core's configurations
def fusion_config(values: Mapping[str, Any]) -> FusionConfig:
    """The :class:`~reloc_ros.core.fusion.FusionConfig` of validated values (``fusion.*``, ``min_inliers``)."""
    return FusionConfig(method=values["fusion.method"], inlier_t_m=values["fusion.inlier_t_m"],
                        inlier_r_deg=values["fusion.inlier_r_deg"], ray_inlier_deg=values["fusion.ray_inlier_deg"],
                        min_inliers=values["min_inliers"])


def localizer_config(values: Mapping[str, Any], fusion: FusionConfig | None = None):
    """The :class:`~reloc_ros.core.localizer.LocalizerConfig` of validated values.

    Args:
        values: the parameters' values.
        fusion: its fusion settings (default: :func:`fusion_config` of ``values``).

    Raises:
        ValueError: the localizer rejects them (e.g. a refiner nobody registered).
    """
    from reloc_ros.core.localizer import LocalizerConfig  # lazy: torch; the launch files import this module

    return LocalizerConfig(
        top_k=values["top_k"], fusion=fusion or fusion_config(values), scene=values["scene"] or None,
        min_confidence=None if values["min_confidence"] == -1 else values["min_confidence"],
        refiner=values["refiner"], checks=tuple(values["publish_checks"]),
        refine_iterations=None if values["refine_iterations"] == -1 else values["refine_iterations"])


def gate_config(values: Mapping[str, Any]) -> GateConfig:
    """The :class:`~reloc_ros.core.initialpose.GateConfig` of validated values (``initialpose.*``)."""
    prefix = "initialpose."
    return GateConfig(**{p.name[len(prefix):]: values[p.name] for p in PARAMETERS if p.name.startswith(prefix)})


def camera_intrinsics(values: Mapping[str, Any]) -> Intrinsics | None:
    """The ``camera_intrinsics`` parameter as :class:`~reloc_ros.core.camera.Intrinsics`
    (None while unset, fx 0)."""
    fx, fy, cx, cy, w, h = values["camera_intrinsics"]
    return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=int(w), height=int(h)) if fx > 0 else None


# --------------------------------------------------------------------------- texts
def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def yaml_value(value: Any) -> str:
    """A default as YAML text that both PyYAML and ROS's parameter-file parser read back as
    the same value and type (strings quoted when they could read as something else)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    plain = value and all(c.isalnum() or c in "_./-" for c in value) and not value[0].isdigit() \
        and value[0] not in "-." and value.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "y", "n")
    return value if plain else json.dumps(value)


def yaml_text() -> str:
    """The default parameter file (``config/relocalization.yaml``): every parameter with its
    default, and its description and range as a comment; dotted names nested."""
    lines = [
        "# Parameters of the relocalization node and their defaults. Generated from the declaration in",
        "# reloc_ros/ros/parameters.py: python -m reloc_ros.ros.parameters --yaml > config/relocalization.yaml",
        "# (`ros2 param describe /relocalization_node <name>` shows the same descriptions).",
        "#   ros2 run reloc_ros relocalization_node --ros-args --params-file config/relocalization.yaml \\",
        "#       -p model_path:=model.pt -p database_path:=db.pt -r image:=/camera/color/image_raw",
        "/**:",
        "  ros__parameters:",
    ]
    groups_done = set()
    for p in PARAMETERS:
        group, _, leaf = p.name.rpartition(".")
        if group:
            if group in groups_done:
                continue
            groups_done.add(group)
            lines.append(f"    {group}:")
            members = [q for q in PARAMETERS if q.name.rpartition(".")[0] == group]
            for q in members:
                lines += _yaml_entry(q, q.name.rpartition(".")[2], "      ")
        else:
            lines += _yaml_entry(p, leaf, "    ")
    return "\n".join(lines) + "\n"


def _yaml_entry(p: Param, key: str, indent: str) -> list[str]:
    rules = ([f"range {p.range.text()}"] if p.range is not None else []) + \
        ([f"one of {', '.join(p.allowed())}"] if p.choices is not None else []) + ([p.constraints] if p.constraints else [])
    text = "; ".join([p.description] + rules)
    comment = textwrap.wrap(text, width=110 - len(indent) - 2, break_on_hyphens=False)
    return [f"{indent}# {c}" for c in comment] + [f"{indent}{key}: {yaml_value(p.default)}"]


def markdown_table() -> str:
    """The parameter table for the docs (name, type, default, range or choices, description),
    as Markdown; ``docs/node.md`` holds it between ``<!-- parameters:begin -->`` and
    ``<!-- parameters:end -->``."""

    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    rows = ["| Parameter | Type | Default | Range / choices | Description |", "|---|---|---|---|---|"]
    for p in PARAMETERS:
        rows.append(f"| `{p.name}` | {p.type} | `{yaml_value(p.default)}` | {cell(p.constraint_text())} | "
                    f"{cell(p.description)} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- launch
def launch_parameters() -> dict[str, str]:
    """launch argument name -> the parameter it sets (``{"model": "model_path", ...}``)."""
    return {p.launch: p.name for p in PARAMETERS if p.launch}


def launch_arguments() -> dict[str, tuple[str, str]]:
    """The node's launch arguments: name -> (default as launch text, description)."""
    out = {}
    for p in PARAMETERS:
        if p.launch:
            default = yaml_value(p.default) if not isinstance(p.default, str) else p.default
            extra = p.constraint_text()
            out[p.launch] = (default, f"{p.name}: {p.description}" + (f" [{extra}]" if extra else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    """``--yaml``: print the default parameter file; ``--markdown``: the parameter table."""
    ap = argparse.ArgumentParser(prog="python -m reloc_ros.ros.parameters", description=main.__doc__)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--yaml", action="store_true", help="the default parameter file (config/relocalization.yaml)")
    what.add_argument("--markdown", action="store_true", help="the parameter table of docs/node.md")
    args = ap.parse_args(argv)
    sys.stdout.write(yaml_text() if args.yaml else markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
