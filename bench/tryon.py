"""Benchmark `reid tryon`'s pipeline on tiny random-weight IDM-VTON models (CPU): seconds per pair.

Cases: the default (guidance 2.0: two try-on U-Net branches, garment U-Net every step, IP-Adapter),
guidance off (1.0: one branch, no unconditional reference), no IP-Adapter, and --offload's hooks
with the CPU as execution device (pure hook overhead: nothing moves). Tiny models measure the
pipeline's overhead and relative costs, not the real SDXL-size model (see docs/tryon.md).

    .venv/bin/python bench/tryon.py [--repeats 3] [--steps 5] [--size 128x96] [--pairs 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from reidtools.testing.idmvton import write_tiny_idmvton
from reidtools.generate.tryon.pipeline import TryOnPipeline, TryOnSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--size", default="128x96")
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(3 * args.pairs)]
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 8: -w // 8] = 255
    mask = Image.fromarray(m, "L")
    with tempfile.TemporaryDirectory() as d:
        write_tiny_idmvton(d)
        pipes = {"default": TryOnPipeline.from_pretrained(d),
                 "no_ip_adapter": TryOnPipeline.from_pretrained(d, ip_adapter=False),
                 "offload_hooks_cpu": TryOnPipeline.from_pretrained(d, offload=True)}
        cases = {"default": ("default", 2.0), "no_guidance": ("default", 1.0),
                 "no_ip_adapter": ("no_ip_adapter", 2.0), "offload_hooks_cpu": ("offload_hooks_cpu", 2.0)}
        for p in pipes.values():   # warm-up
            p(imgs[0], mask, imgs[1], imgs[2], 0, TryOnSettings(steps=1, size=(h, w)))
        results = {}
        for name, (key, guidance) in cases.items():
            s = TryOnSettings(steps=args.steps, guidance=guidance, size=(h, w))
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for i in range(args.pairs):
                    pipes[key](imgs[3 * i], mask, imgs[3 * i + 1], imgs[3 * i + 2], i, s)
                times.append((time.perf_counter() - t) / args.pairs)
            results[name] = statistics.median(times)
    base = results["default"]
    print(f"tiny IDM-VTON pipeline, {h}x{w}, {args.steps} DDPM steps, {args.pairs} pairs, "
          f"median of {args.repeats}, s/pair:")
    for name, sec in results.items():
        print(f"  {name:18s} {sec:8.4f}  ({base / sec:.2f}x vs default)")


if __name__ == "__main__":
    main()
