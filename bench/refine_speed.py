"""Throughput of DLCR prediction refinement (`reid refine`'s step) at PRCC scale, on this CPU.

    .venv/bin/python bench/refine_speed.py [--views 4[,10]] [--repeats 3] [--dim 4096] [--no-loop]

PRCC clothes-changing protocol sizes (Simple-CCReID's PRCC loader: gallery camera A 3,384 images,
camera-C queries 3,543, 71 test identities), random features with identity structure, in the
feature size of CAL's ResNet-50 (4,096; the model DLCR's released code refines). Each query has N
variants (its own identity centre plus noise). Measured, from features in memory:

- distances: the plain query-gallery cosine distances (what `reid eval` computes), the baseline;
- refine: `refined_distances(...)` for all queries: the N variant views' distances, junk removal,
  per-view top-5, the vote aggregation and the re-scoring (the whole refinement step);
- released (unless --no-loop): the released code's method, transcribed: one full similarity matmul
  per view (the released code loops over query rows; a full matmul is its best case here), then its
  per-query dict loop; its refined similarities are compared with `reid`'s.

The three run in turn within each repeat (a busy machine slows them alike); figures are medians.

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
    ap.add_argument("--views", default="4")
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
        qn, gn = torch.nn.functional.normalize(torch.from_numpy(qf)), torch.nn.functional.normalize(torch.from_numpy(gf))
        vn = torch.nn.functional.normalize(torch.from_numpy(views.feats))

        def plain():
            return refined_distances(qf, gf, views, q, g, proto, refine=False)(0, NQ)

        def ref():
            return refined_distances(qf, gf, views, q, g, proto, top=5)(0, NQ)

        def released():
            sims = [(qn @ gn.T + 1).numpy()] + [(vn[torch.from_numpy(views.index[:, v])] @ gn.T + 1).numpy()
                                                 for v in range(n)]
            t = time.perf_counter()
            out = released_loop(sims, q.pid, q.camid, g.pid, g.camid)
            return sims, out, time.perf_counter() - t

        # the methods alternate within each repeat, so a busy machine slows them alike
        times = {"plain": [], "refine": [], "released": [], "loop": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            plain()
            times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got = ref()
            times["refine"].append(time.perf_counter() - t)
            if not args.no_loop:
                t = time.perf_counter()
                sims, want, t_loop = released()
                times["released"].append(time.perf_counter() - t)
                times["loop"].append(t_loop)
        if not args.no_loop:
            # the vote alone (top-5 per view, aggregation, re-scoring) on the precomputed similarities,
            # in the blocks refined_distances uses: the counterpart of the released dict loop
            from reidtools.metrics.refine import _votes

            stack = torch.from_numpy(np.stack(sims))
            present = torch.ones(NQ, n, dtype=torch.bool)
            gp = torch.from_numpy(g.pid)
            step = max(1, (64 << 20) // ((1 + n) * NG * 8))
            for _ in range(args.repeats):
                t = time.perf_counter()
                for a in range(0, NQ, step):
                    _votes(stack[:, a:a + step], gp, present[a:a + step], 5)
                times.setdefault("vote", []).append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        res = evaluate_refined(qf, gf, q, g, views, "prcc", top=5)
        base = evaluate_refined(qf, gf, q, g, views, "prcc", refine=False)
        fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
        print(f"views {n}: plain distances {med['plain']:.2f} s ({fmt(times['plain'])}) | refine {med['refine']:.2f} s "
              f"({fmt(times['refine'])}) = {NQ / med['refine']:.0f} queries/s = {NQ * (1 + n) / med['refine']:.0f} "
              f"images/s, {med['refine'] / med['plain']:.1f}x the plain distances")
        print(f"views {n}: prcc cc rank1 {base['rank1']:.4f} -> {res['rank1']:.4f}, mAP {base['mAP']:.4f} -> {res['mAP']:.4f}")
        if args.no_loop:
            continue
        print(f"views {n}: released code, transcribed: {med['released']:.2f} s ({fmt(times['released'])}; dict loop "
              f"alone {med['loop']:.2f} s) = {NQ / med['released']:.0f} queries/s -> refine runs at "
              f"{med['released'] / med['refine']:.2f}x its speed")
        print(f"views {n}: the vote alone: reid {med['vote']:.2f} s ({fmt(times['vote'])}) vs the released dict loop "
              f"{med['loop']:.2f} s -> {med['loop'] / med['vote']:.1f}x")
        # differences come from float rounding only where a view's 5th and 6th scores (nearly) tie:
        # the two computations may then take different top-5 sets
        diff = np.abs((2.0 - got.numpy()) - want).max(1)
        bad = np.flatnonzero(diff > 1e-4)
        gaps = np.stack([np.diff(np.sort(s_, axis=1)[:, -6:-4], axis=1)[:, 0] for s_ in sims]).min(0)
        print(f"views {n}: refined rows equal to the released loop's (|diff| <= 1e-4): {NQ - len(bad)} of {NQ}; "
              f"the {len(bad)} others all have a 5th/6th score gap < 1e-5 in some view: "
              f"{bool((gaps[bad] < 1e-5).all()) if len(bad) else 'n/a'} (largest such gap {gaps[bad].max() if len(bad) else 0:.1e})")

if __name__ == "__main__":
    main()
