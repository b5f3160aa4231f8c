"""Video ReID: frame features pooled into one feature per tracklet (json `tracklet`).

CCVID and MARS evaluate tracklets, not frames: every query and gallery item is a whole tracklet.
Pooling:

- `mean`: the plain mean of the tracklet's frame features.
- `cal`: the weights of CAL's clip-level test (Simple-CCReID `_recombination_for_testset` and
  `extract_vid_feature`). There each test tracklet of n frames (sorted file names) is cut into
  ceil(n / L) clips of L frames (L = `SEQ_LEN`, 8 in its video config): strided clips that use
  every frame of each block of L*stride frames once, then clips over the rest of the first
  floor(n/L)*L frames with a smaller stride (again each frame once), and, when L does not divide
  n, one clip of the last n mod L frames padded cyclically (a, b, c, a, b, c, a, b). The tracklet
  feature is the mean of its clip features. For a model whose clip feature is the mean of its
  frames' features (CAL's C2D ResNet-50: per-frame spatial pooling, temporal mean, then
  BatchNorm, affine at test time) that is a weighted mean of frame features: weight = (times the
  frame occurs in a clip) / (clips * L). The stride does not change the weights.

Frames are ordered by sample key (`reid pack` keys sort like the file names CAL sorts). The
tracklet's row keeps its first frame's (shard, key), so a ranked list can show an image.
"""

from __future__ import annotations

import math

import numpy as np

from reidtools.errors import SampleError
from reidtools.metrics.protocols import Meta

POOLS = ("mean", "cal")


def cal_weights(n: int, clip_len: int = 8) -> np.ndarray:
    """Weights of the n frames (in order) under CAL's clip formation with clips of clip_len frames."""
    if n < 1 or clip_len < 1:
        raise ValueError("a tracklet needs at least one frame and clips at least one frame")
    counts = np.ones(n)
    r = n % clip_len
    if r:
        tail = np.arange(n - r, n)
        # cyclic padding of the last r frames to clip_len: the first (clip_len mod r) get one more
        counts[tail] = clip_len // r + (np.arange(r) < clip_len % r)
    return counts / (math.ceil(n / clip_len) * clip_len)


def pool(feats: np.ndarray, meta: Meta, metas: list[dict], how: str, clip_len: int = 8) -> tuple[np.ndarray, Meta]:
    """(features, Meta) with one row per tracklet, tracklets in order of first appearance.

    Every frame needs `tracklet`; the frames of one tracklet must agree on pid, camid, clothes and
    modality (those the set carries), else the error names the frame, its shard and the tracklet.
    """
    if how not in POOLS:
        raise ValueError(f"tracklet pooling: {' or '.join(POOLS)}, got {how!r}")
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(metas):
        name = m.get("tracklet")
        if name is None or isinstance(name, (dict, list)):
            shard, key = meta.where[i]
            raise SampleError(shard, key, "missing field 'tracklet' (--tracklets pools frames by it)"
                              if name is None else "'tracklet' must be a string or a number")
        groups.setdefault(str(name), []).append(i)
    arrays = {n: a for n, a in (("pid", meta.pid), ("camid", meta.camid), ("clothes", meta.clothes),
                                ("modality", meta.modality)) if a is not None}
    rows, out = [], np.empty((len(groups), feats.shape[1]), np.float32)
    for t, (name, idx) in enumerate(groups.items()):
        idx = sorted(idx, key=lambda i: meta.keys[i])
        for field, a in arrays.items():
            bad = [i for i in idx if a[i] != a[idx[0]]]
            if bad:
                shard, key = meta.where[bad[0]]
                fshard, fkey = meta.where[idx[0]]
                v, v0 = (x.item() if hasattr(x, "item") else x for x in (a[bad[0]], a[idx[0]]))
                raise SampleError(shard, key, f"tracklet {name!r}: {field} {v!r} differs from {v0!r} "
                                              f"of {fshard}: {fkey}")
        w = np.full(len(idx), 1.0 / len(idx)) if how == "mean" else cal_weights(len(idx), clip_len)
        out[t] = (w[:, None] * feats[idx].astype(np.float64)).sum(0)
        rows.append(idx[0])
    first = np.asarray(rows, dtype=np.int64)
    pooled = meta.take(first)
    pooled.keys = list(groups)
    pooled.tracklet = list(groups)
    return out, pooled
