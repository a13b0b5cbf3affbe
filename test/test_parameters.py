"""The node's parameters, declared once (reloc_ros.ros.parameters), and what is derived from
the declaration: the descriptors, the one-line validation, the core's configurations, the
default parameter file, the docs table and the launch arguments."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

from reloc_ros.core.camera import Intrinsics
from reloc_ros.core.fusion import FusionConfig
from reloc_ros.core.initialpose import GateConfig
from reloc_ros.ros import parameters as P
from rosutil import flatten

ROOT = Path(__file__).resolve().parents[1]

#: The names the node had before the declaration moved (users' scripts use them).
OLD_NAMES = {
    "model_path", "database_path", "device", "mode", "max_rate_hz", "top_k", "scene", "fusion.method",
    "fusion.inlier_t_m", "fusion.inlier_r_deg", "fusion.ray_inlier_deg", "min_inliers", "calibration_path",
    "min_confidence", "refiner", "dro_path", "refine_iterations", "camera_intrinsics", "use_compressed",
    "image_reliable", "use_camera_info", "map_frame", "database_frame", "odom_frame", "camera_frame", "robot_frame",
    "tf_mode", "tf_timeout_s", "publish_initialpose", "initialpose_topic", "initialpose.n_consecutive",
    "initialpose.max_t_m", "initialpose.drift_per_m", "initialpose.max_r_deg", "initialpose.max_gap_s",
    "initialpose.min_interval_s", "trigger_timeout_s", "warmup_iterations", "diagnostics_period_s", "warn_throttle_s",
}

REQUIRED = {"model_path": "model.pt", "database_path": "db.pt"}


def problems_of(**values) -> str:
    """The one line of :func:`P.validate` for the defaults changed by ``values``."""
    with pytest.raises(P.ParameterError) as e:
        P.validate({**REQUIRED, **{k.replace("__", "."): v for k, v in values.items()}})
    line = str(e.value)
    assert "\n" not in line and line.startswith("invalid parameters: ")
    return line


# --------------------------------------------------------------------------- the declaration
def test_every_old_name_is_kept_and_each_is_declared_once():
    names = [p.name for p in P.PARAMETERS]
    assert len(names) == len(set(names)) and set(P.BY_NAME) == set(names)
    assert OLD_NAMES <= set(names), OLD_NAMES - set(names)
    assert "plugins" in names and P.BY_NAME["plugins"].type == "string array" and P.BY_NAME["plugins"].default == []


def test_defaults_have_their_type_and_satisfy_their_rules():
    for p in P.PARAMETERS:
        assert p.type in P.TYPES and p.description, p
        assert P._has_type(p.default, p.type), p
        if p.range is not None:
            assert p.range.contains(p.default), p
        if p.choices is not None:
            assert p.default in p.allowed(), p
    values = P.validate(REQUIRED)  # the defaults (and the two required files) are valid
    assert values["max_rate_hz"] == 5.0 and values["plugins"] == []


def test_refiner_is_a_registered_unit_not_a_fixed_list():
    p = P.BY_NAME["refiner"]
    assert p.choices is None and "a registered refiner: none, pnp, lm, dro, or one a plugin adds" in p.description
    line = problems_of(refiner="nope")
    assert "refiner" in line and "'nope'" in line and all(n in line for n in ("pnp", "lm", "dro")), line
    # the ROS layer never branches on a refiner's name
    for path in (ROOT / "reloc_ros" / "ros").glob("*.py"):
        src = path.read_text()
        assert not re.search(r"""\[["']refiner["']\]\s*(==|!=|in\b|not in\b)""", src), path
        assert not re.search(r"""refiner\s*(==|!=)\s*["']""", src), path


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name, value, expected", [
    ("max_rate_hz", 5, "max_rate_hz must be a double (got integer 5)"),
    ("top_k", 2.0, "top_k must be an integer (got double 2.0)"),
    ("use_compressed", 1, "use_compressed must be a bool (got integer 1)"),
    ("mode", True, "mode must be a string (got bool True)"),
    ("camera_intrinsics", [1, 2, 3, 4, 5, 6], "camera_intrinsics must be a double array (got integer array"),
    ("plugins", "my.module", 'plugins must be a string array (got string "my.module")'),
    ("tf_timeout_s", None, "tf_timeout_s must be a double (got nothing)"),
])
def test_a_wrong_type_is_named_with_what_was_given(name, value, expected):
    line = problems_of(**{name.replace(".", "__"): value})
    assert expected in line, line


def test_one_line_names_every_bad_parameter():
    line = problems_of(model_path="", max_rate_hz=5, top_k=0, fusion__method="median", device="gpu",
                       min_confidence=0.5 - 1.0, camera_intrinsics=[1.0, 2.0], map_frame="/map",
                       initialpose__max_t_m=-1.0, refine_iterations=-2, diagnostics_period_s=0.0)
    for part in ("model_path is required", "max_rate_hz must be a double (got integer 5)", "top_k must be >= 1 (got 0)",
                 "fusion.method must be one of", "'median'", "device must be auto, cpu, cuda or cuda:N (got 'gpu')",
                 "min_confidence must be -1", "camera_intrinsics must be [fx, fy, cx, cy, width, height]",
                 "map_frame must be a non-empty frame id", "initialpose.max_t_m must be >= 0 (got -1.0)",
                 "refine_iterations must be >= -1 (got -2)", "diagnostics_period_s must be > 0 (got 0.0)"):
        assert part in line, (part, line)
    assert "database_path" not in line  # only the bad ones
    assert "min_inliers" not in line  # a bad top_k is not reported a second time through min_inliers


@pytest.mark.parametrize("values, expected", [
    ({"min_inliers": 6}, "min_inliers must be at most top_k (got 6, top_k 5)"),
    ({"fusion.inlier_r_deg": 190.0}, "fusion.inlier_r_deg must be in (0, 180] (got 190.0)"),
    ({"fusion.ray_inlier_deg": 90.0}, "fusion.ray_inlier_deg must be in (0, 90) (got 90.0)"),
    ({"max_rate_hz": float("nan")}, "max_rate_hz must be >= 0 (got nan)"),
    ({"tf_mode": "map_to_base"}, "tf_mode must be one of none, map_to_odom, map_to_camera (got 'map_to_base')"),
    ({"device": "cuda:x"}, "device must be auto, cpu, cuda or cuda:N"),
])
def test_ranges_choices_and_rules(values, expected):
    with pytest.raises(P.ParameterError, match=re.escape(expected)):
        P.validate({**REQUIRED, **values})


def test_good_values_pass_and_map_to_the_core_configs():
    values = P.validate({**REQUIRED, "device": "cuda:1", "top_k": 7, "min_inliers": 3, "fusion.method": "triangulate",
                         "fusion.ray_inlier_deg": 8.0, "min_confidence": 0.4, "refine_iterations": 4,
                         "scene": "chess", "initialpose.n_consecutive": 4, "initialpose.max_r_deg": 2.0,
                         "camera_intrinsics": [500.0, 501.0, 320.0, 240.0, 640.0, 480.0], "plugins": ["a.b"]})
    fusion = P.fusion_config(values)
    assert fusion == FusionConfig(method="triangulate", ray_inlier_deg=8.0, min_inliers=3)
    loc = P.localizer_config(values)
    assert (loc.top_k, loc.scene, loc.min_confidence, loc.refiner, loc.refine_iterations) == (7, "chess", 0.4, "none", 4)
    assert loc.fusion == fusion
    default = P.localizer_config(P.validate(REQUIRED))
    assert default.scene is None and default.min_confidence is None and default.refine_iterations is None
    assert P.gate_config(values) == GateConfig(n_consecutive=4, max_r_deg=2.0)
    assert P.camera_intrinsics(values) == Intrinsics(500.0, 501.0, 320.0, 240.0, 640, 480)
    assert P.camera_intrinsics(P.validate(REQUIRED)) is None
    assert P.plugin_modules(values) == ["a.b"] and P.plugin_modules({"plugins": 3}) == []


# --------------------------------------------------------------------------- texts
def test_parameter_file_is_the_generated_text():
    text = (ROOT / "config" / "relocalization.yaml").read_text()
    assert text == P.yaml_text(), "regenerate it: python -m reloc_ros.ros.parameters --yaml > config/relocalization.yaml"


def test_generated_yaml_holds_every_default_nested_and_typed():
    cfg = yaml.safe_load(P.yaml_text())
    assert set(cfg) == {"/**"} and isinstance(cfg["/**"]["ros__parameters"]["fusion"], dict)
    params = flatten(cfg["/**"]["ros__parameters"])
    assert list(params) == [p.name for p in P.PARAMETERS]
    for p in P.PARAMETERS:
        assert params[p.name] == p.default and type(params[p.name]) is type(p.default), p.name
    assert P.yaml_text().startswith("# ")  # a header


def test_markdown_table_has_a_row_per_parameter():
    table = P.markdown_table()
    rows = table.strip().splitlines()
    assert rows[0].startswith("| Parameter | Type | Default | Range / choices | Description |")
    assert len(rows) == 2 + len(P.PARAMETERS)
    for p, row in zip(P.PARAMETERS, rows[2:]):
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == 5, row
        assert cells[0].strip() == f"`{p.name}`" and cells[1].strip() == p.type
    assert "| `top_k` | integer | `5` | >= 1 |" in table
    assert "one of: continuous, on_demand" in table


def test_cli_prints_the_yaml_and_the_table(capsys):
    assert P.main(["--yaml"]) == 0
    assert capsys.readouterr().out == P.yaml_text()
    assert P.main(["--markdown"]) == 0
    assert capsys.readouterr().out == P.markdown_table()


def test_launch_arguments_come_from_the_declaration():
    args, params = P.launch_arguments(), P.launch_parameters()
    assert params == {"model": "model_path", "database": "database_path", "device": "device", "mode": "mode",
                      "calibration": "calibration_path", "tf_mode": "tf_mode"}
    assert set(args) == set(params)
    for arg, name in params.items():
        default, desc = args[arg]
        p = P.BY_NAME[name]
        assert isinstance(default, str) and (yaml.safe_load(default) if default else "") == p.default
        assert p.description in desc


# --------------------------------------------------------------------------- on a real node
@pytest.fixture
def make_node(tmp_path, monkeypatch):
    """``make_node(*ros_args)``: an rclpy node (own context, private domain) with the
    parameters declared from those command-line arguments."""
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    made = []

    def make(*ros_args):
        ctx = rclpy.Context()
        rclpy.init(args=["test", "--ros-args", *ros_args], context=ctx, domain_id=random.randint(1, 100))
        node = rclpy.create_node("relocalization_node", context=ctx)
        made.append((ctx, node))
        P.declare(node)
        return node

    yield make
    for ctx, node in made:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_declared_descriptors_carry_type_range_and_choices(make_node):
    node = make_node()
    d = node.describe_parameter("top_k")
    assert d.type == ParameterType.PARAMETER_INTEGER and d.integer_range[0].from_value == 1
    assert d.description == P.BY_NAME["top_k"].description and not d.dynamic_typing
    d = node.describe_parameter("fusion.inlier_r_deg")
    assert d.floating_point_range[0].from_value == 0.0 and d.floating_point_range[0].to_value == 180.0
    assert "(0, 180]" in d.additional_constraints
    assert "continuous, on_demand" in node.describe_parameter("mode").additional_constraints
    assert node.describe_parameter("plugins").type == ParameterType.PARAMETER_STRING_ARRAY
    assert P.read(node) == {p.name: p.default for p in P.PARAMETERS}


def test_the_parameter_file_loads_with_the_ros_parser(make_node):
    node = make_node("--params-file", str(ROOT / "config" / "relocalization.yaml"), "-p", "plugins:=[a.b, c]")
    values = P.read(node)
    assert values == {**{p.name: p.default for p in P.PARAMETERS}, "plugins": ["a.b", "c"]}
    assert all(type(values[p.name]) is type(p.default) for p in P.PARAMETERS)


def test_wrong_overrides_become_one_line_not_an_exception(make_node):
    node = make_node("--params-file", str(ROOT / "config" / "relocalization.yaml"), "-p", "max_rate_hz:=5",
                     "-p", "top_k:=0", "-p", "camera_intrinsics:=[1, 2]", "-p", "model_path:=m.pt",
                     "-p", "database_path:=db.pt")
    values = P.read(node)
    assert values["max_rate_hz"] == 5 and values["top_k"] == 0
    with pytest.raises(P.ParameterError) as e:
        P.validate(values)
    line = str(e.value)
    assert "max_rate_hz must be a double (got integer 5)" in line and "top_k must be >= 1 (got 0)" in line
    assert "camera_intrinsics must be a double array (got integer array [1, 2])" in line
    # the untyped declaration lets an operator fix it at run time (then configure again)
    assert node.describe_parameter("max_rate_hz").dynamic_typing
    assert node.set_parameters([Parameter("max_rate_hz", value=2.0), Parameter("top_k", value=3),
                                Parameter("camera_intrinsics", value=[0.0] * 6)])[0].successful
    assert P.validate(P.read(node))["max_rate_hz"] == 2.0


def test_refiner_files_map_keys_to_paths_and_take_dro_path():
    from reloc_ros.ros import parameters as P

    values = {**{p.name: p.default for p in P.PARAMETERS}, "model_path": "m.pt", "database_path": "d.pt",
              "refiner_files": ["anchor_map = /maps/a.pt", "dro_path=/x/dro.pt"], "dro_path": "/y/other.pt"}
    assert P.refiner_files(values) == {"anchor_map": "/maps/a.pt", "dro_path": "/x/dro.pt"}
    assert P.refiner_files({**values, "refiner_files": []}) == {"dro_path": "/y/other.pt"}
    with pytest.raises(P.ParameterError, match=r"refiner_files entries must be key=path"):
        P.validate({**values, "refiner_files": ["no_equals_sign"]})
