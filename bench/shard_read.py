"""Shard read throughput (decoded images/s) vs the same JPEGs read from a folder with PIL.

    .venv/bin/python bench/shard_read.py [--images 4000] [--size 256x128] [--repeats 5]

Writes the images once as a folder of JPEG files and once as shards (identical JPEG bytes), drops
nothing from the page cache (both are read warm, after one untimed pass), then times full decoding
(PIL load + RGB) through: the folder, `reidtools.shards.iter_samples` + `image()`, and
`webdataset.WebDataset` + PIL for reference. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from reidtools.shards import ShardWriter, expand_inputs, image, iter_samples


def make_jpegs(n: int, size: tuple[int, int]) -> list[bytes]:
    rng = np.random.default_rng(0)
    h, w = size
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        arr = np.kron(np.roll(base, i, axis=0), np.ones((8, 8, 1), dtype=np.uint8))
        arr = (arr.astype(np.int16) + rng.integers(-20, 20, arr.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def read_folder(folder: str) -> int:
    n = 0
    for name in sorted(os.listdir(folder)):
        with Image.open(os.path.join(folder, name)) as img:
            img.convert("RGB").load()
        n += 1
    return n


def read_shards(shards: list[str]) -> int:
    n = 0
    for s in iter_samples(shards):
        image(s)
        n += 1
    return n


def read_webdataset(shards: list[str]) -> int:
    import webdataset as wds

    n = 0
    for s in wds.WebDataset(shards, shardshuffle=False):
        Image.open(io.BytesIO(s["jpg"])).convert("RGB").load()
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--size", default="256x128")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--maxcount", type=int, default=1000)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    jpegs = make_jpegs(args.images, size)
    with tempfile.TemporaryDirectory() as tmp:
        folder, shard_dir = os.path.join(tmp, "jpg"), os.path.join(tmp, "shards")
        os.makedirs(folder)
        with ShardWriter(shard_dir, prefix="train", maxcount=args.maxcount) as w:
            for i, data in enumerate(jpegs):
                with open(os.path.join(folder, f"{i:06d}.jpg"), "wb") as fh:
                    fh.write(data)
                w.write({"__key__": f"img{i:06d}", "jpg": data, "json": {"pid": i // 10, "camid": 1}})
        shards = expand_inputs([shard_dir])
        methods = {"folder+PIL": lambda: read_folder(folder), "reid shards": lambda: read_shards(shards),
                   "webdataset+PIL": lambda: read_webdataset(shards)}
        times: dict[str, list[float]] = {k: [] for k in methods}
        for fn in methods.values():
            fn()  # warm the page cache and imports
        for _ in range(args.repeats):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                count = fn()
                times[name].append(time.perf_counter() - t0)
                assert count == args.images
    base = statistics.median(times["folder+PIL"])
    print(f"{args.images} JPEGs of {args.size}, {len(shards)} shards, median of {args.repeats} runs")
    print(f"{'method':<16} {'median s':>9} {'images/s':>10} {'vs folder':>10}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16} {med:>9.3f} {args.images / med:>10.0f} {base / med:>9.2f}x")


if __name__ == "__main__":
    main()
