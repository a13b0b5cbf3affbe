"""The registry of named units and the plugin loader (reloc_ros.core.registry)."""

from __future__ import annotations

import sys

import pytest

from reloc_ros.core.registry import PLUGINS_ENV, PluginError, Registry, load_plugins


def test_units_register_by_name_in_order_and_unknown_names_list_the_known():
    reg = Registry("widget")

    @reg.register("b")
    class B:
        pass

    reg.register("a")(len)
    assert reg.names() == ("b", "a") and list(reg) == ["b", "a"] and len(reg) == 2
    assert reg.get("b") is B and reg["a"] is len and "a" in reg and "c" not in reg
    assert reg.items() == [("b", B), ("a", len)]
    with pytest.raises(ValueError, match=r"unknown widget 'c'; known: b, a"):
        reg.get("c")
    reg.register("a")(len)  # the same unit again (a module imported twice) is fine
    with pytest.raises(ValueError, match=r"widget 'a' is already registered"):
        reg.register("a")(max)


def test_plugins_are_imported_once_by_name_or_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "plugin_one.py").write_text("from reloc_ros.core.registry import Registry\nLOADED = True\n")
    (tmp_path / "plugin_two.py").write_text("LOADED = True\n")
    (tmp_path / "plugin_bad.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PLUGINS_ENV, " plugin_two ,")
    assert load_plugins(["plugin_one", "", "plugin_one"]) == ["plugin_one", "plugin_two"]
    assert sys.modules["plugin_one"].LOADED and sys.modules["plugin_two"].LOADED
    assert load_plugins(["plugin_one"]) == []  # each module once per process
    with pytest.raises(PluginError) as e:
        load_plugins(["plugin_bad"])
    assert str(e.value) == "plugin module 'plugin_bad' could not be imported: RuntimeError: broken on purpose"
    with pytest.raises(PluginError, match=r"'no_such_module_xyz' could not be imported: ModuleNotFoundError"):
        load_plugins(["no_such_module_xyz"])


def test_the_builtin_refiners_are_known_before_they_are_imported():
    from reloc_ros.core.refiners import REFINERS, refiner_names

    assert refiner_names()[:4] == ("none", "pnp", "lm", "dro")
    assert "dro" in REFINERS and REFINERS.get("pnp").row == "sift+pnp"
    with pytest.raises(ValueError, match=r"unknown refiner 'nope'; known: pnp, lm, dro"):
        REFINERS.get("nope")
