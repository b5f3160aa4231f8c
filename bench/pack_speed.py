"""Throughput of `reid pack` (scan + pass-through write into shards) on a Market-1501-style folder,
against two baselines on the same files: a plain tarfile copy (the floor: I/O only) and a naive
converter that decodes and re-encodes every JPEG with PIL (what a pack without pass-through costs).

    .venv/bin/python bench/pack_speed.py [--images 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import tarfile
import tempfile
import time

import numpy as np
from PIL import Image

from reidtools.data.pack import scan_dataset, write_scan


def make_market(root: str, n: int) -> None:
    rng = np.random.default_rng(0)
    folders = ("bounding_box_train", "query", "bounding_box_test")
    for f in folders:
        os.makedirs(os.path.join(root, f))
    for i in range(n):
        arr = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
        name = f"{i // 6 + 1:04d}_c{i % 6 + 1}s1_{i:06d}_01.jpg"
        Image.fromarray(arr).save(os.path.join(root, folders[i % 3], name), quality=90)


def run_pack(root: str, out: str) -> None:
    write_scan(scan_dataset("market1501", root), out, maxcount=1000)


def run_tar_copy(root: str, out: str) -> None:
    os.makedirs(out)
    with tarfile.open(os.path.join(out, "all.tar"), "w") as tar:
        for folder in sorted(os.listdir(root)):
            for name in sorted(os.listdir(os.path.join(root, folder))):
                tar.add(os.path.join(root, folder, name), arcname=f"{folder}_{name}")


def run_reencode(root: str, out: str) -> None:
    os.makedirs(out)
    with tarfile.open(os.path.join(out, "all.tar"), "w") as tar:
        for folder in sorted(os.listdir(root)):
            for name in sorted(os.listdir(os.path.join(root, folder))):
                buf = io.BytesIO()
                Image.open(os.path.join(root, folder, name)).convert("RGB").save(buf, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"{folder}_{name}")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pack_bench_")
    try:
        root = os.path.join(tmp, "market")
        make_market(root, args.images)
        results = {}
        for name, fn in (("tar copy (I/O floor)", run_tar_copy), ("reid pack (pass-through)", run_pack),
                         ("decode + re-encode", run_reencode)):
            times = []
            for r in range(args.repeats):
                out = os.path.join(tmp, f"out_{name[:4]}_{r}")
                t0 = time.perf_counter()
                fn(root, out)
                times.append(time.perf_counter() - t0)
                shutil.rmtree(out)
            results[name] = statistics.median(times)
        base = results["reid pack (pass-through)"]
        print(f"{args.images} images 128x64 JPEG, median of {args.repeats}")
        print("| method | median s | images/s | time vs reid pack |")
        print("| --- | --- | --- | --- |")
        for name, t in results.items():
            print(f"| {name} | {t:.3f} | {args.images / t:.0f} | {t / base:.2f}x |")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
