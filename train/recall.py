"""Moved to :mod:`reloc_train.experiments.recall` (``python -m reloc_train.experiments.recall``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.recall", new="reloc_train.experiments.recall")
