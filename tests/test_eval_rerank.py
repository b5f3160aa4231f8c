"""k-reciprocal re-ranking against a straightforward dense reference with the public re_ranking
function's semantics (Zhong et al. 2017), and the memory guard."""

from __future__ import annotations

import numpy as np
import pytest

from reidtools.errors import ReidError
from reidtools.metrics.rerank import estimate_bytes, rerank_blocks


def reference_rerank(qf, gf, k1, k2, lam):
    """Dense, loop-by-loop: original distance over query+gallery, k-reciprocal expansion, query
    expansion, Jaccard over all columns, final = jaccard (1 - lam) + original lam (float64)."""
    feat = np.concatenate([qf, gf]).astype(np.float64)
    nq, n = len(qf), len(qf) + len(gf)
    sq = (feat ** 2).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * feat @ feat.T
    dist = np.transpose(dist / np.max(dist, axis=0))
    rank = np.argsort(dist, axis=1, kind="stable")
    v = np.zeros((n, n))
    for i in range(n):
        fwd = rank[i, :k1 + 1]
        recip = fwd[np.where(rank[fwd, :k1 + 1] == i)[0]]
        expansion = recip
        for c in recip:
            kh = int(np.around(k1 / 2))
            cf = rank[c, :kh + 1]
            crec = cf[np.where(rank[cf, :kh + 1] == c)[0]]
            if len(np.intersect1d(crec, recip)) > 2 / 3 * len(crec):
                expansion = np.append(expansion, crec)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        v[i, expansion] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jac = np.zeros((nq, n))
    for i in range(nq):
        smin = np.minimum(v[i][None, :], v).sum(1)
        jac[i] = 1 - smin / (2 - smin)
    final = jac * (1 - lam) + dist[:nq] * lam
    return final[:, nq:]


def clustered(rng, n, ids, dim):
    centers = rng.normal(size=(ids, dim))
    pid = rng.integers(0, ids, n)
    return (centers[pid] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("k1,k2,lam,metric", [(6, 3, 0.3, "euclidean"), (8, 1, 0.5, "cosine"), (20, 6, 0.3, "cosine")])
def test_rerank_matches_reference(k1, k2, lam, metric):
    rng = np.random.default_rng(k1)
    qf, gf = clustered(rng, 17, 6, 12), clustered(rng, 45, 6, 12)
    fn = rerank_blocks(qf, gf, distance=metric, k1=k1, k2=k2, **{"lambda": lam})
    got = np.concatenate([fn(a, min(a + 5, 17)).numpy() for a in range(0, 17, 5)])
    if metric == "cosine":
        qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
        gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    ref = reference_rerank(qf, gf, k1, k2, lam)
    assert got.shape == (17, 45)
    assert np.abs(got - ref).max() < 1e-5


def test_rerank_refuses_over_memory_limit():
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(10, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    with pytest.raises(ReidError, match=r"needs about .* GB, over --rerank-max-gb"):
        rerank_blocks(qf, gf, max_bytes=1024)


def test_estimate_scales_with_size():
    market = estimate_bytes(3368, 15913, 2048)
    msmt = estimate_bytes(11659, 82161, 2048)
    assert 0.3 * 2**30 < market < 4 * 2**30
    assert msmt > 2 * market
