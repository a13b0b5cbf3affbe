"""Random streams of the synthetic scene generator.

Every random choice comes from a :class:`numpy.random.SeedSequence` made of a tag (which
stream: room, viewpoints, camera path, frame noise), the base seed, the layout seed and the
sequence / frame numbers, so that the same seed writes byte-identical files whatever the
number of worker processes and whatever else was drawn before.
"""

from __future__ import annotations

import numpy as np

# SeedSequence tags: which random stream a seed feeds.
TAG_ROOM, TAG_VIEWPOINTS, TAG_PATH, TAG_FRAME, TAG_RELIGHT, TAG_FAMILY = 11, 12, 13, 14, 15, 16


def seed_sequence(*words: int) -> np.random.SeedSequence:
    """The seed sequence of some non-negative integers (a tag first, then seeds and numbers).

    Args:
        words: the integers (>= 0) that pick the stream.
    """
    for w in words:
        if int(w) < 0:
            raise ValueError(f"seeds must be >= 0, got {w}")
    return np.random.SeedSequence([int(w) for w in words])


def make_rng(*words: int) -> np.random.Generator:
    """A random generator seeded with :func:`seed_sequence` of ``words``."""
    return np.random.default_rng(seed_sequence(*words))
