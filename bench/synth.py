"""Benchmark and sanity study of the synthetic dataset.

1. Throughput at 128x64: rendering only, rendering + writing shards (JPEG/PNG encoding, tar), and,
   as the baseline floor, encoding + writing already-rendered samples. Median of --repeats runs.
2. Difficulty: a naive model (raw pixels, 32x16, L2-normalised, cosine) ranks the gallery for each
   query under a same-clothes protocol (gallery: same id only with the query's clothes, other
   cameras) and a clothes-changing protocol (gallery: same id only in other clothes). The dataset is
   meant to make the second clearly harder.

    .venv/bin/python bench/synth.py [--ids 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from reidtools.data.synth import iter_synth, write_dataset
from reidtools.shards import SplitWriter


def _time(fn, repeats):
    """(median wall seconds, median CPU seconds of this process): on a shared, loaded machine the
    CPU time is the fairer figure (one core's worth of work)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def throughput(opts, repeats):
    n = opts["ids"] * opts["outfits"] * opts["cams"] * opts["images_per"]
    list(iter_synth(**{**opts, "ids": 2}))  # warm caches (backgrounds) and imports
    t_render = _time(lambda: list(iter_synth(**opts)), repeats)
    samples = list(iter_synth(**opts))

    def encode_only():
        with tempfile.TemporaryDirectory() as d, SplitWriter(d, resume=False) as w:
            for s in samples:
                w.write(s["json"]["split"], s)

    def full():
        with tempfile.TemporaryDirectory() as d:
            write_dataset(d, **opts)

    t_encode = _time(encode_only, repeats)
    t_full = _time(full, repeats)
    return n, {"render only": t_render, "encode + write (baseline floor)": t_encode,
               "render + write (reid synth)": t_full}


def _ap(good, order):
    hits = np.isin(order, good)
    if not hits.any():
        return None, None
    ranks = np.nonzero(hits)[0]
    precision = np.arange(1, len(ranks) + 1) / (ranks + 1)
    return float(ranks[0] == 0), float(precision.mean())


def _pixels(s):
    x = np.asarray(s["jpg"].resize((16, 32)), np.float32).ravel()
    return x - x.mean()


def _identity_cues(s):
    """Oracle: median skin and hair colour (chromaticity, so camera gain cancels) and the person's
    height/width from the ground-truth parse map: shows the identity signal is there to learn."""
    img = np.asarray(s["jpg"], np.float32)
    p = np.asarray(s["parse.png"])
    out = []
    for labels in ((13, 14, 15, 16, 17), (2,)):
        sel = np.isin(p, labels)
        c = np.median(img[sel], 0) if sel.sum() > 3 else np.zeros(3)
        out.extend(c / (c.sum() + 1e-6))
    rows, cols = np.nonzero(p)
    out += [(rows.max() - rows.min()) / p.shape[0], np.ptp(cols) / (rows.max() - rows.min() + 1)]
    x = np.array(out, np.float32) * [4, 4, 4, 4, 4, 4, 1, 1]
    return x - 0.5


def difficulty(opts, feature):
    feats, meta = [], []
    for s in iter_synth(**opts):
        if s["json"]["split"] == "train":
            continue
        x = feature(s)
        feats.append(x / (np.linalg.norm(x) + 1e-6))
        meta.append((s["json"]["split"], s["json"]["pid"], s["json"]["camid"], s["json"]["clothes"]))
    f = np.stack(feats)
    split = np.array([m[0] for m in meta])
    pid = np.array([m[1] for m in meta])
    cam = np.array([m[2] for m in meta])
    clo = np.array([m[3] for m in meta])
    q, g = np.nonzero(split == "query")[0], np.nonzero(split == "gallery")[0]
    sim = f[q] @ f[g].T
    out = {}
    for proto in ("same-clothes", "clothes-changing"):
        r1, aps = [], []
        for i, qi in enumerate(q):
            same_id = pid[g] == pid[qi]
            # cross-camera only; each protocol keeps the negatives and one kind of positive
            keep = (cam[g] != cam[qi]) & (~same_id | ((clo[g] == clo[qi]) == (proto == "same-clothes")))
            gi = np.nonzero(keep)[0]
            order = gi[np.argsort(-sim[i, gi], kind="stable")]
            a, b = _ap(np.nonzero(same_id)[0], order)
            if a is not None:
                r1.append(a)
                aps.append(b)
        out[proto] = (100 * np.mean(r1), 100 * np.mean(aps), len(r1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    opts = dict(ids=args.ids, outfits=3, cams=4, images_per=2, size=(128, 64), seed=0)
    n, rates = throughput(opts, args.repeats)
    print(f"throughput, {n} images at 128x64 (median of {args.repeats}):")
    for name, (wall, cpu) in rates.items():
        print(f"  {name:34s} {n / wall:8.0f} img/s wall  {n / cpu:8.0f} img/s per CPU-second")
    study = {**opts, "ids": max(args.ids, 40), "images_per": 3}
    for title, feature in (("naive raw-pixel model", _pixels), ("oracle identity cues (skin, hair, body shape)", _identity_cues)):
        print(f"{title}, query -> gallery across cameras:")
        for proto, (r1, m, nq) in difficulty(study, feature).items():
            print(f"  {proto:18s} rank-1 {r1:5.1f}%  mAP {m:5.1f}%  ({nq} queries)")


if __name__ == "__main__":
    main()
