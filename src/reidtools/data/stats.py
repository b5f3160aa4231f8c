"""Dataset statistics over shards: counts per split, identity, camera, clothes id and modality."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from reidtools.shards import image, iter_samples, mask, meta

# metadata keys that say something about a sample's annotation state (counted as "present")
_META_KEYS = ("view", "parse_labels", "pose", "garments", "caption", "clothes_prompt", "quality",
              "source", "history", "tracklet")


class _Split:
    def __init__(self):
        self.images = 0
        self.generated = 0
        self.ids: set = set()
        self.cameras: set = set()
        self.clothes: set = set()
        self.modalities: Counter = Counter()
        self.datasets: Counter = Counter()
        self.fields: Counter = Counter()
        self.meta: Counter = Counter()

    def add(self, sample: dict, m: dict) -> None:
        self.images += 1
        self.generated += "source" in m
        # ids, cameras and clothes ids are the datasets' own numbers: count them per dataset
        ds = m.get("dataset")
        for name, target in (("pid", self.ids), ("camid", self.cameras), ("clothes", self.clothes)):
            if m.get(name) is not None:
                target.add((ds, m[name]))
        self.modalities[m.get("modality") or "unknown"] += 1
        self.datasets[m.get("dataset") or "unknown"] += 1
        self.fields.update(f for f in sample if not f.startswith("__"))
        self.meta.update(k for k in _META_KEYS if m.get(k) is not None)

    def summary(self) -> dict:
        return {"images": self.images, "generated": self.generated, "ids": len(self.ids),
                "cameras": len(self.cameras), "clothes": len(self.clothes),
                "modalities": dict(sorted(self.modalities.items())),
                "datasets": dict(sorted(self.datasets.items())),
                "fields": dict(sorted(self.fields.items())), "metadata": dict(sorted(self.meta.items()))}


def verify_sample(sample: dict) -> None:
    """Decode the image and every PNG label map fully (a corrupt one raises SampleError)."""
    image(sample)
    for field in sample:
        if field.endswith(".png") and field != "png":
            mask(sample, field, hint=None)


def dataset_stats(shards: Iterable[str], verify: bool = True) -> dict:
    """Counts per split and in total; with `verify`, every image is decoded on the way."""
    shards = list(shards)
    splits: dict[str, _Split] = defaultdict(_Split)
    total = _Split()
    for sample in iter_samples(shards):
        m = meta(sample)
        if verify:
            verify_sample(sample)
        splits[m.get("split") or "none"].add(sample, m)
        total.add(sample, m)
    order = {"train": 0, "val": 1, "query": 2, "gallery": 3}
    return {"shards": len(shards),
            "splits": {k: splits[k].summary() for k in sorted(splits, key=lambda s: (order.get(s, 9), s))},
            "total": total.summary(), "verified": verify}


def format_table(stats: dict) -> str:
    """A plain-text report: one row per split, then the fields and metadata present."""
    rows = [("split", "images", "generated", "ids", "cameras", "clothes", "modalities")]
    named = list(stats["splits"].items()) + [("total", stats["total"])]
    for name, s in named:
        mods = ",".join(f"{k}:{v}" for k, v in s["modalities"].items())
        rows.append((name, s["images"], s["generated"], s["ids"], s["cameras"], s["clothes"], mods))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    t = stats["total"]
    n = max(t["images"], 1)
    lines.append("")
    lines.append("fields:   " + ", ".join(f"{k} {v}/{t['images']}" if v != n else k for k, v in t["fields"].items()))
    if t["metadata"]:
        lines.append("metadata: " + ", ".join(f"{k} {v}/{t['images']}" if v != n else k
                                               for k, v in t["metadata"].items()))
    lines.append("datasets: " + ", ".join(f"{k} {v}" for k, v in t["datasets"].items()))
    lines.append(f"{stats['shards']} shard(s); images {'decoded and verified' if stats['verified'] else 'not decoded (--no-verify)'}")
    return "\n".join(lines)
