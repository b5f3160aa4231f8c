"""Ranked lists (`reid eval --ranks`): each query's top-k gallery items with distances and a mark.

The list is the gallery ordered by the distances the metrics used (after re-ranking when asked),
ties in gallery order, *with* the protocol's junk items left in place and marked, so a user sees
what the protocol excluded (in CC mode: the same-clothes matches the model put first). Marks:
`good` (a match that counts), `junk` (removed by the protocol: same pid and same camera; in CC mode
also same clothes; in SC mode also other clothes; SYSU: camera 2 for camera-3 queries) and `wrong`
(every other item). Each entry's `rank` is its rank among the non-junk items, the rank the metrics
count (null for junk); per query `ap` and `first_good_rank` are over the whole gallery, not only
the top k.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from reidtools.errors import ReidError

FORMAT = "reid-ranks/1"
MARKS = ("wrong", "good", "junk")       # mark codes 0, 1, 2
WRONG, GOOD, JUNK = 0, 1, 2


@dataclass
class Ranked:
    """Top-k of every query of one query/gallery selection; rows/columns index the full sets."""

    query: np.ndarray        # (Q,) row of each query in the query set
    cols: np.ndarray         # (Q, k) gallery rows, best first
    dist: np.ndarray         # (Q, k) float32 distances
    mark: np.ndarray         # (Q, k) int8 mark codes
    ap: np.ndarray           # (Q,) AP over the whole gallery (0 when no good item)
    first_rank: np.ndarray   # (Q,) rank of the first good item among non-junk items, 0 when none
    num_good: np.ndarray     # (Q,)
    trial: int | None = None


def topk_block(d: np.ndarray, k: int, rule_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cols, dist, mark) of the k nearest gallery items of each row of the (B, G) block `d`.

    Ties are broken by gallery order, as in the metrics. rule_of(rows, cols) -> (good, removed).
    """
    B, G = d.shape
    k = min(k, G)
    if k == 0:
        empty = np.zeros((B, 0))
        return empty.astype(np.int64), empty.astype(np.float32), empty.astype(np.int8)
    # every item no farther than the k-th smallest distance can be in the top k; sort only those
    kth = np.partition(d, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(d <= kth[:, None])
    order = np.lexsort((cols, d[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    start = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=B))[:-1]])
    pos = np.arange(len(rows)) - start[rows]
    keep = pos < k
    top = cols[keep].reshape(B, k)
    r = np.repeat(np.arange(B), k)
    good, removed = rule_of(r, top.ravel())
    mark = np.where(np.asarray(removed), JUNK, np.where(np.asarray(good), GOOD, WRONG)).astype(np.int8)
    return top, d[r, top.ravel()].reshape(B, k).astype(np.float32), mark.reshape(B, k)


def _abs(path: str) -> str:
    return path if path == "-" else os.path.abspath(path)


def _entry_meta(meta, i: int) -> dict:
    out = {"pid": int(meta.pid[i])}
    if meta.camid is not None:
        out["camid"] = int(meta.camid[i])
    if meta.clothes is not None:
        out["clothes"] = str(meta.clothes[i])
    if meta.tracklet is not None:
        out["tracklet"] = meta.tracklet[i]
    return out


def to_json(ranked: Ranked, qmeta, gmeta, *, protocol: str, distance: str, rerank: bool) -> dict:
    """The ranks file's object. Each entry names the sample to draw by its shard and key."""
    queries = []
    for n, qi in enumerate(ranked.query):
        shard, key = qmeta.where[qi]
        top = []
        kept = 0
        for c, dv, mk in zip(ranked.cols[n], ranked.dist[n], ranked.mark[n]):
            gshard, gkey = gmeta.where[c]
            if mk != JUNK:
                kept += 1
            top.append({"key": gkey, "shard": _abs(gshard), "distance": float(dv), "mark": MARKS[mk],
                        "rank": kept if mk != JUNK else None, **_entry_meta(gmeta, c)})
        valid = bool(ranked.num_good[n] > 0)
        queries.append({"key": key, "shard": _abs(shard), **_entry_meta(qmeta, qi),
                        "num_good": int(ranked.num_good[n]),
                        "ap": float(ranked.ap[n]) if valid else None,
                        "first_good_rank": int(ranked.first_rank[n]) if valid else None, "top": top})
    out = {"format": FORMAT, "protocol": protocol, "distance": distance, "rerank": rerank,
           "k": int(ranked.cols.shape[1]), "queries": queries}
    if ranked.trial is not None:
        out["trial"] = ranked.trial
    return out


def write(obj: dict, path: str) -> None:
    from reidtools.fileio import write_json_atomic

    try:
        write_json_atomic(path, obj)
    except OSError as exc:
        raise ReidError(f"--ranks: cannot write {path!r} ({exc.strerror})") from None


def load(path: str) -> dict:
    """A ranks file, checked enough that drawing it cannot fail half-way on a missing field."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except OSError as exc:
        raise ReidError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("queries"), list):
        raise ReidError(f"{path}: not a `reid eval --ranks` file (format {FORMAT!r} expected)")
    for n, q in enumerate(obj["queries"]):
        if not isinstance(q, dict) or not {"key", "shard", "top"} <= set(q) or not isinstance(q["top"], list):
            raise ReidError(f"{path}: query {n} lacks key/shard/top")
        for e in q["top"]:
            if not isinstance(e, dict) or not {"key", "shard", "mark"} <= set(e) or e["mark"] not in MARKS:
                raise ReidError(f"{path}: query {q['key']}: an entry lacks key/shard/mark (good|junk|wrong)")
    return obj


def order_queries(queries: list[dict], worst: str | None) -> list[dict]:
    """Queries in file order, or worst first: by `ap` ascending, or by `first_good_rank`
    descending (`rank`); ties keep file order; queries with no good item in the gallery go last
    (no metric counts them)."""
    if worst is None:
        return list(queries)
    valid = [q for q in queries if q.get("ap") is not None]
    rest = [q for q in queries if q.get("ap") is None]
    if worst == "ap":
        valid.sort(key=lambda q: q["ap"])
    elif worst == "rank":
        valid.sort(key=lambda q: -q["first_good_rank"])
    else:
        raise ValueError(f"worst: ap or rank, got {worst!r}")
    return valid + rest
