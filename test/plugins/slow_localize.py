"""A test plugin, loaded by the node through its ``plugins`` parameter: every localization
takes at least the number of seconds written in the file that ``RELOC_TEST_SLOW_FILE``
names (no file, or 0: no slowdown). The test writes the file while the node runs, so frames
pile up, and are dropped, when it chooses, on any machine.

It wraps :meth:`reloc_ros.core.localizer.Localizer.localize`, the one call the node's worker
makes per frame, so it does not depend on the refiner API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reloc_ros.core.localizer import Localizer

#: The file holding the minimum seconds per localization.
SLOW_FILE = os.environ.get("RELOC_TEST_SLOW_FILE", "")
_localize = Localizer.localize


def min_seconds() -> float:
    """The slowdown now (0 without the file)."""
    try:
        return float(Path(SLOW_FILE).read_text()) if SLOW_FILE else 0.0
    except (OSError, ValueError):
        return 0.0


def slow_localize(self, *args, **kwargs):
    """:meth:`Localizer.localize`, then a sleep up to :func:`min_seconds` in all."""
    t0 = time.monotonic()
    result = _localize(self, *args, **kwargs)
    rest = min_seconds() - (time.monotonic() - t0)
    if rest > 0:
        time.sleep(rest)
    return result


Localizer.localize = slow_localize
