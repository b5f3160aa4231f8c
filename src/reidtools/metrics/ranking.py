"""CMC, AP and mINP from a block of query-gallery distances, without sorting the gallery.

Every gallery item is, for a query, *good* (a true match that counts), *removed* (junk: taken out of
the ranking, as if absent) or a *negative* (everything else). The ranking is the gallery ordered by
distance, ties broken by gallery order (what a stable sort gives: `np.argsort(kind="stable")`).

Only the ranks of the good items matter for AP and mINP, and only the rank of the first good item
for CMC. So instead of sorting the G gallery items of each query we rank only the kept items that
are no farther than the query's farthest good item (with a useful model, a few hundred out of
tens of thousands); every other item comes after all good items and changes no metric.

Definitions (torchreid `eval_market1501`, the AGW/CAJ/DEEN SYSU/LLCM code, Simple-CCReID):
- CMC@r = 1 if the first good item has rank <= r (the cumulative match clipped to 1);
- AP = (1/P) sum_k k / rank_k over the P good items, k = 1..P (non-interpolated);
- INP = P / rank of the last good item (mINP, Ye et al. 2021);
- queries with no good item are skipped (counted in `num_query`, not in `num_query_valid`);
- identity-deduplicated CMC (SYSU-MM01, LLCM): the ranking of the kept (non-removed) items reduced
  to the first occurrence of each identity; its rank-r hit is whether the query's identity is among
  the first r distinct identities. Its denominator is the number of valid queries, as in the
  reference code (`new_all_cmc.sum(0) / num_valid_q`).
"""

from __future__ import annotations

import numpy as np


_KEY_ROWS, _KEY_COLS = 1 << 14, 1 << 17  # row and column fields of the packed sort key


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """int64 in [0, 2^32) with the order of the float32 values (IEEE sign-magnitude made monotone)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.int32)
    bits = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)
    return bits.astype(np.int64) + (1 << 31)


def rank_block(dist, good_rows, good_cols, removed_of, gallery_codes=None, num_codes: int = 0) -> dict:
    """Per-query results for one block of queries.

    dist: float32 (B, G) (numpy or torch). good_rows/good_cols: the (query row, gallery column)
    pairs that are matches. removed_of(rows, cols): bool array, which of the given pairs are removed
    (junk). gallery_codes: int64 (G,) identity codes 0..num_codes-1, given when the
    identity-deduplicated rank is wanted.
    Returns numpy arrays of length B: `num_pos`, `ap`, `inp` (float64), `first_rank` (1-based rank
    of the first good item, 0 when none), and `dedup_rank` when gallery_codes is given.

    Only the *candidates* are ranked: kept items no farther than the query's farthest good item
    (every item that can precede a good item). They are sorted once, for the whole block, by the
    int64 key (row << 49 | order-preserving distance bits << 17 | column), unique per item, so
    equal distances keep gallery order; an item's rank is then its position within its row. (For
    galleries over 2^17 items: a stable sort of row << 32 | distance bits, same order.)
    """
    d = np.asarray(dist.numpy() if hasattr(dist, "numpy") else dist, dtype=np.float32)
    if np.isnan(d).any():
        raise ValueError("distances contain NaN (features with NaN or infinite values?)")
    B, G = d.shape
    good_rows, good_cols = np.asarray(good_rows, np.int64), np.asarray(good_cols, np.int64)
    num_pos = np.bincount(good_rows, minlength=B).astype(np.int64)
    valid = num_pos > 0
    out = {"num_pos": num_pos, "ap": np.zeros(B), "inp": np.zeros(B), "first_rank": np.zeros(B, np.int64)}
    if gallery_codes is not None:
        out["dedup_rank"] = np.zeros(B, np.int64)
    if not valid.any():
        return out
    farthest = np.full(B, -np.inf, np.float32)
    np.maximum.at(farthest, good_rows, d[good_rows, good_cols])
    flat = np.flatnonzero(d <= farthest[:, None])       # candidates, before dropping removed items
    rows, cols = flat // G, flat % G
    keep = ~np.asarray(removed_of(rows, cols), dtype=bool)
    flat, rows, cols = flat[keep], rows[keep], cols[keep]
    bits = _ordered_bits(d.ravel()[flat] + np.float32(0.0))  # -0.0 -> +0.0: equal distances, equal bits
    if B < _KEY_ROWS and G <= _KEY_COLS:
        # one unique int64 key (row | distance | column): a plain (fast, unstable) sort is exact
        key = np.sort((rows << 49) | (bits << 17) | cols)
        rows, cols = key >> 49, key & ((1 << 17) - 1)
    else:
        order = np.argsort((rows << 32) | bits, kind="stable")
        rows, cols = rows[order], cols[order]
    is_good_map = np.zeros(B * G, dtype=bool)
    is_good_map[good_rows * G + good_cols] = True
    is_good = is_good_map[rows * G + cols]
    row_start = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=B))[:-1]])
    rank = np.arange(len(rows), dtype=np.int64) - row_start[rows] + 1      # 1-based rank within its row
    g_idx = np.flatnonzero(is_good)
    g_rows, g_rank = rows[g_idx], rank[g_idx]
    good_start = np.concatenate([[0], np.cumsum(num_pos)[:-1]])
    k = np.arange(len(g_idx), dtype=np.int64) - good_start[g_rows] + 1     # 1-based index among goods
    ap = np.bincount(g_rows, weights=k / g_rank, minlength=B) / np.maximum(num_pos, 1)
    first = np.zeros(B, np.int64)
    last = np.ones(B, np.int64)
    first[valid] = g_rank[good_start[valid]]
    last[valid] = g_rank[good_start[valid] + num_pos[valid] - 1]
    out["ap"] = np.where(valid, ap, 0.0)
    out["inp"] = np.where(valid, num_pos / last, 0.0)
    out["first_rank"] = first
    if gallery_codes is not None:
        codes = np.asarray(gallery_codes.numpy() if hasattr(gallery_codes, "numpy") else gallery_codes, np.int64)
        before = rank < first[rows]                    # kept items ranked before the first good item
        pairs = np.unique(rows[before].astype(np.int64) * max(1, num_codes) + codes[cols[before]])
        distinct = np.bincount(pairs // max(1, num_codes), minlength=B)
        out["dedup_rank"] = np.where(valid, distinct + 1, 0)
    return out


def concat(parts: list[dict]) -> dict:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}


def summarize(per_query: dict, max_rank: int = 50, dedup: bool = False) -> dict:
    """Dataset-level figures (fractions) from the concatenated per-query results."""
    num_query = len(per_query["num_pos"])
    valid = per_query["num_pos"] > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError("no query has a match in the gallery")
    first = per_query["dedup_rank" if dedup else "first_rank"][valid]
    hits = np.bincount(first, minlength=max_rank + 1)[1:max_rank + 1]  # first hits at rank 1..max_rank
    cmc = (np.cumsum(hits) / n_valid).tolist()
    return {
        "mAP": float(per_query["ap"][valid].mean()),
        "mINP": float(per_query["inp"][valid].mean()),
        "rank1": cmc[0], "rank5": cmc[4] if max_rank >= 5 else None,
        "rank10": cmc[9] if max_rank >= 10 else None,
        "cmc": cmc,
        "num_query": num_query,
        "num_query_valid": n_valid,
    }
