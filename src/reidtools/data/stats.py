"""Dataset statistics over shards (counts per split, identity, camera, clothes id and modality) and
summaries of the per-shard run records that map commands write (`NAME.stats.json`)."""

from __future__ import annotations

import glob
import json
import os
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


# ----------------------------------------------------------------------------- run records
def find_run_records(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """(record files, output shards without a record) for run folders or `*.stats.json` paths."""
    from reidtools.errors import ReidError
    from reidtools.shards.mapping import RECORD_SUFFIX, record_path

    records: list[str] = []
    unrecorded: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(glob.escape(path), "*" + RECORD_SUFFIX)))
            shards = sorted(glob.glob(os.path.join(glob.escape(path), "*.tar")))
            claimed = set(found)
            unrecorded += [s for s in shards if record_path(s) not in claimed and not _stdin_shard(s, claimed)]
            if not found and not shards:
                raise ReidError(f"{path}: holds no run record (*{RECORD_SUFFIX}) and no shard")
            records += found
        elif path.endswith(RECORD_SUFFIX) and os.path.isfile(path):
            records.append(path)
        else:
            raise ReidError(f"{path}: not a run folder or a *{RECORD_SUFFIX} record")
    return records, unrecorded


def _stdin_shard(shard: str, records: set[str]) -> bool:
    # stdin-NNNNNN.tar shards share one record, stdin.stats.json
    return os.path.basename(shard).startswith("stdin-") and \
        os.path.join(os.path.dirname(shard), "stdin.stats.json") in records


def run_stats(paths: Iterable[str]) -> dict:
    """Summary of the per-shard run records that map commands write beside their output shards."""
    from reidtools.errors import ReidError

    records, unrecorded = find_run_records(paths)
    shards, reasons = [], Counter()
    for path in records:
        try:
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ReidError(f"{path}: not a readable run record ({getattr(exc, 'strerror', None) or exc})") from None
        if not isinstance(rec, dict) or "status" not in rec:
            raise ReidError(f"{path}: not a run record (no 'status')")
        missing = [o for o in rec.get("outputs", []) if rec["status"] == "done" and not os.path.exists(o)]
        shards.append({"record": path, "input": rec.get("input"), "tool": rec.get("tool"),
                       "status": "missing" if missing else rec["status"],
                       "samples_in": rec.get("samples_in", 0), "samples_out": rec.get("samples_out", 0),
                       "elapsed_s": rec.get("elapsed_s", 0.0), "failures": rec.get("failures", [])})
        for f in rec.get("failures", []):
            reasons[f.get("reason", "?")] += 1
    status = Counter(s["status"] for s in shards)
    total = {"records": len(shards), "done": status["done"], "failed": status["failed"],
             "missing": status["missing"], "unrecorded": len(unrecorded),
             "samples_in": sum(s["samples_in"] for s in shards if s["status"] == "done"),
             "samples_out": sum(s["samples_out"] for s in shards if s["status"] == "done"),
             "elapsed_s": round(sum(s["elapsed_s"] for s in shards), 3)}
    return {"shards": shards, "unrecorded": unrecorded, "failures": dict(reasons.most_common()), "total": total}


def format_run_table(stats: dict) -> str:
    rows = [("record", "status", "in", "out", "elapsed_s")]
    for s in stats["shards"]:
        rows.append((os.path.basename(s["record"]), s["status"], s["samples_in"], s["samples_out"], s["elapsed_s"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    t = stats["total"]
    lines.append("")
    lines.append(f"{t['records']} record(s): {t['done']} done, {t['failed']} failed, {t['missing']} done but "
                 f"output missing; {t['unrecorded']} shard(s) without a record")
    lines.append(f"samples (done shards): {t['samples_in']} in, {t['samples_out']} out; {t['elapsed_s']} s in all")
    for reason, n in stats["failures"].items():
        lines.append(f"failed: {reason}" + (f" ({n} shards)" if n > 1 else ""))
    for shard in stats["unrecorded"]:
        lines.append(f"no record: {shard}")
    return "\n".join(lines)
