"""DLCR progressive learning: pair each real image of a batch with one of its generated variants,
from a pool of eligible variants that grows with the epoch (DLCR supplementary §14, Table A1 row 5).

Defaults follow DLCR's released configuration: thresholds at epochs [5, 10, 15] with fractions
[0.25, 0.5, 0.75] of each image's variants, then all of them. Epochs count from 0: epochs 0-4 use
0.25, 5-9 use 0.5, 10-14 use 0.75, 15 onwards 1.0. A fraction admits the first ceil(f x n) of an
image's n variants (at least one), in variant order (see data.assign_variants).
"""

from __future__ import annotations

import math

from reidtools.errors import ReidError
from reidtools.seeding import rng

DEFAULT_THRESHOLDS = (5, 10, 15)
DEFAULT_FRACTIONS = (0.25, 0.5, 0.75)


def check_schedule(thresholds, fractions) -> None:
    if len(thresholds) != len(fractions):
        raise ReidError("--progressive-epochs and --progressive-fractions must have the same length")
    if list(thresholds) != sorted(thresholds):
        raise ReidError("--progressive-epochs must be increasing")
    if any(not 0.0 < f <= 1.0 for f in fractions):
        raise ReidError("--progressive-fractions must be in (0, 1]")


def eligible_fraction(epoch: int, thresholds=DEFAULT_THRESHOLDS, fractions=DEFAULT_FRACTIONS) -> float:
    for t, f in zip(thresholds, fractions):
        if epoch < t:
            return float(f)
    return 1.0


def eligible_count(n_variants: int, fraction: float) -> int:
    if n_variants == 0:
        return 0
    return min(n_variants, max(1, math.ceil(fraction * n_variants - 1e-9)))


def pair_variants(real_keys: list[str], variants: dict[str, list[int]], epoch: int, *, seed: int,
                  batch_index: int, thresholds=DEFAULT_THRESHOLDS, fractions=DEFAULT_FRACTIONS) -> list[int]:
    """For each real key of a batch, the record index of one eligible variant (drawn uniformly,
    seeded by (seed, epoch, batch, slot)); real images with no variant get none."""
    frac = eligible_fraction(epoch, thresholds, fractions)
    out: list[int] = []
    for slot, key in enumerate(real_keys):
        pool = variants.get(key, [])
        n = eligible_count(len(pool), frac)
        if n == 0:
            continue
        j = int(rng(seed, "pair", epoch, batch_index, slot, key).integers(0, n))
        out.append(pool[j])
    return out
