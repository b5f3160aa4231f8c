"""CMC, AP and mINP from a block of query-gallery distances, without sorting the gallery.

Every gallery item is, for a query, *good* (a true match that counts), *removed* (junk: taken out of
the ranking, as if absent) or a *negative* (everything else). The ranking is the gallery ordered by
distance, ties broken by gallery order (what a stable sort gives: `np.argsort(kind="stable")`).

Only the ranks of the good items matter for AP and mINP, and only the rank of the first good item
for CMC. So instead of sorting the G gallery items of each query (G log G) we sort its few good
items and place every negative among them with one binary search (G log P): the rank of the k-th
good item (0-based) is k + 1 + the number of negatives that come before it. Ties are made exact by
comparing int64 keys (order-preserving float32 bits << 32 | gallery index), which are all distinct.

Definitions (torchreid `eval_market1501`, the AGW/CAJ/DEEN SYSU/LLCM code, Simple-CCReID):
- CMC@r = 1 if the first good item has rank <= r (the cumulative match clipped to 1);
- AP = (1/P) sum_k (k+1) / rank_k over the P good items (non-interpolated);
- INP = P / rank of the last good item (mINP, Ye et al. 2021);
- queries with no good item are skipped (counted in `num_query`, not in `num_query_valid`);
- identity-deduplicated CMC (SYSU-MM01, LLCM): the ranking of the kept (non-removed) items reduced
  to the first occurrence of each identity; its rank-r hit is whether the query's identity is among
  the first r distinct identities. Its denominator is the number of valid queries, as in the
  reference code (`new_all_cmc.sum(0) / num_valid_q`).
"""

from __future__ import annotations

import numpy as np

_INT64_MAX = (1 << 63) - 1


def order_keys(dist):
    """int64 keys whose order is (distance, gallery index), for a float32 (B, G) tensor."""
    import torch

    d = dist.contiguous().to(torch.float32) + 0.0  # -0.0 -> +0.0, so equal distances get equal bits
    bits = d.view(torch.int32)
    # IEEE floats order like sign-magnitude integers; flip the magnitude of negatives
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    idx = torch.arange(d.shape[1], dtype=torch.int64)
    return (bits.to(torch.int64) << 32) | idx


def rank_block(dist, good, removed, gallery_codes=None, num_codes: int = 0) -> dict:
    """Per-query results for one block of queries.

    dist: float32 (B, G); good, removed: bool (B, G), disjoint. gallery_codes: int64 (G,) identity
    codes 0..num_codes-1, given when the identity-deduplicated rank is wanted.
    Returns numpy arrays of length B: `num_pos`, `ap`, `inp` (float64), `first_rank` (1-based rank
    of the first good item, 0 when none), and `dedup_rank` when gallery_codes is given.
    """
    import torch

    if dist.dtype != torch.float32:
        dist = dist.to(torch.float32)
    if torch.isnan(dist).any():
        raise ValueError("distances contain NaN (features with NaN or infinite values?)")
    B = dist.shape[0]
    keys = order_keys(dist)
    num_pos = good.sum(1)
    pmax = int(num_pos.max()) if B else 0
    out = {"num_pos": num_pos.numpy().astype(np.int64)}
    if pmax == 0:
        zeros = np.zeros(B)
        out.update(ap=zeros, inp=zeros.copy(), first_rank=np.zeros(B, np.int64))
        if gallery_codes is not None:
            out["dedup_rank"] = np.zeros(B, np.int64)
        return out
    good_keys = torch.where(good, keys, torch.full_like(keys, _INT64_MAX))
    good_keys = torch.topk(good_keys, pmax, dim=1, largest=False, sorted=True).values  # (B, P)
    negative = ~(good | removed)
    # pos[j] = number of good items before item j; a negative with pos p precedes goods p, p+1, ...
    pos = torch.searchsorted(good_keys, keys)
    hist = torch.zeros(B, pmax + 1, dtype=torch.int64).scatter_add_(1, pos, negative.to(torch.int64))
    negs_before = hist.cumsum(1)[:, :pmax]                          # (B, P): negatives before good k
    k = torch.arange(1, pmax + 1, dtype=torch.int64)
    ranks = (negs_before + k).to(torch.float64)                     # 1-based ranks of the good items
    is_pos = k.unsqueeze(0) <= num_pos.unsqueeze(1)
    npos = num_pos.to(torch.float64)
    safe = npos.clamp(min=1)
    ap = torch.where(is_pos, k.to(torch.float64) / ranks, torch.zeros_like(ranks)).sum(1) / safe
    last = (num_pos - 1).clamp(min=0).unsqueeze(1)
    inp = npos / ranks.gather(1, last).squeeze(1)
    valid = num_pos > 0
    first = torch.where(valid, ranks[:, 0].to(torch.int64), torch.zeros(B, dtype=torch.int64))
    out.update(ap=torch.where(valid, ap, 0.0).numpy(), inp=torch.where(valid, inp, 0.0).numpy(),
               first_rank=first.numpy())
    if gallery_codes is not None:
        before = (keys < good_keys[:, :1]) & ~removed          # kept items ranked before the first good
        seen = torch.zeros(B, max(1, num_codes), dtype=torch.int64)
        seen.scatter_add_(1, gallery_codes.unsqueeze(0).expand(B, -1), before.to(torch.int64))
        distinct = (seen > 0).sum(1)
        out["dedup_rank"] = torch.where(valid, distinct + 1, torch.zeros_like(distinct)).numpy()
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
