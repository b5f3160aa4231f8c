"""Test-time query variants for `reid refine`: read them, order them, match them to their queries.

A variant is any sample whose `source` is a query key (what `reid inpaint` writes: key
`{source}-inpaint{k:02d}`, `source`, and a `history` entry with the variant index k). A query's
variants are ordered by that index (the last `inpaint` history entry's `variant`, else the key's
`-inpaintNN` suffix, else after the indexed ones by key), so the first N views are the same on
every run and every shard order.
"""

from __future__ import annotations

import re

import numpy as np

from reidtools.errors import ReidError, SampleError
from reidtools.metrics.features import FEAT, _extractor
from reidtools.metrics.refine import Views

_SUFFIX = re.compile(r"-inpaint(\d+)$")


def variant_order(key: str, m: dict) -> tuple:
    """Sort key of a variant: (0, index, key) when its variant index is known, else (1, 0, key)."""
    for entry in reversed(m.get("history") or []):
        if isinstance(entry, dict) and entry.get("tool") == "inpaint":
            v = (entry.get("parameters") or {}).get("variant")
            if isinstance(v, int) and not isinstance(v, bool):
                return (0, v, key)
            break
    hit = _SUFFIX.search(key)
    if hit:
        return (0, int(hit.group(1)), key)
    return (1, 0, key)


def query_rows(keys: list[str], where: list[tuple[str, str]]) -> dict[str, int]:
    """key -> row; a key that appears twice is an error (variants are matched by key)."""
    rows: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in rows:
            first = where[rows[key]][0] if where else "?"
            raise ReidError(f"query key {key!r} appears twice ({first} and {where[i][0] if where else '?'}): "
                            "variants are matched to queries by key, so query keys must be unique")
        rows[key] = i
    return rows


def match(records: list[tuple[str, str, str | None, tuple]], rows: dict[str, int], num_queries: int,
          views: int) -> tuple[np.ndarray, dict]:
    """(index (Q, views) of variant record rows, -1 where none; counts).

    records: (shard, key, source, order) per variant row. A record without `source` whose key is a
    query key is the original itself (e.g. `reid inpaint --keep-source` output) and is skipped.
    """
    per: dict[int, list[tuple[tuple, int]]] = {}
    skipped = 0
    for r, (shard, key, source, order) in enumerate(records):
        if source is None:
            if key in rows:
                skipped += 1
                continue
            raise SampleError(shard, key, "metadata lacks 'source': not a query variant (make variants with "
                                          "`reid inpaint` on the query shards)")
        if source not in rows:
            raise SampleError(shard, key, f"source {source!r} is not a query key (variants must be made "
                                          "from the QUERY_SHARDS given to refine)")
        per.setdefault(rows[source], []).append((order, r))
    index = np.full((num_queries, views), -1, dtype=np.int64)
    beyond = 0
    for row, items in per.items():
        items.sort()
        chosen = [r for _, r in items[:views]]
        beyond += max(0, len(items) - views)
        index[row, :len(chosen)] = chosen
    return index, {"variants": len(records) - skipped, "originals_skipped": skipped, "variants_beyond_views": beyond}


def load_variants(shards: list[str], query_keys: list[str], query_where: list[tuple[str, str]], *, views: int,
                  dim: int, model: str | None = None, batch_size: int = 128, device: str | None = None,
                  progress: bool = False) -> tuple[Views, dict]:
    """Variant features (from `feat.npy`, or extracted with --model) matched to the query rows.

    Only the variants that are used (the first `views` of each query) are extracted.
    """
    from reidtools.shards import array, iter_samples, meta

    rows = query_rows(query_keys, query_where)
    records, feats, pending = [], [], []
    for sample in iter_samples(shards):
        shard, key = sample["__shard__"], sample["__key__"]
        m = meta(sample)
        source = m.get("source")
        records.append((shard, key, None if source is None else str(source), variant_order(key, m)))
        if FEAT in sample:
            f = np.asarray(array(sample, FEAT))
            f = f[0] if f.ndim == 2 and f.shape[0] == 1 else f
            if f.ndim != 1 or not np.issubdtype(f.dtype, np.floating):
                raise SampleError(shard, key, f"'{FEAT}' must be a float vector, got {f.dtype} {tuple(f.shape)}")
            if f.shape[0] != dim:
                raise SampleError(shard, key, f"'{FEAT}' has {f.shape[0]} values but the query features have {dim}")
            if not np.isfinite(f).all():
                raise SampleError(shard, key, f"'{FEAT}' holds NaN or infinite values")
            feats.append(f.astype(np.float32))
        else:
            feats.append(None)
            pending.append(sample)
    if not records:
        raise ReidError(f"no variant in {', '.join(shards)}")
    index, counts = match(records, rows, len(query_keys), views)
    used = set(index[index >= 0].tolist())
    todo = [(r, s) for r, s in zip((i for i, f in enumerate(feats) if f is None), pending) if r in used]
    if todo:
        if model is None:
            shard, key = records[todo[0][0]][:2]
            raise SampleError(shard, key, f"missing field '{FEAT}': pass --model RUN_DIR (a `reid train` run) "
                                          "to extract variant features")
        out = np.asarray(_extractor()(model, [s for _, s in todo], batch_size=batch_size, device=device,
                                      progress=progress), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(todo) or out.shape[1] != dim:
            raise ReidError(f"--model {model}: variant features have shape {out.shape}, expected ({len(todo)}, {dim})")
        for (r, _), f in zip(todo, out):
            feats[r] = f
    # keep only the used variants, renumbered
    keep = sorted(used)
    remap = np.full(len(records), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    index = np.where(index >= 0, remap[np.maximum(index, 0)], -1)
    table = np.stack([feats[r] for r in keep]) if keep else np.zeros((0, dim), np.float32)
    counts["variants_used"] = len(keep)
    return Views(table, index), counts
