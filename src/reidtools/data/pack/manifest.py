"""`folder`: any dataset described by a manifest, CSV (header `path,pid,camid,clothes,modality,split`)
or JSON lines with the same keys; paths are relative to the manifest's folder. ROOT is the manifest
file, or a folder holding exactly one `manifest.csv` / `manifest.jsonl`."""

from __future__ import annotations

import csv
import json
import os

from reidtools.errors import ReidError
from reidtools.data.pack.base import Options, Scan, is_image, make_key

COLUMNS = ("path", "pid", "camid", "clothes", "modality", "split")
SPLITS = ("train", "query", "gallery", "val")


def _find(root: str) -> str:
    if os.path.isfile(root):
        return root
    found = [os.path.join(root, n) for n in ("manifest.csv", "manifest.jsonl") if os.path.isfile(os.path.join(root, n))]
    if len(found) != 1:
        raise ReidError(f"{root}: pass the manifest file (or a folder with one manifest.csv or manifest.jsonl)")
    return found[0]


def _rows(path: str):
    with open(path, encoding="utf-8", newline="") as fh:
        if path.endswith((".jsonl", ".json")):
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ReidError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                    if not isinstance(row, dict):
                        raise ReidError(f"{path}:{n}: each line must be a JSON object")
                    yield n, row
        else:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ReidError(f"{path}: CSV header lacks {', '.join(missing)} (need {','.join(COLUMNS)})")
            for n, row in enumerate(reader, 2):
                yield n, row


def folder(root: str, opts: Options) -> Scan:
    manifest = _find(root)
    base = os.path.dirname(os.path.abspath(manifest))
    dataset = os.path.basename(base) or "folder"
    scan = Scan()
    for n, row in _rows(manifest):
        where = f"{manifest}:{n}"
        missing = [c for c in COLUMNS if row.get(c) in (None, "")]
        if missing:
            raise ReidError(f"{where}: missing {', '.join(missing)}")
        rel = str(row["path"])
        if not is_image(rel):
            scan.unknown += 1
            continue
        path = os.path.join(base, rel)
        if not os.path.isfile(path):
            raise ReidError(f"{where}: {path} does not exist")
        try:
            pid, camid = int(row["pid"]), int(row["camid"])
        except (TypeError, ValueError):
            raise ReidError(f"{where}: pid and camid must be integers") from None
        split, modality = str(row["split"]), str(row["modality"])
        if split not in SPLITS:
            raise ReidError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        if modality not in ("rgb", "ir"):
            raise ReidError(f"{where}: modality must be rgb or ir, got {modality!r}")
        extra = {k: v for k, v in row.items() if k not in COLUMNS + ("dataset", "orig_name") and v not in (None, "")}
        scan.add(split, make_key(split, rel), path, **extra, dataset=str(row.get("dataset") or dataset),
                 split=split, pid=pid, camid=camid, clothes=str(row["clothes"]), modality=modality, orig_name=rel)
    return scan
