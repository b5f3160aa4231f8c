"""Benchmark `reid tryoff`'s pipeline on tiny random-weight models (CPU): seconds per garment.

Compares batch size 1 (baseline) with batch size 4, and guidance on (scale 2.5, two U-Net branches)
with guidance off (scale 1.0). Tiny models measure the pipeline's overhead and scaling, not the
real model's speed (see docs/tryoff.md for the full-size cost).

    .venv/bin/python bench/tryoff.py [--repeats 3] [--steps 10] [--size 128x96]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from reidtools.testing.tryoff import write_tiny_tryoff
from reidtools.generate.tryoff.pipeline import TryOffPipeline, TryOffSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", default="128x96")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        pipe = TryOffPipeline.from_pretrained(**write_tiny_tryoff(d))
        rng = np.random.default_rng(0)
        people = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(4)]
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2, w // 8: -w // 8] = 255
        masks = [Image.fromarray(mask, "L")] * 4
        cases = {"batch1_cfg": (1, 2.5), "batch4_cfg": (4, 2.5), "batch1_nocfg": (1, 1.0)}
        pipe(people[:1], masks[:1], [0], TryOffSettings(steps=1, size=(h, w)))  # warm-up
        results = {}
        for name, (bs, scale) in cases.items():
            times = []
            for r in range(args.repeats):
                t = time.perf_counter()
                for i in range(0, 4, bs):
                    pipe(people[i:i + bs], masks[i:i + bs], list(range(i, i + bs)),
                         TryOffSettings(steps=args.steps, scale=scale, size=(h, w)))
                times.append((time.perf_counter() - t) / 4)
            results[name] = statistics.median(times)
        base = results["batch1_cfg"]
        print(f"tiny TryOffAnyone pipeline, {h}x{w}, {args.steps} DDIM steps, median of {args.repeats}, s/garment:")
        for name, sec in results.items():
            print(f"  {name:14s} {sec:8.4f}  ({base / sec:.2f}x vs batch1_cfg)")


if __name__ == "__main__":
    main()
