"""PK sampling: P identities x K images per batch, no identity twice in a batch, deterministic per
(seed, epoch) — the RandomIdentitySampler of BoT / Simple-CCReID, with an explicit generator."""

from __future__ import annotations

from collections import defaultdict

from reidtools.errors import ReidError
from reidtools.seeding import rng


def pk_batches(labels: list[int], p: int, k: int, *, seed: int, epoch: int,
               indices: list[int] | None = None) -> list[list[int]]:
    """Batches (lists of indices) for one epoch.

    Each identity's images are shuffled and cut into chunks of K (an identity with fewer than K
    images is drawn with replacement up to K; a last incomplete chunk is dropped, as in BoT); batches
    then take one chunk from each of P distinct identities chosen at random until fewer than P
    identities have chunks left. `indices` restricts sampling to a subset (labels are indexed by it).
    """
    if p < 1 or k < 1:
        raise ReidError(f"--batch {p}x{k}: P and K must be positive")
    indices = list(range(len(labels))) if indices is None else list(indices)
    by_id: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        by_id[labels[i]].append(i)
    if len(by_id) < p:
        raise ReidError(f"--batch {p}x{k}: only {len(by_id)} identities in the training data; lower P")
    gen = rng(seed, "pk", epoch)
    chunks: dict[int, list[list[int]]] = {}
    for pid in sorted(by_id):
        idx = by_id[pid]
        if len(idx) < k:
            idx = [idx[j] for j in gen.choice(len(idx), size=k, replace=True)]
        else:
            idx = [idx[j] for j in gen.permutation(len(idx))]
        chunks[pid] = [idx[s:s + k] for s in range(0, len(idx) - k + 1, k)]
    batches: list[list[int]] = []
    avail = sorted(pid for pid in chunks if chunks[pid])
    while len(avail) >= p:
        chosen = [avail[j] for j in gen.choice(len(avail), size=p, replace=False)]
        batch: list[int] = []
        for pid in chosen:
            batch.extend(chunks[pid].pop(0))
        batches.append(batch)
        avail = [pid for pid in avail if chunks[pid]]
    return batches
