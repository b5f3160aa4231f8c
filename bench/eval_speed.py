"""`reid eval` speed and peak memory vs a torchreid-style evaluator, at Market-1501 and MSMT17 scale.

    .venv/bin/python bench/eval_speed.py [--scales market,msmt] [--no-msmt-baseline] [--rerank] [--repeats 3]

Random 2,048-d features with realistic structure (identity centres, a per-camera offset, noise;
Market-like distractor identities in the gallery) and the real set sizes: Market 3,368 x 15,913,
MSMT17 11,659 x 82,161. Each method runs in its own subprocess (features generated there, in
float32 chunks), so `ru_maxrss` is that method's peak resident memory; the time is from features in
memory to metrics (distances included). Methods:

- baseline: torchreid's recipe: full cosine distance matrix (torch), `np.argsort` of the whole
  matrix, a `matches` matrix, then a per-query Python loop (`eval_market1501`, CMC/AP/mINP as
  AGW computes them) -- written here, not imported;
- reid: `reidtools.metrics.evaluate` (query blocks, no gallery sort);
- baseline-rank / reid-rank (Market only): the ranking step alone, from the same precomputed
  distance matrix (`eval_market1501` vs `reidtools.metrics.protocols.rank_distmat`);
- reid-rerank (with --rerank, Market only): `evaluate(..., rerank=k1 20, k2 6, lambda 0.3)`.

Metrics of every method are compared (max abs difference of mAP, mINP and CMC@1..50).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SCALES = {
    # name: (num_query, num_gallery, identities shared by query and gallery, cameras, distractors)
    "market": (3368, 15913, 750, 6, 2793),
    "msmt": (11659, 82161, 3060, 15, 0),
}
DIM = 2048


def make_data(scale: str, seed: int = 0):
    """Query/gallery features (float32) and pid/camid arrays, generated in chunks (no float64 copy)."""
    nq, ng, ids, cams, distract = SCALES[scale]
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((ids + distract, DIM), dtype=np.float32)
    cam_bias = 0.6 * rng.standard_normal((cams, DIM), dtype=np.float32)
    qp = rng.integers(0, ids, nq)
    gp = np.concatenate([rng.integers(0, ids, ng - distract), ids + np.arange(distract)])
    qc, gc = rng.integers(1, cams + 1, nq), rng.integers(1, cams + 1, ng)

    def feats(pids, camids):
        out = np.empty((len(pids), DIM), np.float32)
        for a in range(0, len(pids), 4096):
            b = min(a + 4096, len(pids))
            noise = rng.standard_normal((b - a, DIM), dtype=np.float32)
            out[a:b] = centers[pids[a:b]] + cam_bias[camids[a:b] - 1] + 3.0 * noise
        return out

    return feats(qp, qc), feats(gp, gc), qp.astype(np.int64), gp.astype(np.int64), qc.astype(np.int64), gc.astype(np.int64)


# ----------------------------------------------------------------------------- the baseline
def baseline_distmat(qf, gf):
    import torch

    q = torch.nn.functional.normalize(torch.from_numpy(qf), p=2, dim=1)
    g = torch.nn.functional.normalize(torch.from_numpy(gf), p=2, dim=1)
    return (1 - torch.mm(q, g.t())).numpy()


def eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """torchreid's eval_market1501 recipe (+ AGW's mINP): full argsort, matches matrix, Python loop."""
    num_q, num_g = distmat.shape
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        pos_max = np.max(np.where(raw_cmc == 1))
        all_inp.append(cmc[pos_max] / (pos_max + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_rel = raw_cmc.sum()
        tmp = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0) * raw_cmc
        all_ap.append(tmp.sum() / num_rel)
    cmc = np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_cmc)
    return {"mAP": float(np.mean(all_ap)), "mINP": float(np.mean(all_inp)), "cmc": cmc.tolist()}


# ----------------------------------------------------------------------------- child: one method
def child(method: str, scale: str) -> dict:
    qf, gf, qp, gp, qc, gc = make_data(scale)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    import torch  # noqa: F401  (imported before timing in every method)

    from reidtools.metrics.protocols import Meta, evaluate, rank_distmat

    qm = Meta([f"q{i}" for i in range(len(qp))], qp, qc)
    gm = Meta([f"g{i}" for i in range(len(gp))], gp, gc)
    extra = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "baseline":
        d = baseline_distmat(qf, gf)
        t1 = time.perf_counter()
        res = eval_market1501(d, qp, gp, qc, gc)
        extra["distance_s"] = t1 - t0
    elif method == "reid":
        res = evaluate(qf, gf, qm, gm, "market", copy=False)
    elif method == "reid-rerank":
        res = evaluate(qf, gf, qm, gm, "market", rerank={"k1": 20, "k2": 6, "lambda": 0.3, "max_bytes": 20 << 30})
    elif method in ("baseline-rank", "reid-rank"):
        d = baseline_distmat(qf, gf)
        t0, c0 = time.perf_counter(), time.process_time()
        res = eval_market1501(d, qp, gp, qc, gc) if method == "baseline-rank" else rank_distmat(d, qm, gm, "market")
    else:
        raise SystemExit(f"unknown method {method}")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"method": method, "scale": scale, "wall_s": wall, "cpu_s": cpu, "peak_bytes": peak, "data_bytes": rss_data,
            "mAP": res["mAP"], "mINP": res["mINP"], "cmc": res["cmc"][:50], **extra}


def run_child(method: str, scale: str, limit_gb: float | None = None) -> dict | None:
    """One method in a fresh process; `limit_gb` caps its address space (RLIMIT_AS) so that a method
    that needs more fails with MemoryError instead of waking the OOM killer on a shared machine."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, "--scale", scale]

    def cap():
        if limit_gb:
            lim = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap)
    if proc.returncode != 0:
        print(f"  {method} @ {scale} failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="market,msmt")
    ap.add_argument("--no-msmt-baseline", action="store_true", help="skip the baseline at MSMT17 scale")
    ap.add_argument("--baseline-limit-gb", type=float, default=8.0,
                    help="address-space cap for the baseline at MSMT17 scale (it needs ~23 GB: distances "
                         "3.8 + argsort indices 7.6 + g_pids[indices] 7.6 + matches 3.8)")
    ap.add_argument("--rerank", action="store_true", help="also time re-ranking at Market scale")
    ap.add_argument("--repeats", type=int, default=1, help="runs per method; medians of wall and CPU time")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scale", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.scale)))
        return
    import platform

    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, torch threads default; "
          f"python {platform.python_version()}")
    rows = []
    for scale in args.scales.split(","):
        methods = ["baseline", "reid"]
        if scale == "market":
            methods += ["baseline-rank", "reid-rank"] + (["reid-rerank"] if args.rerank else [])
        if scale == "msmt" and args.no_msmt_baseline:
            methods.remove("baseline")
        for m in methods:
            print(f"running {m} @ {scale} ...", file=sys.stderr, flush=True)
            runs = [run_child(m, scale, args.baseline_limit_gb if (m == "baseline" and scale == "msmt") else None)
                    for _ in range(args.repeats if scale == "market" and m != "reid-rerank" else 1)]
            runs = [x for x in runs if x]
            r = None
            if runs:
                r = dict(runs[0])
                r["wall_s"] = float(np.median([x["wall_s"] for x in runs]))
                r["cpu_s"] = float(np.median([x["cpu_s"] for x in runs]))
                r["peak_bytes"] = max(x["peak_bytes"] for x in runs)
            if r:
                rows.append(r)
                print(f"  {m:14s} {scale:7s} {r['wall_s']:8.2f} s (cpu {r['cpu_s']:7.2f} s)  peak {r['peak_bytes'] / 2**30:5.2f} GiB "
                      f"(data {r['data_bytes'] / 2**30:4.2f})  mAP {r['mAP']:.6f}  R1 {r['cmc'][0]:.6f}", flush=True)
    print("\n| scale | method | wall (s) | CPU (s) | peak RSS (GiB) | of which features (GiB) | mAP | mINP | rank-1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['scale']} | {r['method']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_bytes'] / 2**30:.2f} | "
              f"{r['data_bytes'] / 2**30:.2f} | {r['mAP']:.6f} | {r['mINP']:.6f} | {r['cmc'][0]:.6f} |")
    for scale in args.scales.split(","):
        by = {r["method"]: r for r in rows if r["scale"] == scale}
        for a, b in (("baseline", "reid"), ("baseline-rank", "reid-rank")):
            if a in by and b in by:
                diff = max(abs(by[a]["mAP"] - by[b]["mAP"]), abs(by[a]["mINP"] - by[b]["mINP"]),
                           float(np.max(np.abs(np.asarray(by[a]["cmc"]) - np.asarray(by[b]["cmc"])))))
                print(f"{scale}: {b} vs {a}: {by[a]['wall_s'] / by[b]['wall_s']:.1f}x faster "
                      f"({by[a]['cpu_s'] / by[b]['cpu_s']:.1f}x less CPU), "
                      f"peak {by[b]['peak_bytes'] / 2**30:.2f} vs {by[a]['peak_bytes'] / 2**30:.2f} GiB, "
                      f"max metric difference {diff:.2e}")


if __name__ == "__main__":
    main()
