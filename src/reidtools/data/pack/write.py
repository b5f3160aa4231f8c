"""Write a converter's scan into split shards and summarise it.

Images pass through as their original bytes (`jpg` for .jpg/.jpeg, `png` for .png); .bmp is
converted to PNG (lossless). Every key is checked for uniqueness before anything is written, so a
bad dataset fails before the first shard. Writing goes through SplitWriter: shards are atomic and a
re-run skips finished shards without reading their images again.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from typing import Callable

from reidtools.errors import ReidError
from reidtools.data.pack.base import Item, Scan

SPLIT_ORDER = ("train", "val", "query", "gallery")


def check_unique(scan: Scan) -> None:
    seen: dict[str, str] = {}
    for item in scan.items:
        if item.key in seen:
            raise ReidError(f"{item.path}: gives the key {item.key!r} that {seen[item.key]} already has")
        seen[item.key] = item.path


def load_sample(item: Item) -> dict:
    ext = os.path.splitext(item.path)[1].lower()
    try:
        with open(item.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ReidError(f"{item.path}: cannot read ({exc.strerror})") from None
    if ext == ".bmp":
        from reidtools.shards.images import decode

        # the shared decoder: pixel cap, palette and 32-bit BMPs converted as the reader would
        img = decode(data, "RGB", shard=item.path, key=item.key, field="bmp")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        field, data = "png", buf.getvalue()
    else:
        field = "jpg" if ext in (".jpg", ".jpeg") else "png"
    return {"__key__": item.key, field: data, "json": dict(item.meta)}


def write_scan(scan: Scan, output: str, maxcount: int = 1000,
               progress: Callable[[int], None] | None = None) -> dict:
    """Write every item (in order) and return {"written", "skipped"} counts."""
    from reidtools.shards import SplitWriter

    check_unique(scan)
    with SplitWriter(output, maxcount=maxcount) as writer:
        for split in SPLIT_ORDER:
            for item in scan.items:
                if item.split == split:
                    writer.write(split, lambda item=item: load_sample(item))
                    if progress:
                        progress(1)
        return {"written": writer.written, "skipped": writer.skipped}


def summarise(scan: Scan) -> dict:
    """Per split: images, ids, cameras, clothes, modalities."""
    acc: dict[str, dict] = defaultdict(lambda: {"images": 0, "ids": set(), "cameras": set(), "clothes": set(),
                                                 "modalities": set()})
    for item in scan.items:
        s, m = acc[item.split], item.meta
        s["images"] += 1
        s["ids"].add(m["pid"])
        s["cameras"].add(m["camid"])
        s["clothes"].add(m["clothes"])
        s["modalities"].add(m["modality"])
    splits = {}
    for split in SPLIT_ORDER:
        if split in acc:
            s = acc[split]
            splits[split] = {"images": s["images"], "ids": len(s["ids"]), "cameras": len(s["cameras"]),
                             "clothes": len(s["clothes"]), "modalities": sorted(s["modalities"])}
    return {"splits": splits, "junk": scan.junk, "unknown": scan.unknown, "notes": list(scan.notes)}
