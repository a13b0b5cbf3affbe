"""Moved to :mod:`reloc_ros.eval.evaluate` (``python -m reloc_ros.eval.evaluate``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_ros.tools.evaluate", new="reloc_ros.eval.evaluate")
