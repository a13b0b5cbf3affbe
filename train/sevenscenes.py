"""Moved to :mod:`reloc_train.experiments.sevenscenes` (``python -m reloc_train.experiments.sevenscenes``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.sevenscenes", new="reloc_train.experiments.sevenscenes")
