"""Query-gallery distances, computed one block of query rows at a time.

`cosine` is 1 - cos (features L2-normalised first); `euclidean` is the squared Euclidean distance
|q|^2 + |g|^2 - 2 q.g, as torchreid's `compute_distance_matrix` computes it (the square root changes
no ranking, so no metric). Everything is float32 on the CPU.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

METRICS = ("cosine", "euclidean")


def prepare(feats: np.ndarray, metric: str, inplace: bool = False):
    """A float32 torch tensor ready for `block_distance` (normalised for cosine).

    With inplace=True a contiguous float32 array is normalised in its own memory (no copy: at
    MSMT17 scale the gallery features alone are 670 MB); the values equal F.normalize's.
    """
    import torch

    if metric not in METRICS:
        raise ValueError(f"unknown distance {metric!r} (expected one of {', '.join(METRICS)})")
    arr = np.ascontiguousarray(feats, dtype=np.float32)
    x = torch.from_numpy(arr if (inplace or arr is not feats) else arr.copy() if metric == "cosine" else arr)
    if metric == "cosine":
        x.div_(torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True).clamp_min_(1e-12))
    return x


def block_distance(q, g, metric: str, g_sq=None):
    """Distances (B, G) between prepared query rows `q` and prepared gallery `g`."""
    sim = q @ g.T
    if metric == "cosine":
        return sim.neg_().add_(1.0)
    if g_sq is None:
        g_sq = (g * g).sum(1)
    q_sq = (q * q).sum(1, keepdim=True)
    return sim.mul_(-2.0).add_(q_sq).add_(g_sq)


def block_rows(num_gallery: int, budget_bytes: int = 256 << 20, per_item: int = 48) -> int:
    """Query rows per block so that the (B, G) working arrays stay within `budget_bytes`."""
    return int(max(8, min(2048, budget_bytes // max(1, num_gallery * per_item))))


def iter_distance_blocks(q, g, metric: str, rows: int) -> Iterator[tuple[int, object]]:
    """(start, distances) for consecutive blocks of query rows."""
    g_sq = (g * g).sum(1) if metric == "euclidean" else None
    for start in range(0, q.shape[0], rows):
        yield start, block_distance(q[start:start + rows], g, metric, g_sq)
