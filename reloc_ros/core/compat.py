"""Old command and module names that keep working after a move, with one warning each.

A module that moved leaves an alias file at its old path::

    from reloc_ros.core.compat import alias
    alias(__name__, old="reloc_train.database", new="reloc_ros.mapping.database")

``python -m OLD`` then runs ``python -m NEW`` (same arguments), and ``import OLD`` gives the
new module; either way the process prints one warning that names the new place. Every alias
is listed in ``CHANGELOG.md``. The target is imported by name, so an alias never adds an
import edge between layers (``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
import runpy
import sys

__all__ = ["alias", "warn_renamed"]

_warned: set[str] = set()


def warn_renamed(old: str, new: str, what: str = "command") -> None:
    """Warn once per process that ``old`` is now ``new``."""
    if old in _warned:
        return
    _warned.add(old)
    print(f"warning: {what} {old} was renamed {new}; the old name still works but will be removed "
          "(CHANGELOG.md)", file=sys.stderr, flush=True)


def alias(module_name: str, old: str, new: str) -> None:
    """Make the module ``module_name`` (the alias file's ``__name__``) stand for ``new``.

    Args:
        module_name: ``__name__`` of the alias file: ``"__main__"`` when run with ``python -m``.
        old: the old dotted name (for the warning).
        new: the dotted name of the module that took its place.
    """
    if module_name == "__main__":
        warn_renamed(f"python -m {old}", f"python -m {new}")
        sys.argv[0] = new
        runpy.run_module(new, run_name="__main__", alter_sys=True)
        return
    warn_renamed(old, new, "module")
    sys.modules[module_name] = importlib.import_module(new)
