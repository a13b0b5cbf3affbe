"""Moved to :mod:`reloc_train.experiments.aux_table` (``python -m reloc_train.experiments.aux_table``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.aux_experiment", new="reloc_train.experiments.aux_table")
