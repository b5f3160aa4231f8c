"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), with sparse neighbour sets instead of dense N x N matrices.

Semantics are those of the public `re_ranking` function (Zhong's release, copied into TransReID and
CLIP-ReID): all N = Q + G features take part; `original_dist` is the squared Euclidean distance
(on L2-normalised features for `--distance cosine`) divided by its row maximum; the k1-reciprocal
set R(i) = {j in the k1+1 nearest of i : i in the k1+1 nearest of j}; each candidate c in R(i) adds
its round(k1/2)-reciprocal set R'(c) when |R'(c) & R(i)| > 2/3 |R'(c)|; V[i, j] = exp(-d(i, j))
normalised over that expanded set; query expansion replaces V[i] by the mean of V over the k2
nearest of i; the Jaccard distance of query i and gallery item j is 1 - s / (2 - s) with
s = sum_k min(V[i, k], V[j, k]) over all N columns; final = jaccard (1 - lambda) + original lambda.

Differences from that code, on purpose: V is float32/float64 instead of float16 (its float16 rounding
changes the last digits of the distances); nearest-neighbour ties are broken by `torch.topk` rather
than by numpy's quicksort; and nothing of size N x N is ever held. Memory is the features, the
top-(k1+1) lists, the sparse V (about N x k2 x 2(k1+1) entries) and one block of query rows; the
time is dominated by the N x N distance pass (N^2 D multiply-adds).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
_BLOCK_BYTES = 256 << 20


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (falls back to total physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_max_gb() -> float:
    """The default --rerank-max-gb: 80% of the memory available now."""
    return round(0.8 * available_bytes() / 2**30, 1)


def estimate_bytes(num_query: int, num_gallery: int, dim: int, k1: int = 20, k2: int = 6) -> int:
    """Peak memory of `rerank_blocks` (an upper estimate), for the check before it starts."""
    n = num_query + num_gallery
    kk = max(k1 + 1, k2)
    feats = n * dim * 4 * 2                               # prepared copy + the caller's arrays
    rows = max(8, min(2048, _BLOCK_BYTES // max(1, n * 12)))
    block = rows * n * 4 * 3                              # one block of the N x N distance pass
    neigh = n * kk * 12 * 4                               # top-k lists and the reciprocal sparse sets
    expand = 2 * (k1 + 1)                                  # typical size of the expanded set
    v_row = min(n, expand * max(1, k2))
    v = n * v_row * 12 * 4                                 # V (+ query expansion, CSR/CSC copies)
    jacc = 300 << 20                                       # one block of the Jaccard accumulation
    return int(feats + block + neigh + v + jacc)


def check_memory(num_query: int, num_gallery: int, dim: int, k1: int, k2: int, max_gb: float) -> int:
    need = estimate_bytes(num_query, num_gallery, dim, k1, k2)
    if need > max_gb * 2**30:
        raise ReidError(
            f"--rerank on {num_query} queries x {num_gallery} gallery items ({dim}-d) needs about "
            f"{need / 2**30:.1f} GB, over --rerank-max-gb {max_gb:g} (default: 80% of available memory); "
            "raise --rerank-max-gb on a machine with more memory, or evaluate without --rerank")
    return need


def _neighbours(x, k: int):
    """Row maxima of the squared-Euclidean matrix and the k nearest indices of every row (ascending)."""
    import torch

    n = x.shape[0]
    sq = (x * x).sum(1)
    rows = max(8, min(2048, _BLOCK_BYTES // max(1, n * 12)))
    row_max = torch.empty(n, dtype=torch.float32)
    nearest = torch.empty(n, k, dtype=torch.int64)
    for a in range(0, n, rows):
        b = min(a + rows, n)
        d = (x[a:b] @ x.T).mul_(-2.0).add_(sq[a:b, None]).add_(sq[None, :])
        row_max[a:b] = d.max(1).values
        nearest[a:b] = torch.topk(d, k, dim=1, largest=False, sorted=True).indices
    return sq, row_max, nearest


def _reciprocal(nearest: np.ndarray, k: int, n: int):
    """Sparse 0/1 matrix of k-reciprocal neighbours: j in top(k+1) of i and i in top(k+1) of j."""
    from scipy import sparse

    cols = nearest[:, :k + 1]
    a = sparse.csr_matrix((np.ones(cols.size, np.int32), (np.repeat(np.arange(n), cols.shape[1]), cols.ravel())),
                          shape=(n, n))
    a.data[:] = 1  # duplicate entries (not possible from topk, but cheap to guard)
    return a.multiply(a.T).tocsr()


def build_v(x, k1: int, k2: int):
    """The (query-expanded) sparse encoding V (N x N CSR, float64) and the row maxima."""
    import torch
    from scipy import sparse

    n = x.shape[0]
    kk = min(n, max(k1 + 1, k2))
    sq, row_max, nearest_t = _neighbours(x, kk)
    nearest = nearest_t.numpy()
    rk = _reciprocal(nearest, min(k1, n - 1), n)
    kh = int(np.around(k1 / 2))
    rh = _reciprocal(nearest, min(kh, n - 1), n)
    rh_size = np.asarray(rh.sum(1)).ravel()
    # overlap[i, c] = |R(i) & R'(c)|, kept only where c is in R(i)
    overlap = (rk @ rh.T).multiply(rk).tocoo()
    keep = overlap.data > 2 / 3 * rh_size[overlap.col]   # the reference's float comparison
    qual = sparse.csr_matrix((np.ones(int(keep.sum()), np.int32), (overlap.row[keep], overlap.col[keep])),
                             shape=(n, n))
    expanded = ((rk + qual @ rh) > 0).tocoo()
    rows_i, cols_j = expanded.row.astype(np.int64), expanded.col.astype(np.int64)
    # original_dist[i, j] = d(i, j) / max_j d(i, j), on the pairs of the expanded sets only
    dist = np.empty(len(rows_i), np.float32)
    step = max(1, (64 << 20) // (x.shape[1] * 4))
    ri, cj = torch.from_numpy(rows_i), torch.from_numpy(cols_j)
    for a in range(0, len(rows_i), step):
        i, j = ri[a:a + step], cj[a:a + step]
        dot = (x[i] * x[j]).sum(1)
        dist[a:a + step] = (sq[i] + sq[j] - 2 * dot).numpy()
    norm = dist / row_max.numpy()[rows_i]
    w = np.exp(-norm.astype(np.float64))
    sums = np.bincount(rows_i, weights=w, minlength=n)
    v = sparse.csr_matrix((w / sums[rows_i], (rows_i, cols_j)), shape=(n, n))
    if k2 != 1:
        kq = nearest[:, :k2]
        qe = sparse.csr_matrix((np.full(kq.size, 1.0 / k2), (np.repeat(np.arange(n), k2), kq.ravel())), shape=(n, n))
        v = (qe @ v).tocsr()
    v.sort_indices()
    return v, row_max, sq


def rerank_blocks(qf: np.ndarray, gf: np.ndarray, *, distance: str = "cosine", k1: int = 20, k2: int = 6,
                  lambda_value: float | None = None, max_bytes: int | None = None, **kw):
    """A callable (start, stop) -> re-ranked float32 distances (stop - start, G) for those query rows.

    `lambda` may be passed as a keyword through **kw (it is a Python keyword). The memory estimate is
    checked first against `max_bytes` (ReidError when over).
    """
    import torch

    from reidtools.metrics.distance import prepare

    lam = kw.pop("lambda", lambda_value)
    lam = 0.3 if lam is None else float(lam)
    if kw:
        raise TypeError(f"unexpected arguments {sorted(kw)}")
    q, g = len(qf), len(gf)
    if max_bytes is not None:
        check_memory(q, g, qf.shape[1], k1, k2, max_bytes / 2**30)
    if k1 < 1 or k2 < 1:
        raise ReidError("--k1 and --k2 must be >= 1")
    x = prepare(np.concatenate([qf, gf]), distance)
    n = q + g
    with torch.inference_mode():
        v, row_max, sq = build_v(x, k1, k2)
    vq = v[:q]
    vg = v[q:].tocsc()
    vg.sort_indices()
    col_ptr, col_rows, col_vals = vg.indptr, vg.indices.astype(np.int64), vg.data
    gx, g_sq = x[q:], sq[q:]

    def jaccard(a: int, b: int) -> np.ndarray:
        """1 - s / (2 - s), s[i, j] = sum_k min(V[i, k], V[Q + j, k]), for query rows a..b."""
        block = vq[a:b].tocoo()
        counts = (col_ptr[block.col + 1] - col_ptr[block.col]).astype(np.int64)
        total = int(counts.sum())
        s = np.zeros((b - a) * g, np.float64)
        if total:
            offs = np.repeat(col_ptr[block.col].astype(np.int64) - (np.cumsum(counts) - counts), counts)
            pos = offs + np.arange(total, dtype=np.int64)
            mins = np.minimum(np.repeat(block.data, counts), col_vals[pos])
            flat = np.repeat(block.row.astype(np.int64), counts) * g + col_rows[pos]
            s = np.bincount(flat, weights=mins, minlength=(b - a) * g)
        s = s.reshape(b - a, g)
        return 1.0 - s / (2.0 - s)

    # query sub-blocks sized so the expanded (i, k, j) triples of one block stay around 8M
    per_row = max(1.0, vq.nnz / max(1, q)) * max(1.0, vg.nnz / max(1, n))
    sub = int(max(1, min(256, 8_000_000 // per_row)))

    def distances(start: int, stop: int):
        with torch.inference_mode():
            d = (x[start:stop] @ gx.T).mul_(-2.0).add_(sq[start:stop, None]).add_(g_sq[None, :])
            d = d / row_max[start:stop, None]
        out = np.empty((stop - start, g), np.float32)
        orig = d.numpy()
        for a in range(start, stop, sub):
            b = min(a + sub, stop)
            out[a - start:b - start] = jaccard(a, b) * (1.0 - lam) + orig[a - start:b - start] * lam
        return torch.from_numpy(out)

    return distances
