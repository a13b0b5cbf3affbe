"""Moved to :mod:`reloc_train.experiments.attention` (``python -m reloc_train.experiments.attention``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.attention", new="reloc_train.experiments.attention")
