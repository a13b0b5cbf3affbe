"""Moved to :mod:`reloc_ros.eval.calibrate` (``python -m reloc_ros.eval.calibrate``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.calibrate", new="reloc_ros.eval.calibrate")
