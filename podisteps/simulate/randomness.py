"""Reproducible random streams: one independent generator per purpose, derived from the night seed.

Every random quantity is drawn from a generator keyed by the night seed and a label (and e.g. the
exposure name and OTA), so rendering one exposure alone (``--only``) gives the same bytes as rendering
it within the whole night, and the order of rendering does not matter.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["rng_for"]


def _key(part) -> int:
    if isinstance(part, (int, np.integer)):
        return int(part) & 0xFFFFFFFF
    return zlib.crc32(str(part).encode("utf-8"))


def rng_for(seed: int, *labels) -> np.random.Generator:
    """Return a generator for ``seed`` and a purpose given by ``labels``.

    Parameters
    ----------
    seed : int
        The night seed (non-negative).
    *labels : str or int
        What the stream is for, e.g. ``("noise", "o20131005T020000.0", 33)``; strings are hashed with
        CRC-32 (stable across runs, unlike ``hash``).

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(_key(p) for p in labels)]))
