"""`reid train`'s record memory and loader speed: the shard index (ImageRef: shard, offset, size) vs
every encoded image kept in RAM (`read_records(..., in_memory=True)`, the code before the index).

    .venv/bin/python bench/train_memory.py [--counts 10000,50000,200000] [--work DIR] [--batches 20]

Shards of N training samples (1,000 per shard), each a 128x64 PNG like the inpainted variants DLCR
trains on (`reid inpaint` writes PNG at the source size), written once into --work. For each N and
mode, a fresh process runs `read_records` over them and reports its peak RSS (ru_maxrss) and the
time to read; then one process builds --batches batches of 64 at 256x128 with augmentation through
`BatchLoader` (what one DataLoader worker does) from each kind of record: images/s per worker.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def png_bytes(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:128, 0:64]
    img = np.stack([(x * 3 + y) % 256, (y * 2) % 256, (x * 4) % 256], -1).astype(np.int16)
    img = np.clip(img + r.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write(folder: str, n: int) -> list[str]:
    """N samples in shards of 1,000 (raw tar members: the bytes `reid` would write)."""
    import tarfile

    os.makedirs(folder, exist_ok=True)
    done = os.path.join(folder, "DONE")
    if not os.path.exists(done):
        images = [png_bytes(s) for s in range(16)]
        for s in range(0, n, 1000):
            with tarfile.open(os.path.join(folder, f"train-{s // 1000:06d}.tar"), "w") as tar:
                for i in range(s, min(s + 1000, n)):
                    meta = json.dumps({"dataset": "bench", "split": "train", "pid": i // 20, "camid": i % 6,
                                       "clothes": f"{i // 20}_{i % 2}"}).encode()
                    for field, data in (("json", meta), ("png", images[i % 16])):
                        info = tarfile.TarInfo(f"s{i:07d}.{field}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        open(done, "w").close()
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tar"))


def child_read(shards: list[str], in_memory: bool) -> dict:
    from reidtools.reid.data import read_records

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    recs = read_records(shards, generated=False, in_memory=in_memory)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"records": len(recs), "read_s": round(wall, 2), "peak_rss_mib": round(peak / 1024, 1),
            "rss_over_imports_mib": round((peak - base) / 1024, 1)}


def child_load(shards: list[str], in_memory: bool, batches: int) -> dict:
    import numpy as np

    from reidtools.reid.data import AugmentConfig, BatchLoader, read_records

    recs = read_records(shards, generated=False, in_memory=in_memory)
    for r in recs:
        r.label, r.clothes_label = 0, 0
    order = np.random.default_rng(0).permutation(len(recs))[: 64 * batches]
    plan = [order[i:i + 64].tolist() for i in range(0, len(order), 64)]
    loader = BatchLoader(recs, plan, size=(256, 128), seed=0, epoch=0, augment_cfg=AugmentConfig())
    loader[0]
    t0 = time.perf_counter()
    for i in range(len(plan)):
        loader[i]
    wall = time.perf_counter() - t0
    return {"images_per_s_per_worker": round(64 * len(plan) / wall, 1)}


def spawn(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10000,50000,200000")
    ap.add_argument("--work", default=None)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)   # what folder in_memory
    args = ap.parse_args()
    if args.child:
        what, folder, mem = args.child
        shards = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tar"))
        res = child_read(shards, mem == "1") if what == "read" else child_load(shards, mem == "1", args.batches)
        print(json.dumps(res))
        return
    work = args.work or tempfile.mkdtemp(prefix="reid-train-memory-")
    print(f"# work {work}; PNG {len(png_bytes(0))} bytes per image", flush=True)
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        folder = os.path.join(work, str(n))
        write(folder, n)
        row = {"samples": n}
        for mode, mem in (("index", "0"), ("in_memory", "1")):
            row[mode] = spawn("--child", "read", folder, mem)
        row["rss_ratio"] = round(row["in_memory"]["rss_over_imports_mib"] / max(row["index"]["rss_over_imports_mib"], 0.1), 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    folder = os.path.join(work, str(min(int(c) for c in args.counts.split(","))))
    for mode, mem in (("index", "0"), ("in_memory", "1")):
        print(json.dumps({"loader": mode, **spawn("--child", "load", folder, mem, "--batches", str(args.batches))}),
              flush=True)


if __name__ == "__main__":
    main()
