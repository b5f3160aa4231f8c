"""Benchmark protocols: which gallery items count as matches, which are removed, which trials run.

Each protocol is a rule that marks, for every (query, gallery) pair, *good* (a match that counts),
*removed* (junk, taken out of the ranking) or negative; a gallery/query selection (possibly random,
one per trial); and whether CMC is identity-deduplicated. `ranking.rank_block` turns that into
CMC/AP/mINP without sorting the gallery. Sources per protocol are in each rule's docstring.

Query and gallery sets are the shards the user passes (QUERY_SHARDS and --gallery), not the `split`
field. Protocols that need a camera or modality subset (prcc, sysu-*, llcm-*) select it from those
sets, so the same test shards may be passed as both.

Random selections (one gallery image per identity and camera) follow the reference code exactly:
`random.seed(trial)`, then for each identity in ascending order and each camera in ascending order,
`random.choice` over that identity-camera's images sorted by name. `reid` sorts by sample key, so
with keys that sort like the original file names (as `reid pack` writes them) the galleries are the
same images as in the AGW/CAJ/DEEN/LLCM code; trial t uses seed `seed + t` (default seed 0: 0..9).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reidtools.metrics import ranking

log = logging.getLogger("reidtools")


@dataclass
class Meta:
    """Metadata arrays of one sample set, aligned with its feature rows."""

    keys: list[str]
    pid: np.ndarray                       # int64
    camid: np.ndarray | None = None       # int64
    clothes: np.ndarray | None = None     # object (str)
    modality: np.ndarray | None = None    # object (str)
    where: list[tuple[str, str]] = field(default_factory=list)  # (shard, key) per row, for messages
    tracklet: list[str] | None = None     # rows pooled over tracklets: each row's tracklet name

    def __len__(self) -> int:
        return len(self.pid)

    def take(self, idx: np.ndarray) -> "Meta":
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return Meta([self.keys[i] for i in idx], self.pid[idx], pick(self.camid), pick(self.clothes),
                    pick(self.modality), [self.where[i] for i in idx] if self.where else [],
                    None if self.tracklet is None else [self.tracklet[i] for i in idx])


# ----------------------------------------------------------------------------- rules
# A rule maps aligned (query, gallery) metadata of pairs -- dicts of int64 numpy arrays of the same
# shape, or broadcastable ones -- to (good, removed) boolean arrays. Good pairs always share the pid.

def _same(qt: dict, gt: dict, name: str):
    return qt[name] == gt[name]


def rule_market(qt: dict, gt: dict):
    """Market-1501 rule (Market-1501 devkit; torchreid `eval_market1501`): for each query, gallery
    items with the same pid and the same camid are removed; the other same-pid items are good."""
    same_pid, same_cam = _same(qt, gt, "pid"), _same(qt, gt, "camid")
    removed = same_pid & same_cam
    return same_pid & ~same_cam, removed


def rule_cc(qt: dict, gt: dict):
    """Clothes-changing rule (Simple-CCReID `evaluate_with_clothes(mode='CC')`): good = same pid,
    different camera, different clothes; removed = same pid and (same camera or same clothes)."""
    same_pid, same_cam, same_cl = _same(qt, gt, "pid"), _same(qt, gt, "camid"), _same(qt, gt, "clothes")
    removed = same_pid & (same_cam | same_cl)
    return same_pid & ~same_cam & ~same_cl, removed


def rule_sc(qt: dict, gt: dict):
    """Same-clothes rule (Simple-CCReID `evaluate_with_clothes(mode='SC')`): good = same pid,
    different camera, same clothes; removed = same pid and (same camera or different clothes)."""
    same_pid, same_cam, same_cl = _same(qt, gt, "pid"), _same(qt, gt, "camid"), _same(qt, gt, "clothes")
    removed = same_pid & (same_cam | ~same_cl)
    return same_pid & ~same_cam & same_cl, removed


def rule_sysu(qt: dict, gt: dict):
    """SYSU-MM01 rule (AGW `eval_sysu`, reused by CAJ and DEEN): for a camera-3 query every camera-2
    gallery image is removed (whatever its pid: cameras 2 and 3 share a room); good = same pid among
    the rest. Nothing else is removed (the gallery holds no IR image, so no same-camera match)."""
    removed = (qt["camid"] == 3) & (gt["camid"] == 2)
    return _same(qt, gt, "pid") & ~removed, removed


def rule_llcm(qt: dict, gt: dict):
    """LLCM rule (LLCM/DEEN `eval_llcm`): gallery items with the same pid and the same camid as the
    query are removed; the other same-pid items are good."""
    return rule_market(qt, gt)


# ----------------------------------------------------------------------------- selections
def _one_per(meta: Meta, cameras: list[int] | None, seed: int) -> np.ndarray:
    """One random item per (pid, camera) (per pid when cameras is None), as the reference code draws
    it: random.seed(seed); ascending pids; cameras in ascending order; choice over sorted names."""
    rng = random.Random(seed)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(meta)):
        cam = -1 if cameras is None else int(meta.camid[i])
        groups.setdefault((int(meta.pid[i]), cam), []).append(i)
    cams = [-1] if cameras is None else sorted(cameras)
    chosen = []
    for pid in sorted({p for p, _ in groups}):
        for cam in cams:
            members = groups.get((pid, cam))
            if members:
                chosen.append(rng.choice(sorted(members, key=lambda i: meta.keys[i])))
    return np.asarray(chosen, dtype=np.int64)


def _where(values: np.ndarray, allowed) -> np.ndarray:
    return np.flatnonzero(np.isin(values, list(allowed)))


@dataclass
class Protocol:
    name: str
    rule: Callable
    needs: tuple[str, ...]
    dedup: bool = False
    doc: str = ""

    def trials(self, q: Meta, g: Meta, opts: dict) -> list[tuple[np.ndarray, np.ndarray]]:
        """(query rows, gallery rows) per trial."""
        return [(np.arange(len(q)), np.arange(len(g)))]


class _Prcc(Protocol):
    def trials(self, q, g, opts):
        qcam = {"sc": 2, "cc": 3}[opts.get("prcc_query", "cc")]
        qi, gi = _where(q.camid, [qcam]), _where(g.camid, [1])
        if opts.get("prcc_gallery", "multi-shot") == "multi-shot":
            return [(qi, gi)]
        seed, n = opts.get("seed", 0), opts.get("num_trials", 10)
        sub = g.take(gi)
        return [(qi, gi[_one_per(sub, None, seed + t)]) for t in range(n)]


class _Sysu(Protocol):
    cameras: tuple[int, ...] = ()

    def trials(self, q, g, opts):
        qi, gi = _where(q.camid, [3, 6]), _where(g.camid, self.cameras)
        seed, n = opts.get("seed", 0), opts.get("num_trials", 10)
        sub = g.take(gi)
        return [(qi, gi[_one_per(sub, list(self.cameras), seed + t)]) for t in range(n)]


class _Llcm(Protocol):
    query_modality = "rgb"

    def trials(self, q, g, opts):
        gmod = "ir" if self.query_modality == "rgb" else "rgb"
        qi, gi = _where(q.modality, [self.query_modality]), _where(g.modality, [gmod])
        seed, n = opts.get("seed", 0), opts.get("num_trials", 10)
        sub = g.take(gi)
        cams = sorted({int(c) for c in sub.camid})
        return [(qi, gi[_one_per(sub, cams, seed + t)]) for t in range(n)]


def _sysu(name: str, cams: tuple[int, ...]) -> _Sysu:
    p = _Sysu(name, rule_sysu, ("pid", "camid"), dedup=True)
    p.cameras = cams
    return p


def _llcm(name: str, qmod: str) -> _Llcm:
    p = _Llcm(name, rule_llcm, ("pid", "camid", "modality"), dedup=True)
    p.query_modality = qmod
    return p


PROTOCOLS: dict[str, Protocol] = {
    "market": Protocol("market", rule_market, ("pid", "camid")),
    "general": Protocol("general", rule_market, ("pid", "camid")),
    "cc": Protocol("cc", rule_cc, ("pid", "camid", "clothes")),
    "sc": Protocol("sc", rule_sc, ("pid", "camid", "clothes")),
    "prcc": _Prcc("prcc", rule_market, ("pid", "camid")),
    "sysu-all": _sysu("sysu-all", (1, 2, 4, 5)),
    "sysu-indoor": _sysu("sysu-indoor", (1, 2)),
    "llcm-v2i": _llcm("llcm-v2i", "rgb"),
    "llcm-i2v": _llcm("llcm-i2v", "ir"),
}
PROTOCOLS["market"].doc = "Market-1501/Duke/MSMT17/CUHK03-NP: same pid+camid removed (torchreid eval_market1501)"
PROTOCOLS["general"].doc = "the market rule under the name Simple-CCReID uses for its general setting"
PROTOCOLS["cc"].doc = "clothes-changing: same pid, other camera, other clothes (Simple-CCReID)"
PROTOCOLS["sc"].doc = "same-clothes: same pid, other camera, same clothes (Simple-CCReID)"
PROTOCOLS["prcc"].doc = "PRCC: gallery camera A (camid 1), query camera B (sc, camid 2) or C (cc, camid 3)"
PROTOCOLS["sysu-all"].doc = "SYSU-MM01 all-search: IR cams 3,6 query; 1 RGB image per pid+cam (1,2,4,5); 10 trials"
PROTOCOLS["sysu-indoor"].doc = "SYSU-MM01 indoor-search: as all-search with RGB cams 1,2"
PROTOCOLS["llcm-v2i"].doc = "LLCM visible query -> infrared gallery (1 image per pid+cam; 10 trials)"
PROTOCOLS["llcm-i2v"].doc = "LLCM infrared query -> visible gallery (1 image per pid+cam; 10 trials)"
# LLCM direction. The LLCM/DEEN test code sets `test_mode = [1, 2]` with the comment "[1, 2]: VIS to
# IR" but then reads the query with process_query_llcm(mode=test_mode[1]) = mode 2 = the `test_nir`
# cameras and the gallery with mode 1 = `test_vis`: the comment names the pair the other way round
# from what the code runs. `reid` names a protocol by what the query is: llcm-v2i = visible (rgb)
# queries against an infrared gallery, llcm-i2v = infrared queries against a visible gallery, which
# is what the reference code runs under the label "VIS to IR" with test_mode [1, 2].


# ----------------------------------------------------------------------------- evaluation
def _codes(values_q: np.ndarray, values_g: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense int64 codes shared by query and gallery values."""
    uniq, inv = np.unique(np.concatenate([values_q, values_g]).astype(str) if values_q.dtype == object
                          else np.concatenate([values_q, values_g]), return_inverse=True)
    inv = inv.astype(np.int64).reshape(-1)
    return inv[:len(values_q)], inv[len(values_q):], len(uniq)


def _arrays(q: Meta, g: Meta, needs: tuple[str, ...]):
    qt, gt = {}, {}
    qt["pid"], gt["pid"], npid = _codes(q.pid, g.pid)
    if "camid" in needs:
        qt["camid"], gt["camid"] = q.camid.astype(np.int64), g.camid.astype(np.int64)
    if "clothes" in needs:
        qt["clothes"], gt["clothes"], _ = _codes(q.clothes, g.clothes)
    return qt, gt, npid


def rank_trial(qf, gf, q: Meta, g: Meta, protocol: Protocol, *, distance: str = "cosine",
               distances=None, max_rank: int = 50, block_rows: int | None = None, progress: bool = False,
               inplace: tuple[bool, bool] = (False, False), topk: int = 0) -> dict:
    """Per-query results and summary for one query/gallery selection.

    `distances`, if given, is a callable (start, stop) -> (B, G) float32 tensor that replaces the
    feature distances (used by re-ranking); otherwise distances come from qf/gf (numpy arrays).
    topk > 0 also returns each query's top-k list under "ranked" (a ranklist.Ranked, local rows).
    """
    import torch

    from reidtools.metrics import distance as dist_mod

    qt, gt, npid = _arrays(q, g, protocol.needs)
    # distances in big query blocks (a thin block re-reads the whole gallery per few rows: memory
    # bound), ranked in smaller sub-blocks (their boolean masks cost ~20 bytes per pair)
    rows = block_rows or dist_mod.block_rows(len(g), budget_bytes=192 << 20, per_item=4)
    sub_rows = block_rows or dist_mod.block_rows(len(g), budget_bytes=96 << 20, per_item=20)
    if distances is None:
        qx, gx = dist_mod.prepare(qf, distance, inplace[0]), dist_mod.prepare(gf, distance, inplace[1])
        g_sq = (gx * gx).sum(1) if distance == "euclidean" else None
        distances = lambda a, b: dist_mod.block_distance(qx[a:b], gx, distance, g_sq)  # noqa: E731
    parts = []
    tops: list[tuple] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(q), desc=f"eval {protocol.name}", unit="query", leave=False)
    codes = gt["pid"] if protocol.dedup else None
    # gallery rows grouped by identity: a query's good items are among its identity's few rows
    g_order = np.argsort(gt["pid"], kind="stable")
    g_count = np.bincount(gt["pid"], minlength=npid)
    g_start = np.cumsum(g_count) - g_count
    with torch.inference_mode():
        for start in range(0, len(q), rows):
            stop = min(start + rows, len(q))
            d = distances(start, stop)
            d = d.numpy() if hasattr(d, "numpy") else d
            for a in range(start, stop, sub_rows):
                b = min(a + sub_rows, stop)
                qb = {k: v[a:b] for k, v in qt.items()}
                cnt = g_count[qb["pid"]]
                total = int(cnt.sum())
                pr = np.repeat(np.arange(b - a), cnt)
                pc = g_order[np.repeat(g_start[qb["pid"]] - (np.cumsum(cnt) - cnt), cnt) + np.arange(total)]
                good = protocol.rule({k: v[pr] for k, v in qb.items()}, {k: v[pc] for k, v in gt.items()})[0]

                def removed_of(r, c, qb=qb):
                    return protocol.rule({k: v[r] for k, v in qb.items()}, {k: v[c] for k, v in gt.items()})[1]

                parts.append(ranking.rank_block(d[a - start:b - start], pr[good], pc[good], removed_of, codes, npid))
                if topk:
                    from reidtools.metrics.ranklist import topk_block

                    def rule_of(r, c, qb=qb):
                        return protocol.rule({k: v[r] for k, v in qb.items()}, {k: v[c] for k, v in gt.items()})

                    tops.append(topk_block(d[a - start:b - start], topk, rule_of))
                if bar is not None:
                    bar.update(b - a)
            del d
    if bar is not None:
        bar.close()
    per_query = ranking.concat(parts)
    summary = ranking.summarize(per_query, max_rank=max_rank, dedup=protocol.dedup)
    summary["num_gallery"] = len(g)
    if topk:
        from reidtools.metrics.ranklist import Ranked

        cols, dists, marks = (np.concatenate([t[i] for t in tops]) for i in range(3))
        summary["ranked"] = Ranked(np.arange(len(q)), cols, dists, marks, per_query["ap"],
                                   per_query["first_rank"], per_query["num_pos"])
    return summary


def rank_distmat(dist: np.ndarray, q: Meta, g: Meta, protocol: str, max_rank: int = 50) -> dict:
    """Metrics of a protocol's rule on a given (Q, G) distance matrix, with no query/gallery selection."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(dist, dtype=np.float32))
    return rank_trial(None, None, q, g, PROTOCOLS[protocol], distances=lambda a, b: t[a:b], max_rank=max_rank)


def evaluate(qf: np.ndarray | None, gf: np.ndarray | None, q: Meta, g: Meta, protocol: str, *,
             distance: str = "cosine", seed: int = 0, num_trials: int = 10, prcc_query: str = "cc",
             prcc_gallery: str = "multi-shot", rerank: dict | None = None, max_rank: int = 50,
             progress: bool = False, distmat: np.ndarray | None = None, copy: bool = True,
             topk: int = 0) -> dict:
    """Metrics of one protocol as the `--json` object (fractions; `trials` for multi-trial protocols).

    topk > 0 adds "ranked": the first trial's top-k lists (a ranklist.Ranked with rows of q and g),
    which the caller removes before writing the JSON.

    Distances come from the features qf/gf, or from `distmat` (Q, G) when given (then qf/gf may be
    None). rerank: None, or {"k1", "k2", "lambda", "max_bytes"} for k-reciprocal re-ranking of each
    trial (features only). copy=False lets cosine normalisation overwrite qf/gf (saves a copy of
    the features). Raises ValueError for input the protocol cannot evaluate.
    """
    import torch

    proto = PROTOCOLS[protocol]
    opts = {"seed": seed, "num_trials": num_trials, "prcc_query": prcc_query, "prcc_gallery": prcc_gallery}
    trials = proto.trials(q, g, opts)
    results = []
    for t, (qi, gi) in enumerate(trials):
        if len(qi) == 0:
            raise ValueError(f"protocol {protocol}: the query set is empty" + _subset_hint(proto, opts))
        if len(gi) == 0:
            raise ValueError(f"protocol {protocol}: the gallery set is empty" + _subset_hint(proto, opts))
        qs, gs = q.take(qi), g.take(gi)
        qft = gft = dist_fn = None
        if distmat is not None:
            sub = torch.from_numpy(np.ascontiguousarray(distmat[np.ix_(qi, gi)], dtype=np.float32))
            dist_fn = lambda a, b, sub=sub: sub[a:b]  # noqa: E731
        else:
            # a selection that keeps every row needs no (memory-doubling) fancy-index copy
            qft = qf if np.array_equal(qi, np.arange(len(q))) else qf[qi]
            gft = gf if np.array_equal(gi, np.arange(len(g))) else gf[gi]
        if rerank is not None:
            if distmat is not None:
                raise ValueError("re-ranking needs features, not a distance matrix")
            from reidtools.metrics.rerank import rerank_blocks

            dist_fn = rerank_blocks(qft, gft, distance=distance, **rerank)
        try:
            res = rank_trial(qft, gft, qs, gs, proto, distance=distance, distances=dist_fn, max_rank=max_rank,
                             progress=progress,
                             inplace=(qft is not qf or (not copy and len(trials) == 1),
                                      gft is not gf or (not copy and len(trials) == 1)),
                             topk=topk if t == 0 else 0)
        except ValueError as exc:
            if "no query has a match" in str(exc):
                raise ValueError(f"protocol {protocol}: no query has a match in the gallery "
                                 f"({len(qi)} queries, {len(gi)} gallery items"
                                 + (f", trial {t}" if len(trials) > 1 else "") + ")") from None
            raise
        if len(trials) > 1:
            res["trial"], res["seed"] = t, seed + t
        if "ranked" in res:
            ranked = res.pop("ranked")
            # back to rows of the full query/gallery sets
            ranked.query, ranked.cols = qi[ranked.query], gi[ranked.cols]
            ranked.trial = t if len(trials) > 1 else None
        results.append(res)
    out = combine_trials(results, protocol, distance=distance, prcc_query=prcc_query,
                         prcc_gallery=prcc_gallery, rerank=rerank)
    if topk:
        out["ranked"] = ranked
    return out


def combine_trials(results: list[dict], protocol: str, *, distance: str, prcc_query: str,
                   prcc_gallery: str, rerank: dict | None) -> dict:
    """The trials' figures as one `--json` object: the mean over trials, each kept under `trials`."""
    if len(results) == 1:
        out = {"protocol": protocol, **results[0]}
    else:
        out = {"protocol": protocol}
        for name in ("mAP", "mINP", "rank1", "rank5", "rank10"):
            out[name] = float(np.mean([r[name] for r in results]))
        out["cmc"] = np.mean([r["cmc"] for r in results], axis=0).tolist()
        for name in ("num_query", "num_query_valid", "num_gallery"):
            vals = [r[name] for r in results]
            out[name] = vals[0] if len(set(vals)) == 1 else float(np.mean(vals))
        out["trials"] = results
    out["distance"] = distance
    if protocol == "prcc":
        out["prcc_query"], out["prcc_gallery"] = prcc_query, prcc_gallery
    if rerank is not None:
        out["rerank"] = {k: rerank[k] for k in ("k1", "k2", "lambda")}
    return out


def _subset_hint(proto: Protocol, opts: dict) -> str:
    if isinstance(proto, _Prcc):
        cam = {"sc": 2, "cc": 3}[opts["prcc_query"]]
        return f" (prcc takes queries with camid {cam} and gallery items with camid 1)"
    if isinstance(proto, _Sysu):
        return f" (sysu takes queries from IR cameras 3, 6 and gallery items from cameras {proto.cameras})"
    if isinstance(proto, _Llcm):
        return f" ({proto.name} takes {proto.query_modality} queries; check the `modality` field)"
    return ""
