"""Query/gallery sets for evaluation: metadata and features read from shards (`feat.npy`), or
extracted with a trained model; and saving them back as feature shards."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

from reidtools.errors import ReidError, SampleError
from reidtools.metrics.protocols import Meta

log = logging.getLogger("reidtools")
FEAT = "feat.npy"


def _extractor():
    try:
        found = importlib.util.find_spec("reidtools.reid.extract") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ReidError("--model needs `reid train` support (not installed)")
    from reidtools.reid.extract import extract_features

    return extract_features


def load_set(shards: list[str], *, role: str, protocol: str, needs: tuple[str, ...], model: str | None = None,
             batch_size: int = 128, device: str | None = None, progress: bool = False, stored: bool = True):
    """(features float32 (N, D), Meta, metadata dicts) of one sample set.

    Every sample must carry the metadata the protocol needs; features come from `feat.npy`, or, for
    samples without it, from `--model` (all such samples are extracted in one pass). stored=False
    ignores `feat.npy` and extracts every sample (`reid train --eval-every` rates its own model).
    """
    from reidtools.shards import array, iter_samples, require

    metas, where, feats, pending = [], [], [], []
    first: tuple[str, str, int] | None = None
    for sample in iter_samples(shards):
        shard, key = sample["__shard__"], sample["__key__"]
        m = require(sample, *needs, hint=f"--protocol {protocol} needs it")
        metas.append(m)
        where.append((shard, key))
        if FEAT in sample and (stored or model is None):
            f = array(sample, FEAT)
            if f.ndim == 2 and f.shape[0] == 1:
                f = f[0]
            if f.ndim != 1:
                raise SampleError(shard, key, f"'{FEAT}' must be a vector, got shape {tuple(f.shape)}")
            if not np.issubdtype(f.dtype, np.floating):
                raise SampleError(shard, key, f"'{FEAT}' must hold floats, got {f.dtype}")
            if first is None:
                first = (shard, key, f.shape[0])
            elif f.shape[0] != first[2]:
                raise SampleError(shard, key, f"'{FEAT}' has {f.shape[0]} values but {first[0]}: {first[1]} has {first[2]}")
            if not np.isfinite(f).all():
                raise SampleError(shard, key, f"'{FEAT}' holds NaN or infinite values")
            feats.append(f.astype(np.float32, copy=False))
        elif model is None:
            raise SampleError(shard, key, f"missing field '{FEAT}': pass --model RUN_DIR (a `reid train` run) "
                                          "or shards written by `reid eval --save-features`")
        else:
            feats.append(None)
            pending.append((len(feats) - 1, sample))
    if not metas:
        raise ReidError(f"the {role} set is empty (no sample in {', '.join(shards)})")
    if pending:
        extract = _extractor()
        out = np.asarray(extract(model, [s for _, s in pending], batch_size=batch_size, device=device,
                                 progress=progress), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(pending):
            raise ReidError(f"--model {model}: extractor returned shape {out.shape} for {len(pending)} samples")
        if first is not None and out.shape[1] != first[2]:
            raise ReidError(f"--model {model} gives {out.shape[1]}-d features but {first[0]}: {first[1]} "
                            f"holds a {first[2]}-d '{FEAT}'")
        for (i, _), f in zip(pending, out):
            feats[i] = f
    meta = Meta(
        keys=[k for _, k in where],
        pid=np.asarray([m["pid"] for m in metas], dtype=np.int64),
        camid=np.asarray([m["camid"] for m in metas], dtype=np.int64) if "camid" in needs else None,
        # kept whenever every sample has it, for the labels of `--ranks` lists
        clothes=(np.asarray([str(m["clothes"]) for m in metas], dtype=object)
                 if "clothes" in needs or all("clothes" in m for m in metas) else None),
        modality=np.asarray([m["modality"] for m in metas], dtype=object) if "modality" in needs else None,
        where=where,
    )
    return np.stack(feats), meta, metas


def check_dims(qf: np.ndarray, gf: np.ndarray, qmeta: Meta, gmeta: Meta) -> None:
    if qf.shape[1] != gf.shape[1]:
        qs, qk = qmeta.where[0]
        gs, gk = gmeta.where[0]
        raise ReidError(f"feature sizes differ: query {qs}: {qk} has {qf.shape[1]} values, "
                        f"gallery {gs}: {gk} has {gf.shape[1]}")


def save_features(directory: str, prefix: str, feats: np.ndarray, meta: Meta, metas: list[dict],
                  maxcount: int = 10000) -> list[str]:
    """Write `DIR/{prefix}-NNNNNN.tar` shards: each sample's metadata and its `feat.npy`, no image."""
    from reidtools.shards import ShardWriter

    with ShardWriter(directory, prefix=prefix, maxcount=maxcount, resume=False) as writer:
        for key, m, f in zip(meta.keys, metas, feats):
            writer.write({"__key__": key, "json": m, FEAT: np.asarray(f, dtype=np.float32)})
    return writer.shards
