"""Launch files and parameter files, checked by shape (``launch`` cannot run here).

The launch modules are imported against small stand-ins of ``launch`` and ``launch_ros``
that record what the file builds; the test then checks it against the node's parameter
declaration (:mod:`reloc_ros.ros.parameters`), the package's console scripts and the
installed config files.
"""

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

from reloc_ros.ros.parameters import BY_NAME as PARAMETERS
from reloc_ros.ros.parameters import launch_parameters
from rosutil import flatten

ROOT = Path(__file__).resolve().parents[1]


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration:
    def __init__(self, name, default=None):
        self.name, self.default = name, default

    def __repr__(self):
        return f"LaunchConfiguration({self.name!r})"


@pytest.fixture
def launch_stubs(monkeypatch):
    mods = {}
    launch = types.ModuleType("launch")
    launch.LaunchDescription = type("LaunchDescription", (_Recorder,), {})
    actions = types.ModuleType("launch.actions")
    for n in ("DeclareLaunchArgument", "ExecuteProcess", "IncludeLaunchDescription", "TimerAction",
              "RegisterEventHandler", "Shutdown", "LogInfo"):
        setattr(actions, n, type(n, (_Recorder,), {}))
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = LaunchConfiguration
    subs.PythonExpression = type("PythonExpression", (_Recorder,), {})
    conds = types.ModuleType("launch.conditions")
    conds.IfCondition = type("IfCondition", (_Recorder,), {})
    conds.UnlessCondition = type("UnlessCondition", (_Recorder,), {})
    events = types.ModuleType("launch.event_handlers")
    events.OnProcessExit = type("OnProcessExit", (_Recorder,), {})
    lr = types.ModuleType("launch_ros")
    lra = types.ModuleType("launch_ros.actions")
    lra.Node = type("Node", (_Recorder,), {})
    lra.LifecycleNode = type("LifecycleNode", (_Recorder,), {})
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch.conditions": conds, "launch.event_handlers": events,
                      "launch_ros": lr, "launch_ros.actions": lra}.items():
        monkeypatch.setitem(sys.modules, name, mod)
        mods[name] = mod
    # the package share directory: the source tree stands in for the install
    import ament_index_python.packages as aip

    monkeypatch.setattr(aip, "get_package_share_directory", lambda pkg: str(ROOT))
    return mods


def load_launch(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.generate_launch_description()


def console_scripts() -> set[str]:
    text = (ROOT / "setup.py").read_text()
    return set(re.findall(r'"([a-z_]+) = [a-z_.]+:main[a-z_]*"', text))


def node_overrides(node) -> dict:
    """The node action's parameter dict (after the config file)."""
    return [p for p in node.kwargs["parameters"] if isinstance(p, dict)][0]


def check_launch_arguments(declared: dict, overrides: dict) -> None:
    """Every launch argument the declaration flags is declared with the parameter's default
    and description, and sets that parameter on the node."""
    for arg, name in launch_parameters().items():
        assert arg in declared, arg
        p = PARAMETERS[name]
        default = declared[arg]["default_value"]
        assert (yaml.safe_load(default) if default else "") == p.default, (arg, default)
        assert p.description in declared[arg]["description"]
        assert isinstance(overrides[name], LaunchConfiguration) and overrides[name].name == arg


def test_relocalization_launch_shape(launch_stubs):
    ld = load_launch(ROOT / "launch" / "relocalization.launch.py")
    entities = ld.args[0]
    declared = {e.args[0] if e.args else e.kwargs["name"]: e.kwargs for e in entities
                if type(e).__name__ == "DeclareLaunchArgument"}
    assert {"model", "database", "image_topic", "device", "tf_mode", "mode", "config"} <= set(declared)
    assert all(kw.get("description") for kw in declared.values())
    assert declared["config"]["default_value"].endswith("config/relocalization.yaml")
    assert Path(declared["config"]["default_value"]).is_file()
    nodes = [e for e in entities if type(e).__name__ in ("Node", "LifecycleNode")]
    # the plain node unless managed:=true, the lifecycle node if it is
    assert [type(e).__name__ for e in nodes] == ["Node", "LifecycleNode"]
    assert [type(e.kwargs["condition"]).__name__ for e in nodes] == ["UnlessCondition", "IfCondition"]
    assert all(e.kwargs["condition"].args[0].name == "managed" for e in nodes)
    assert [e.kwargs["executable"] for e in nodes] == ["relocalization_node", "managed_relocalization_node"]
    assert nodes[1].kwargs["namespace"] == "" and "managed" in declared
    kw = nodes[0].kwargs
    assert {k: v for k, v in kw.items() if k not in ("executable", "condition")} == \
        {k: v for k, v in nodes[1].kwargs.items() if k not in ("executable", "condition", "namespace")}
    assert kw["package"] == "reloc_ros" and {e.kwargs["executable"] for e in nodes} <= console_scripts()
    assert isinstance(kw["parameters"][0], LaunchConfiguration) and kw["parameters"][0].name == "config"
    overrides = node_overrides(nodes[0])
    assert set(overrides) <= set(PARAMETERS)
    used = {v.name for v in overrides.values() if isinstance(v, LaunchConfiguration)}
    assert used <= set(declared)
    check_launch_arguments(declared, overrides)
    assert ("image", ) == tuple(r[0] for r in kw["remappings"])
    assert kw["remappings"][0][1].name == "image_topic"


def test_parameter_file_matches_the_node_declarations():
    cfg = yaml.safe_load((ROOT / "config" / "relocalization.yaml").read_text())
    params = flatten(cfg["/**"]["ros__parameters"])
    assert set(params) == set(PARAMETERS), set(params) ^ set(PARAMETERS)
    for name, value in params.items():
        default = PARAMETERS[name].default
        assert type(value) is type(default), (name, value, default)  # ROS parameter types are strict
        assert value == default, (name, value, default)


def test_replay_launch_shape(launch_stubs):
    ld = load_launch(ROOT / "launch" / "replay_7scenes.launch.py")
    entities = ld.args[0]
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert {"bag", "model", "database", "report", "rate", "image_topic", "device", "config"} <= set(declared)
    nodes = {e.kwargs["executable"]: e.kwargs for e in entities if type(e).__name__ == "Node"}
    assert set(nodes) == {"relocalization_node", "reloc_bag_evaluator"}
    assert set(nodes) <= console_scripts()
    node = [e for e in entities if type(e).__name__ == "Node" and e.kwargs["executable"] == "relocalization_node"][0]
    node_params = node_overrides(node)
    assert set(node_params) <= set(PARAMETERS)
    check_launch_arguments(declared, node_params)
    assert node_params["image_reliable"] is True and node_params["max_rate_hz"] == 0.0  # replay settings
    ev_args = nodes["reloc_bag_evaluator"]["arguments"]
    # the evaluator's arguments are ones its CLI accepts
    flags = [a for a in ev_args if isinstance(a, str) and a.startswith("--")]
    from reloc_ros.tools.bag import evaluate as evaluator

    parser_flags = {o for a in evaluator.build_parser()._actions for o in a.option_strings} \
        if hasattr(evaluator, "build_parser") else None
    if parser_flags is not None:
        assert set(flags) <= parser_flags
    else:
        src = Path(evaluator.__file__).read_text()
        assert all(f'"{f}"' in src for f in flags)
    play = [e for e in entities if type(e).__name__ == "ExecuteProcess"][0]
    cmd = play.kwargs["cmd"]
    assert cmd[:3] == ["ros2", "bag", "play"] and cmd[3].name == "bag"
    handlers = [e for e in entities if type(e).__name__ == "RegisterEventHandler"]
    assert handlers and handlers[0].args[0].kwargs["target_action"].kwargs["executable"] == "reloc_bag_evaluator"
