"""Named units that register themselves: refiners, fusion methods, and what comes next
(local-feature matchers, publish checks).

Each kind of unit has one :class:`Registry`. A unit is one module that defines a class (or a
function) and registers it under its name::

    from reloc_ros.core.refiners import REFINERS, Refiner

    @REFINERS.register("my_refiner")
    class MyRefiner(Refiner):
        ...

The localizer, the calibration, the evaluator and the node look units up by the name in
their configuration (``REFINERS.get(cfg.refiner)``) and never branch on it.

Units outside this package are *plugins*: modules imported before the registries are
read. :func:`load_plugins` imports

* the modules it is given: the node's ``plugins`` parameter, the commands' ``--plugin``
  option, and the ``RELOC_ROS_PLUGINS`` environment variable (comma-separated), and
* every module registered under the ``reloc_ros.plugins`` entry-point group of installed
  packages (``[project.entry-points."reloc_ros.plugins"] my_unit = "my_pkg.my_unit"``).

``docs/extending.md`` shows a whole plugin.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterable, TypeVar

__all__ = ["Registry", "PluginError", "load_plugins", "ENTRY_POINT_GROUP", "PLUGINS_ENV"]

T = TypeVar("T")
ENTRY_POINT_GROUP = "reloc_ros.plugins"
PLUGINS_ENV = "RELOC_ROS_PLUGINS"


class PluginError(RuntimeError):
    """A plugin module that cannot be imported; ``str(err)`` is one line naming it."""


class Registry(Generic[T]):
    """Units of one kind, by name.

    Args:
        kind: what the units are, for messages ("refiner", "fusion method").
        builtin: ``{name: module}`` of units that are imported when first asked for (so a
            process pays only for the ones it uses); they are listed first by :meth:`names`.
    """

    def __init__(self, kind: str, builtin: dict[str, str] | None = None):
        self.kind = kind
        self._units: dict[str, T] = {}
        self.builtin = dict(builtin or {})

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its class or function under ``name`` (and returns it
        unchanged). Registering a name twice with different units is an error."""

        def add(unit: T) -> T:
            old = self._units.get(name)
            if old is not None and old is not unit and getattr(old, "__qualname__", None) != getattr(
                    unit, "__qualname__", object()):
                raise ValueError(f"{self.kind} {name!r} is already registered ({old!r})")
            self._units[name] = unit
            return unit

        return add

    def get(self, name: str) -> T:
        """The unit registered under ``name``; a ValueError that lists the known names if none."""
        if name in self.builtin and name not in self._units:
            importlib.import_module(self.builtin[name])
        try:
            return self._units[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} "
                             "(a plugin module adds more: docs/extending.md)") from None

    def names(self) -> tuple[str, ...]:
        """The built-in names, then the others in the order they were registered."""
        return tuple(self.builtin) + tuple(n for n in self._units if n not in self.builtin)

    def items(self):
        """``(name, unit)`` pairs, in the order they were registered."""
        return [(n, self.get(n)) for n in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._units or name in self.builtin

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


_loaded: set[str] = set()


def load_plugins(modules: Iterable[str] = (), entry_point_group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Import plugin modules so that their units register themselves.

    Args:
        modules: dotted module names to import (empty strings are skipped).
        entry_point_group: also import every module of this entry-point group, and those
            named in the ``RELOC_ROS_PLUGINS`` environment variable.

    Returns:
        The modules imported by this call (each module is imported once per process).

    Raises:
        PluginError: a module cannot be imported (one line: the module and the reason).
    """
    names = [m.strip() for m in modules if m and m.strip()]
    names += [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    names += [ep.value.split(":")[0] for ep in entry_points(group=entry_point_group)]
    done = []
    for name in dict.fromkeys(names):
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # any failure of a user's module is reported the same way
            raise PluginError(f"plugin module {name!r} could not be imported: {type(e).__name__}: {e}") from None
        _loaded.add(name)
        done.append(name)
    return done
