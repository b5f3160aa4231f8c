"""DLCR prediction refinement: re-score a query's top gallery entries with test-time query variants.

DLCR (Siddiqui et al., arXiv 2411.07205, supplementary §8.1 and Table A1 row 6) inpaints every query
with other clothes and ensembles the model's predictions over the variants. The main paper's
Algorithm 1 was not available to this project (only the supplementary is), so the one rule here is
the one the authors released (Simple-CCReID/evaluation/test_reranking.py, `test_reranking_prcc`),
selected as `rule="released"`:

1. views = the original query, then its first N variants (`reid` orders them by variant index;
   the released code took the first 4 entries of an unsorted directory listing);
2. per view, s = cos + 1 to every gallery item, and its top-k (k = 5) gallery entries after junk
   removal; a view's pid -> score map keeps each pid's best score among those k entries;
3. aggregated = the original view's map; then *every* view, the original included, adds
   (s / max s) * s to the pids already in it (max s: that view's best score);
4. each of the original view's top-k gallery entries gets sim = max(aggregated[its pid], sim), and the
   ranking is evaluated again with the protocol's own rule.

Scores are kept as distances for the metrics code: d = 2 - s (d = 1 - cos without re-ranking), so
s = cos + 1 exactly as released; entries the rule does not touch keep their distance bit for bit.

Where `reid` differs from the released code, on purpose: the final step uses the original view's
top-k *after* junk removal (the released code took it before junk removal and then indexed the
aggregated map with it; on PRCC, the only dataset it ran on, no junk exists and the two agree);
queries are aligned by row, not by the position in a dict that skips queries without a match;
queries with no variant keep their original distances (counted in the output); top-k ties are
broken by gallery order (a higher score first, then the lower gallery index).

With re-ranking (k-reciprocal, Zhong et al. 2017), every view's distances are first re-ranked
(each view's query features against the gallery) and the refinement then runs on s = 2 - d_rerank:
re-ranking needs features and neighbourhoods, which the refined scores no longer are, and a
re-ranking applied after the refinement would overwrite the scores the refinement set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from reidtools.metrics import protocols as P

log = logging.getLogger("reidtools")
RULES = ("released",)
_BLOCK_BYTES = 64 << 20


@dataclass
class Views:
    """Variant features and, per query row, the rows of its variants in view order (-1: none)."""

    feats: np.ndarray   # float32 (V, D)
    index: np.ndarray   # int64 (Q, N)

    def take(self, rows: np.ndarray) -> "Views":
        return Views(self.feats, self.index[rows])


# ----------------------------------------------------------------------------- the rule
def _top_k(masked, k: int):
    """(indices, scores) of the k best entries per row of (V, B, G), best first; ties: lower index first.

    A plain top-k on the scores, then a stable re-sort of those k by (score, index); rows whose k-th
    and (k+1)-th scores tie (rare: duplicate images) are redone on unique (score, index) keys.
    """
    import torch

    g = masked.shape[-1]
    vals, idx = torch.topk(masked, min(k + 1, g), dim=-1)
    if g > k:
        tie = vals[..., k - 1] == vals[..., k]
        vals, idx = vals[..., :k], idx[..., :k]
        if tie.any():
            v, b = torch.nonzero(tie, as_tuple=True)
            rows = masked[v, b]
            bits = rows.contiguous().view(torch.int32)
            bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64) + (1 << 31)
            key = bits * g + (g - 1 - torch.arange(g, dtype=torch.int64))
            sel = torch.topk(key, k, dim=-1).indices
            idx[v, b] = sel
            vals[v, b] = rows.gather(1, sel)
    order = torch.argsort(idx, dim=-1)
    idx, vals = idx.gather(-1, order), vals.gather(-1, order)
    order = torch.argsort(vals, dim=-1, descending=True, stable=True)
    return idx.gather(-1, order), vals.gather(-1, order)


def _votes(masked, gallery_pids, present, top: int):
    """The released rule on junk-masked scores (1 + N, B, G): (refined rows (B,), the original view's
    top-k gallery indices (B, k), their refined scores (B, k), -inf where a row has fewer entries)."""
    import torch

    nv, b, g = masked.shape
    idx, s = _top_k(masked, min(int(top), g))
    valid = torch.isfinite(s)
    pid = torch.where(valid, gallery_pids[idx], torch.full_like(idx, -1))
    base = pid[0]                                                           # (B, k) original view
    # per[v, b, j]: view v's score for the pid of the original view's entry j (-inf: not in its top-k)
    match = (pid.unsqueeze(3) == base.unsqueeze(0).unsqueeze(2)) & valid.unsqueeze(3)
    per = torch.where(match, s.unsqueeze(3), torch.tensor(float("-inf"))).amax(2)
    best = s[:, :, 0:1]                                                     # max s of each view
    found = torch.isfinite(per) & (best > 0)
    gain = torch.where(found, per * per / torch.where(best > 0, best, torch.ones_like(best)), torch.zeros_like(per))
    use = torch.cat([torch.ones(1, b, dtype=torch.bool), present.T.to(torch.bool)], 0)
    agg = torch.where(torch.isfinite(per[0]), per[0], torch.zeros_like(per[0])) + (gain * use.unsqueeze(2)).sum(0)
    refined = torch.where(valid[0], torch.maximum(agg, s[0]), s[0])
    rows = present.any(1) if present.shape[1] else torch.zeros(b, dtype=torch.bool)
    return rows, idx[0], refined


def refine_scores(sims, removed, gallery_pids, present, top: int = 5, rule: str = "released"):
    """Refined similarities of one block of queries.

    sims: float32 tensor (1 + N, B, G), view 0 the original query; removed: bool (B, G) junk of the
    protocol; gallery_pids: int64 (G,); present: bool (B, N), whether query b has its view n.
    Returns (refined sims (B, G) of view 0, refined rows bool (B,), top-k gallery indices (B, k),
    refined scores there (B, k)). Rows without any present view are returned unchanged.
    """
    import torch

    if rule not in RULES:
        raise ValueError(f"unknown refinement rule {rule!r} (expected one of {', '.join(RULES)})")
    masked = sims.masked_fill(removed.unsqueeze(0), float("-inf"))
    rows, idx, refined = _votes(masked, gallery_pids, present, top)
    out = sims[0].clone()
    r, c = torch.nonzero(rows.unsqueeze(1) & torch.isfinite(refined), as_tuple=True)
    out[r, idx[r, c]] = refined[r, c]
    return out, rows, idx, refined


# ----------------------------------------------------------------------------- distances
def _removed(protocol: P.Protocol, qb: dict, gt: dict) -> np.ndarray:
    """The protocol's junk mask (B, G) for a block of queries: its own rule, given (B, 1) query and
    (1, G) gallery arrays (rules take broadcastable pair arrays); rules written for 1-d query and
    gallery arrays are called with those."""
    b, g = len(next(iter(qb.values()))), len(next(iter(gt.values())))
    try:
        removed = np.asarray(protocol.rule({k: v[:, None] for k, v in qb.items()},
                                           {k: v[None, :] for k, v in gt.items()})[1], dtype=bool)
    except (ValueError, IndexError):
        removed = None
    if removed is None or removed.shape != (b, g):
        removed = np.asarray(protocol.rule(qb, gt)[1], dtype=bool)
    return np.broadcast_to(removed, (b, g)).copy()


def refined_distances(qf: np.ndarray, gf: np.ndarray, views: Views, q: P.Meta, g: P.Meta, protocol: P.Protocol,
                      *, top: int = 5, rule: str = "released", rerank: dict | None = None, refine: bool = True,
                      block_bytes: int = _BLOCK_BYTES):
    """A callable (start, stop) -> float32 distances (stop - start, G) for `rank_trial`.

    Distances are 1 - cos (or the re-ranked distance), and 2 - refined score for the entries the
    rule changes. With refine=False the callable gives the plain distances (the rule is skipped).
    """
    import torch

    from reidtools.metrics.distance import block_distance, prepare

    if rule not in RULES:
        raise ValueError(f"unknown refinement rule {rule!r} (expected one of {', '.join(RULES)})")
    qt, gt, _ = P._arrays(q, g, protocol.needs)
    _, gpid, _ = P._codes(q.pid, g.pid)
    gpid = torch.from_numpy(np.ascontiguousarray(gpid, dtype=np.int64))
    present = views.index >= 0
    nviews = views.index.shape[1]
    qx, gx = prepare(qf, "cosine"), prepare(gf, "cosine")
    vx = prepare(views.feats, "cosine") if len(views.feats) else None
    gxt = gx.T.contiguous()
    rr = None
    if rerank is not None:
        from reidtools.metrics.rerank import rerank_blocks

        opts = {k: rerank[k] for k in ("k1", "k2", "lambda", "max_bytes") if k in rerank}
        rr = [rerank_blocks(qf, gf, distance="cosine", **opts)]
        for v in range(1, nviews + 1):
            sel = present[:, v - 1]
            if refine and sel.any():
                feats = qx.clone()   # queries without this view keep their own row (masked out later)
                feats[torch.from_numpy(np.flatnonzero(sel))] = vx[torch.from_numpy(views.index[sel, v - 1])]
                rr.append(rerank_blocks(feats.numpy(), gf, distance="cosine", **opts))
            else:
                rr.append(None)

    rows_per = int(max(1, min(1024, block_bytes // max(1, (1 + nviews) * len(g) * 8))))

    def distances(start: int, stop: int):
        d0 = rr[0](start, stop) if rr is not None else block_distance(qx[start:stop], gx, "cosine")
        d0 = d0 if isinstance(d0, torch.Tensor) else torch.from_numpy(np.asarray(d0, np.float32))
        if not refine or nviews == 0 or not present[start:stop].any():
            return d0
        with torch.inference_mode():
            for a in range(start, stop, rows_per):
                b = min(a + rows_per, stop)
                pres = present[a:b]
                if not pres.any():
                    continue
                sims = torch.empty(1 + nviews, b - a, len(g), dtype=torch.float32)
                torch.mul(d0[a - start:b - start], -1.0, out=sims[0]).add_(2.0)    # s = 2 - d = cos + 1
                for v in range(1, nviews + 1):
                    if not pres[:, v - 1].any():
                        sims[v].fill_(float("-inf"))
                    elif rr is not None:
                        sims[v].copy_(rr[v](a, b)).neg_().add_(2.0)
                    else:   # a missing view's rows are computed from some variant and masked by `present`
                        rows = torch.from_numpy(np.maximum(views.index[a:b, v - 1], 0))
                        torch.matmul(vx[rows], gxt, out=sims[v])
                        sims[v].add_(1.0)
                removed = torch.from_numpy(_removed(protocol, {k: val[a:b] for k, val in qt.items()}, gt))
                if removed.any():
                    sims.masked_fill_(removed.unsqueeze(0), float("-inf"))
                rows, idx, refined = _votes(sims, gpid, torch.from_numpy(pres), top)
                r, c = torch.nonzero(rows.unsqueeze(1) & torch.isfinite(refined), as_tuple=True)
                d0[a - start + r, idx[r, c]] = 2.0 - refined[r, c]
        return d0

    return distances


# ----------------------------------------------------------------------------- evaluation
def evaluate_refined(qf: np.ndarray, gf: np.ndarray, q: P.Meta, g: P.Meta, views: Views, protocol: str, *,
                     top: int = 5, rule: str = "released", seed: int = 0, num_trials: int = 10,
                     prcc_query: str = "cc", prcc_gallery: str = "multi-shot", rerank: dict | None = None,
                     max_rank: int = 50, progress: bool = False, refine: bool = True) -> dict:
    """Refined metrics in `reid eval`'s JSON schema (same protocols, trials and junk rule).

    Each trial's query/gallery selection is the protocol's; the refinement's top-k is taken within
    that trial's gallery. Raises ValueError for input the protocol cannot evaluate.
    """
    proto = P.PROTOCOLS[protocol]
    opts = {"seed": seed, "num_trials": num_trials, "prcc_query": prcc_query, "prcc_gallery": prcc_gallery}
    trials = proto.trials(q, g, opts)
    results = []
    for t, (qi, gi) in enumerate(trials):
        if len(qi) == 0 or len(gi) == 0:
            raise ValueError(f"protocol {protocol}: the {'query' if len(qi) == 0 else 'gallery'} set is empty"
                             + P._subset_hint(proto, opts))
        qs, gs = q.take(qi), g.take(gi)
        fn = refined_distances(qf[qi], gf[gi], views.take(qi), qs, gs, proto, top=top, rule=rule, rerank=rerank,
                               refine=refine)
        res = P.rank_trial(None, None, qs, gs, proto, distances=fn, max_rank=max_rank, progress=progress)
        if len(trials) > 1:
            res["trial"], res["seed"] = t, seed + t
        results.append(res)
    return _combine(results, protocol, opts, rerank)


def _combine(results: list[dict], protocol: str, opts: dict, rerank: dict | None) -> dict:
    """The trials' figures as one `reid eval` result (refinement scores are cosine-based)."""
    return P.combine_trials(results, protocol, distance="cosine", prcc_query=opts["prcc_query"],
                          prcc_gallery=opts["prcc_gallery"], rerank=rerank)


def coverage(views: Views, rows: np.ndarray | None = None) -> dict:
    """How many (selected) queries have variants, and how many views are used."""
    index = views.index if rows is None else views.index[rows]
    used = (index >= 0).sum(1)
    return {"queries": int(len(index)), "queries_refined": int((used > 0).sum()),
            "queries_unrefined": int((used == 0).sum()),
            "queries_partial": int(((used > 0) & (used < index.shape[1])).sum()),
            "views_used": int(used.sum())}
