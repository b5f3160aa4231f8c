"""Market-1501, DukeMTMC-reID and CUHK03-NP: three folders of images whose names carry pid and camera.

Naming rules (the datasets' READMEs; torchreid/fast-reid parse `([-\\d]+)_c(\\d)` the same way):
- Market-1501 `0002_c1s1_000451_03.jpg`: pid, camera 1-6, sequence, frame, detection box;
  pid -1 = junk (skipped, counted), pid 0 = distractor (kept in the gallery).
- DukeMTMC-reID `0001_c2_f0046182.jpg`: pid, camera 1-8, frame.
- CUHK03-NP `0001_c1_1.png` under `detected/` or `labeled/`: pid, camera 1-2, image index.
"""

from __future__ import annotations

import os
import re

from reidtools.errors import ReidError
from reidtools.data.pack.base import Options, Scan, bad_name, list_images, make_key, need_dir

FOLDERS = (("bounding_box_train", "train"), ("query", "query"), ("bounding_box_test", "gallery"))

MARKET_RE = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)$")
DUKE_RE = re.compile(r"^(-?\d+)_c(\d+)_f(\d+)$")
CUHK_RE = re.compile(r"^(-?\d+)_c(\d+)_(\d+)$")


def _scan_three_folders(root: str, dataset: str, regex: re.Pattern, rule: str, extra) -> Scan:
    scan = Scan()
    for folder, split in FOLDERS:
        path = need_dir(os.path.join(root, folder), f"{dataset} {split} images")
        for name in list_images(path, scan):
            m = regex.match(os.path.splitext(name)[0])
            if m is None:
                raise bad_name(os.path.join(path, name), rule)
            pid, cam = int(m.group(1)), int(m.group(2))
            if pid == -1:
                scan.junk += 1
                continue
            scan.add(split, make_key(split, name), os.path.join(path, name), dataset=dataset, split=split,
                     pid=pid, camid=cam, clothes=str(pid), modality="rgb", orig_name=name, **extra(m))
    return scan


def market1501(root: str, opts: Options) -> Scan:
    return _scan_three_folders(root, "market1501", MARKET_RE, "PID_cCsS_FRAME_BOX (e.g. 0002_c1s1_000451_03.jpg)",
                               lambda m: {"seq": int(m.group(3)), "frame": int(m.group(4))})


def dukemtmc(root: str, opts: Options) -> Scan:
    return _scan_three_folders(root, "dukemtmc", DUKE_RE, "PID_cC_fFRAME (e.g. 0001_c2_f0046182.jpg)",
                               lambda m: {"frame": int(m.group(3))})


def cuhk03np(root: str, opts: Options) -> Scan:
    variant = opts.variant or "detected"
    if variant not in ("detected", "labeled"):
        raise ReidError(f"cuhk03np: --variant must be detected or labeled, got {variant!r}")
    scan = _scan_three_folders(os.path.join(root, variant), "cuhk03np", CUHK_RE, "PID_cC_N (e.g. 0001_c1_1.png)",
                               lambda m: {"variant": variant})
    return scan
