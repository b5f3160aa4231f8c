"""Seeds derived from (global seed, sample key, ...) so results never depend on batching or sharding."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends only on `seed` and `parts` (e.g. a sample key and a variant index)."""
    text = "\x1f".join([str(int(seed)), *(str(p) for p in parts)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def rng(seed: int, *parts: object) -> np.random.Generator:
    """A numpy generator seeded by `derive_seed(seed, *parts)`."""
    return np.random.default_rng(derive_seed(seed, *parts))
