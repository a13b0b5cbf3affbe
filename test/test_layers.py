"""One direction of imports: no module imports from a layer above its own (test/layers.py)."""

from __future__ import annotations

from pathlib import Path

import layers

ROOT = Path(__file__).resolve().parents[1]


def test_no_upward_import_in_the_tree():
    assert layers.upward_imports(ROOT) == []


def test_a_planted_upward_import_is_caught(tmp_path):
    """The checker sees imports at any depth and relative ones: plant three and find each."""
    for pkg in ("reloc_ros", "reloc_ros/core", "reloc_ros/data", "reloc_ros/eval", "reloc_ros/ros", "train",
                "train/experiments", "reloc_sim"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "reloc_ros" / "core" / "planted.py").write_text(
        "def f():\n    if True:\n        from reloc_ros.ros import node  # function-local, nested\n    return node\n")
    (tmp_path / "reloc_ros" / "data" / "planted.py").write_text("from ..eval import report\n")
    (tmp_path / "reloc_ros" / "data" / "fine.py").write_text("from ..core import planted\nimport numpy\n")
    (tmp_path / "train" / "planted.py").write_text("import reloc_train.experiments.table4\n")
    found = layers.upward_imports(tmp_path)
    assert found == [
        "reloc_ros/core/planted.py:3: core imports reloc_ros.ros (ros)",
        "reloc_ros/core/planted.py:3: core imports reloc_ros.ros.node (ros)",
        "reloc_ros/data/planted.py:1: data imports reloc_ros.eval (eval)",
        "reloc_ros/data/planted.py:1: data imports reloc_ros.eval.report (eval)",
        "train/planted.py:1: train imports reloc_train.experiments.table4 (experiments)",
    ]


def test_layer_of():
    assert layers.layer_of("reloc_train.experiments.table4") == "experiments"
    assert layers.layer_of("reloc_train.train") == "train"
    assert layers.layer_of("reloc_ros.tools.bag.replay") == "tools"
    assert layers.layer_of("reloc_ros") == "core"
    assert layers.layer_of("reloc_rosx") is None
    assert layers.layer_of("numpy") is None


def test_every_function_local_import_says_why(tmp_path):
    """A function-local import stays only with a '# lazy:' reason; an unexplained one is caught."""
    assert layers.unexplained_local_imports(ROOT) == []
    for folder in layers.SOURCES:
        (tmp_path / folder).mkdir()
    (tmp_path / "reloc_ros" / "planted.py").write_text(
        "def f():\n    import json\n    import csv  # lazy: a reason\n    # lazy: the reason above\n"
        "    import io\n    return json, csv, io\n")
    assert layers.unexplained_local_imports(tmp_path) == ["reloc_ros/planted.py:2: json"]
