"""Throughput of DLCR prediction refinement (`reid refine`'s step) at PRCC scale, on this CPU.

    .venv/bin/python bench/refine_speed.py [--views 4,10] [--repeats 3] [--dim 4096] [--no-loop]

PRCC clothes-changing protocol sizes (Simple-CCReID's PRCC loader: gallery camera A 3,384 images,
camera-C queries 3,543, 71 test identities), random features with identity structure, in the
feature size of CAL's ResNet-50 (4,096; the model DLCR's released code refines). Each query has N
variants (its own identity centre plus noise). Measured, from features in memory:

- distances: the plain query-gallery cosine distances (what `reid eval` computes), the baseline;
- refine: `refined_distances(...)` for all queries: the N variant views' distances, junk removal,
  per-view top-5, the vote aggregation and the re-scoring (the whole refinement step);
- evaluate: `evaluate_refined` (refinement + CMC/mAP/mINP under the prcc protocol);
- loop (unless --no-loop): a plain transcription of the released code's per-query dict loop on the
  same similarity matrices (its similarity matrices precomputed, not timed), for comparison.

Throughput is queries/s (each query with its N variants), median of --repeats runs. DLCR reports
642.6 img/s for "Prediction Refinement (Algorithm 1)" on an A100 (supplementary Table A6).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

NQ, NG, IDS = 3543, 3384, 71


def make(dim: int, views: int, seed: int = 0):
    from reidtools.metrics.protocols import Meta
    from reidtools.metrics.refine import Views

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((IDS, dim), dtype=np.float32)
    qp, gp = rng.integers(0, IDS, NQ), np.arange(NG) % IDS

    def feats(pids, scale):
        return centers[pids] + scale * rng.standard_normal((len(pids), dim), dtype=np.float32)

    # noise 6 on 4,096-d: plain rank-1 about 0.7 (not a trivial ranking); variants are independent
    # draws around the query's identity centre
    qf, gf = feats(qp, 6.0), feats(gp, 6.0)
    vf = feats(np.repeat(qp, views), 6.0)
    q = Meta([f"q{i}" for i in range(NQ)], qp.astype(np.int64), np.full(NQ, 3, np.int64))
    g = Meta([f"g{i}" for i in range(NG)], gp.astype(np.int64), np.ones(NG, np.int64))
    return qf, gf, Views(vf, np.arange(NQ * views).reshape(NQ, views)), q, g


def released_loop(sims, q_pids, q_cams, g_pids, g_cams, top=5):
    """The released code's dict loop (Simple-CCReID/evaluation/test_reranking.py), transcribed."""
    original = sims[0].copy()
    for j in range(len(q_pids)):
        junk = np.flatnonzero((g_pids == q_pids[j]) & (g_cams == q_cams[j]))
        per_view = []
        for s in sims:
            order = np.argsort(s[j])
            order = order[np.isin(order, junk, invert=True)][-top:]
            per_view.append({g_pids[i]: s[j][i] for i in order})
        agg = dict(per_view[0])
        for d in per_view:
            mx = max(d.values())
            for p, v in d.items():
                if p in agg:
                    agg[p] += (v / mx) * v
        for i in np.argsort(original[j])[-top:]:
            original[j, i] = max(agg[g_pids[i]], original[j, i])
    return original


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", default="4,10")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--no-loop", action="store_true")
    args = ap.parse_args()
    import torch

    from reidtools.metrics.protocols import PROTOCOLS
    from reidtools.metrics.refine import evaluate_refined, refined_distances

    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} threads {torch.get_num_threads()}; python {sys.version.split()[0]}")
    print(f"# PRCC cc: {NQ} queries x {NG} gallery, {args.dim}-d, repeats {args.repeats} (median)")
    proto = PROTOCOLS["prcc"]
    for n in [int(v) for v in args.views.split(",")]:
        qf, gf, views, q, g = make(args.dim, n)
        plain = lambda: refined_distances(qf, gf, views, q, g, proto, refine=False)(0, NQ)  # noqa: E731
        ref = lambda: refined_distances(qf, gf, views, q, g, proto, top=5)(0, NQ)  # noqa: E731
        t_plain, _ = timed(plain, args.repeats)
        t_ref, all_ref = timed(ref, args.repeats)
        t = time.perf_counter()
        res = evaluate_refined(qf, gf, q, g, views, "prcc", top=5)
        t_full = time.perf_counter() - t
        base = evaluate_refined(qf, gf, q, g, views, "prcc", refine=False)
        print(f"views {n}: plain distances {t_plain:.2f} s | refine {t_ref:.2f} s = {NQ / t_ref:.0f} queries/s "
              f"({NQ * (1 + n) / t_ref:.0f} images/s; runs {', '.join(f'{x:.2f}' for x in all_ref)}), "
              f"{t_ref / t_plain:.1f}x the plain distances | refine+metrics {t_full:.2f} s = {NQ / t_full:.0f} q/s "
              f"(1 run) | rank1 {base['rank1']:.4f} -> {res['rank1']:.4f}, mAP {base['mAP']:.4f} -> {res['mAP']:.4f}")
        if not args.no_loop:
            qn, gn = torch.nn.functional.normalize(torch.from_numpy(qf)), torch.nn.functional.normalize(torch.from_numpy(gf))
            vn = torch.nn.functional.normalize(torch.from_numpy(views.feats))
            t = time.perf_counter()
            sims = [(qn @ gn.T + 1).numpy()] + [(vn[torch.from_numpy(views.index[:, v])] @ gn.T + 1).numpy()
                                                 for v in range(n)]
            t_sims = time.perf_counter() - t
            t = time.perf_counter()
            want = released_loop(sims, q.pid, q.camid, g.pid, g.camid)
            t_loop = time.perf_counter() - t
            diff = float(np.abs((2.0 - ref().numpy()) - want).max())
            total = t_sims + t_loop
            print(f"views {n}: released code, transcribed: similarities (one matmul per view) {t_sims:.2f} s + dict loop "
                  f"{t_loop:.2f} s = {total:.2f} s = {NQ / total:.0f} queries/s (1 run) -> refine {total / t_ref:.2f}x "
                  f"its speed; max |refined similarity difference| {diff:.2e}")

if __name__ == "__main__":
    main()
