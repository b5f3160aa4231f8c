"""Which person wears which catalogue garment (HSGL SHSG), and the hard-pair counts of eq. 3.

HSGL §3.2.1: "we select n photographs with optimal evaluation results for each identity, combined
with m garments from our clothing repository, generating m x n virtual try-on images" per identity.
With C identities, K_i original images of identity i, eq. 3 counts (ordered pairs, generated anchor):

    N_HP = sum_i m n (K_i + m n - 1)      each generated image of i against the K_i originals and
                                          the other mn - 1 generated images of i
    N_HN = m n C * n (C - 1)              each of the mnC generated images against the n(C - 1)
                                          images of other identities wearing the same garment

`reidtools.reid.pairs.hard_pair_counts` counts the same pairs from metadata (its `n_hp_generated`,
`n_hn_generated`); the two agree when the generated images' clothes ids are the garment ids (never
a dataset's own clothes id) and no two generated images of one identity share garment and camera.
"""

from __future__ import annotations

from collections import OrderedDict


def eq3_counts(images_per_id: dict, m: int, n: int) -> dict:
    """HSGL eq. 3 for identities with K_i = images_per_id[pid] originals; m garments, n images per id."""
    c = len(images_per_id)
    n_hp = sum(m * n * (k + m * n - 1) for k in images_per_id.values())
    n_hn = m * n * c * n * (c - 1)
    return {"n_hp": n_hp, "n_hn": n_hn}


def select_pairs(persons: list[tuple], garments: list[str], *,
                 per_id: int | None = None, garments_per: int | None = None) -> list[tuple[str, str]]:
    """(person key, garment id) pairs to generate, in a deterministic order.

    `persons`: (key, pid, quality or None) in input order; quality is a number or a tuple sort key
    (larger = better, as `reid filter --rank-by` ranks). `per_id=None` and `garments_per=None` is
    `--pairs all` (every person x every garment). Otherwise each identity keeps its `per_id` best
    images (highest `quality`; input order breaks ties and stands in when there is no score) and
    wears the first `garments_per` catalogue garments — the same garments for every identity, as
    eq. 3 assumes, so each garment is shared by all identities (hard negatives)."""
    if garments_per is not None:
        if garments_per < 1:
            raise ValueError("garments_per must be >= 1")
        garments = garments[:garments_per]
    by_id: "OrderedDict[int, list]" = OrderedDict()
    for order, (key, pid, quality) in enumerate(persons):
        q = quality if isinstance(quality, tuple) else (quality if quality is not None else 0.0,)
        by_id.setdefault(pid, []).append((tuple(-v for v in q), order, key))
    chosen = []
    for pid, items in by_id.items():
        items = sorted(items)[:per_id] if per_id is not None else sorted(items, key=lambda t: t[1])
        chosen += [key for _, _, key in sorted(items, key=lambda t: t[1])]
    return [(key, g) for key in chosen for g in garments]
