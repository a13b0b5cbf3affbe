"""Moved to :mod:`reloc_train.experiments.table3` (``python -m reloc_train.experiments.table3``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.benchmark", new="reloc_train.experiments.table3")
