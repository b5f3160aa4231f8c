"""Clothes-changing image datasets: PRCC, LTCC, VC-Clothes.

Rules follow Simple-CCReID's loaders (github.com/guxinqian/Simple-CCReID, data/datasets/*.py):
- PRCC: `rgb/train/<pid>/<A|B|C>_*.jpg`, `rgb/val/` the same, `rgb/test/<A|B|C>/<pid>/*.jpg`. The
  camera is the file name's first letter (train/val) or the folder (test); A and B share one outfit,
  C wears another. Test: A -> gallery, B -> query (same clothes), C -> query (changed clothes).
- LTCC: `train/`, `query/`, `test/` (= gallery); `{pid}_{clothes}_c{cam}_{frame}.png`.
- VC-Clothes: `train/`, `query/`, `gallery/`; `{pid}-{cam}-{clothes}-{frame}.jpg`.
"""

from __future__ import annotations

import os
import re

from reidtools.data.pack.base import (Options, Scan, bad_name, list_dirs, list_images, make_key, need_dir,
                                      to_int)

PRCC_CAMS = {"A": 1, "B": 2, "C": 3}
PRCC_TEST_SPLIT = {"A": "gallery", "B": "query", "C": "query"}


def _prcc_clothes(pid_folder: str, letter: str) -> str:
    return f"{pid_folder}_{'AB' if letter in ('A', 'B') else 'C'}"


def _prcc_add(scan: Scan, split: str, path: str, pid_folder: str, letter: str, name: str) -> None:
    scan.add(split, make_key(split, letter, pid_folder, name), path, dataset="prcc", split=split,
             pid=to_int(pid_folder, os.path.dirname(path)), camid=PRCC_CAMS[letter],
             clothes=_prcc_clothes(pid_folder, letter), modality="rgb", camera=letter, orig_name=name)


def prcc(root: str, opts: Options) -> Scan:
    scan = Scan()
    rgb = need_dir(os.path.join(root, "rgb"), "PRCC rgb images")
    for split in ("train", "val"):
        folder = os.path.join(rgb, split)
        if split == "val" and not os.path.isdir(folder):
            continue
        need_dir(folder, f"PRCC {split} images")
        for pid_folder in list_dirs(folder):
            for name in list_images(os.path.join(folder, pid_folder), scan):
                path = os.path.join(folder, pid_folder, name)
                if name[0] not in PRCC_CAMS:
                    raise bad_name(path, "<A|B|C>_... (the camera letter first, e.g. A_cropped_rgb001.jpg)")
                _prcc_add(scan, split, path, pid_folder, name[0], name)
    test = need_dir(os.path.join(rgb, "test"), "PRCC test images")
    for letter in ("A", "B", "C"):
        cam_dir = need_dir(os.path.join(test, letter), f"PRCC test camera {letter}")
        for pid_folder in list_dirs(cam_dir):
            for name in list_images(os.path.join(cam_dir, pid_folder), scan):
                _prcc_add(scan, PRCC_TEST_SPLIT[letter], os.path.join(cam_dir, pid_folder, name), pid_folder,
                          letter, name)
    return scan


LTCC_RE = re.compile(r"^(\d+)_(\d+)_c(\d+)_(\d+)$")
VCC_RE = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)$")


def _flat(root: str, dataset: str, folders, regex, rule: str, fields) -> Scan:
    scan = Scan()
    for folder, split in folders:
        path = need_dir(os.path.join(root, folder), f"{dataset} {split} images")
        for name in list_images(path, scan):
            m = regex.match(os.path.splitext(name)[0])
            if m is None:
                raise bad_name(os.path.join(path, name), rule)
            pid, cam, clothes, frame = fields(m)
            scan.add(split, make_key(split, name), os.path.join(path, name), dataset=dataset, split=split,
                     pid=int(pid), camid=int(cam), clothes=f"{pid}_{clothes}", modality="rgb", frame=int(frame),
                     orig_name=name)
    return scan


def ltcc(root: str, opts: Options) -> Scan:
    return _flat(root, "ltcc", (("train", "train"), ("query", "query"), ("test", "gallery")), LTCC_RE,
                 "PID_CLOTHES_cCAM_FRAME (e.g. 001_1_c11_015865.png)",
                 lambda m: (m.group(1), m.group(3), m.group(2), m.group(4)))


def vcclothes(root: str, opts: Options) -> Scan:
    return _flat(root, "vcclothes", (("train", "train"), ("query", "query"), ("gallery", "gallery")), VCC_RE,
                 "PID-CAM-CLOTHES-FRAME (e.g. 0001-01-01-01.jpg)",
                 lambda m: (m.group(1), m.group(2), m.group(3), m.group(4)))
