"""Moved to :mod:`reloc_ros.mapping.database` (``python -m reloc_ros.mapping.database``); this alias warns once (CHANGELOG.md)."""

from reloc_ros.core.compat import alias

alias(__name__, old="reloc_train.database", new="reloc_ros.mapping.database")
