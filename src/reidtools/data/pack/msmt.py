"""MSMT17 (V1 and V2).

Layout: `list_train.txt`, `list_val.txt`, `list_query.txt`, `list_gallery.txt` (lines `REL_PATH PID`),
with train/val paths relative to `train/` (V1) or `mask_train_v2/` (V2) and query/gallery paths
relative to `test/` or `mask_test_v2/`. Names `0000_000_01_0303morning_0015_0.jpg`: the third field
is the camera (1-15). The list's pid numbers restart at 0 for the test identities, so `clothes`
(one outfit per identity assumed) is scoped: `train_<pid>` / `test_<pid>`.
"""

from __future__ import annotations

import os
import re

from reidtools.errors import ReidError
from reidtools.data.pack.base import Options, Scan, bad_name, is_image, make_key, read_list, to_int

NAME_RE = re.compile(r"^(\d+)_(\d+)_(\d+)_")
DIRS = {"v1": ("train", "test"), "v2": ("mask_train_v2", "mask_test_v2")}
LISTS = (("list_train.txt", "train", 0), ("list_val.txt", "val", 0), ("list_query.txt", "query", 1),
         ("list_gallery.txt", "gallery", 1))


def detect_variant(root: str) -> str:
    found = [v for v, (train, _) in DIRS.items() if os.path.isdir(os.path.join(root, train))]
    if len(found) != 1:
        raise ReidError(f"{root}: cannot tell MSMT17 V1 (train/, test/) from V2 (mask_train_v2/, mask_test_v2/)"
                        " - pass --variant v1 or v2")
    return found[0]


def msmt17(root: str, opts: Options) -> Scan:
    variant = opts.variant or detect_variant(root)
    if variant not in DIRS:
        raise ReidError(f"msmt17: --variant must be v1 or v2, got {variant!r}")
    scan = Scan()
    seen: set[str] = set()
    for list_name, split, part in LISTS:
        folder = os.path.join(root, DIRS[variant][part])
        list_path = os.path.join(root, list_name)
        if split == "val" and not os.path.exists(list_path):
            continue
        for row in read_list(list_path, f"MSMT17 {split} list"):
            if len(row) != 2:
                raise ReidError(f"{list_path}: expected lines 'PATH PID', got {' '.join(row)!r}")
            rel, pid_text = row
            path = os.path.join(folder, rel)
            name = os.path.basename(rel)
            if not is_image(name):
                scan.unknown += 1
                continue
            m = NAME_RE.match(name)
            if m is None:
                raise bad_name(path, "PID_INDEX_CAM_DATETIME_... (e.g. 0000_000_01_0303morning_0015_0.jpg)")
            if not os.path.isfile(path):
                raise ReidError(f"{path}: listed in {list_name} but missing")
            pid = to_int(pid_text, list_path)
            scope = "train" if part == 0 else "test"
            key = make_key(split, rel)
            if key in seen:
                raise ReidError(f"{path}: listed twice")
            seen.add(key)
            scan.add(split, key, path, dataset="msmt17", split=split, pid=pid, camid=int(m.group(3)),
                     clothes=f"{scope}_{pid}", modality="rgb", orig_name=rel, variant=variant)
    return scan
