"""Throughput of `reid posegen poses`' target rendering (targets/s), CPU or GPU.

Targets: synthetic-dataset poses lifted to 3D, random azimuths, per-identity body shapes, rendered at
--size with skeleton, depth and normal maps (the work `reid posegen poses` does per target, minus
shard I/O). Measures, medians over --repeats:

- targets: `render_targets` (lifting excluded, done once) in batches of --batch, every map made
  (skeleton drawn, depth/normal encoded): what `reid posegen poses` does per target minus shard I/O;
- baseline: the same scenes rendered one at a time (`render.render` with a batch of 1, no maps).

Wall time and process CPU time are both reported: on a shared machine the CPU time is the figure
to compare.

    .venv/bin/python bench/posegen_poses.py --threads 1               # CPU
    .venv/bin/python bench/posegen_poses.py --device cuda --batch 256  # GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256x128")
    ap.add_argument("--targets", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from reidtools.data.synth import write_dataset
    from reidtools.generate.posegen import body as B
    from reidtools.generate.posegen import lift as L
    from reidtools.generate.posegen import render as R
    from reidtools.generate.posegen.targets import Target, _scene, render_targets
    from reidtools.shards import image, iter_samples, meta

    h, w = (int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, ids=8, outfits=2, cams=2, images_per=2)
        lifted = []
        for s in iter_samples([f"{tmp}/train-000000.tar"]):
            iw, ih = image(s).size
            lifted.append(L.lift(meta(s)["pose"], (ih, iw)))
    r = np.random.default_rng(0)
    targets = []
    for i in range(a.targets):
        lf = lifted[i % len(lifted)]
        shape = B.BodyShape.sample(r)
        targets.append(Target(B.retarget(lf.joints, shape), shape, float(r.uniform(0, 360)), 0.0,
                              L.frame_source(lf, (h, w))))
    dev = None if a.device == "cpu" else a.device

    def sync():
        if dev is not None and dev.startswith("cuda"):
            torch.cuda.synchronize()

    def full_targets():
        for i in range(0, len(targets), a.batch):
            render_targets(targets[i:i + a.batch], (h, w), ("skeleton", "depth", "normal"), device=dev)
        sync()

    scenes = [_scene(t, (h, w)) for t in targets]

    def baseline():
        for c in scenes:
            R.render(c[0][None], c[1][None], c[2][None], (h, w), device=a.device)
        sync()

    rows = {}
    base_name = "baseline: one at a time, no maps"
    for name, fn in ((base_name, baseline), ("targets (batched render + maps)", full_targets)):
        fn()   # warm-up
        wall, cpu = [], []
        for _ in range(a.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        rows[name] = (statistics.median(wall), statistics.median(cpu))
    bw, bc = rows[base_name]
    print(f"device {a.device}, size {h}x{w}, {a.targets} targets, batch {a.batch}, threads {torch.get_num_threads()}")
    for name, (tw, tc) in rows.items():
        print(f"{name:34s} wall {a.targets / tw:7.1f} targets/s (x{bw / tw:.2f})   "
              f"cpu {a.targets / tc:7.1f} targets/s (x{bc / tc:.2f})")


if __name__ == "__main__":
    main()
