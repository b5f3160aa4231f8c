"""Long-term (clothes-changing, in-the-wild) image datasets: DeepChange, LaST, Celeb-reID.

Rules follow the loaders the papers' results come from (docs/pack.md cites each):
- DeepChange (Simple-CCReID `data/datasets/deepchange.py`): `train-set/`, `val-set-query/`,
  `val-set-gallery/`, `test-set-query/`, `test-set-gallery/`, each with a list
  `<folder>-bbox.txt` of lines `NAME,TRACKLET_ID`; NAME = `P{pid}_C{cam}_{x}_...`; clothes =
  `P{pid}` + x; the *tracklet id* stands in for the camera ("true matches from the same camera but
  other tracklets count, following the original paper"), so `camid` = tracklet id and the real
  camera is kept as `camera`.
- LaST (the LaST repo's `data/datasets/last.py`, Simple-CCReID's `last.py`): `train/*/*.jpg`,
  `val/query/*.jpg`, `val/gallery/*/*.jpg`, `test/query/*.jpg`, `test/gallery/*/*.jpg`; pid = the
  name's first `_` field; train clothes = pid + `_` + the last field (val/test have no clothes
  labels: clothes = pid); every image is its own camera (query i -> i, gallery i -> #query + i).
- Celeb-reID (the LaST repo's `celeba.py`, loaders citing github.com/Huang-3/Celeb-reID): flat
  `train/`, `query/`, `gallery/`; name `{pid}_{n}_{x}.jpg` ("x represents ID, y the y-th image, z
  is meaningless"); no cameras, no clothes labels: each image its own camera, clothes = pid.
"""

from __future__ import annotations

import os
import re

from reidtools.errors import ReidError
from reidtools.data.pack.base import (Options, Scan, bad_name, is_image, list_dirs, list_images, make_key, need_dir,
                                      need_file, to_int)

EVAL_SETS = ("test", "val")


def _eval_set(opts: Options, dataset: str) -> str:
    chosen = opts.variant or "test"
    if chosen not in EVAL_SETS:
        raise ReidError(f"{dataset}: --variant must be test or val, got {chosen!r}")
    return chosen


# ----------------------------------------------------------------------------- DeepChange
DEEPCHANGE_RE = re.compile(r"^P(\d+)_C(\d+)_([^_.]+)")
DEEPCHANGE_RULE = "P{pid}_C{cam}_{x}_... (e.g. P00001_C02_D1_....jpg)"


def _deepchange_list(root: str, folder: str, split: str, scan: Scan, dataset_split: str) -> None:
    list_path = need_file(os.path.join(root, f"{folder}-bbox.txt"), f"DeepChange {folder} list")
    home = need_dir(os.path.join(root, folder), f"DeepChange {folder} images")
    with open(list_path, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    for line in lines:
        name, sep, track = line.partition(",")
        if not sep:
            raise ReidError(f"{list_path}: expected lines 'NAME,TRACKLET_ID', got {line!r}")
        path = os.path.join(home, name)
        base = os.path.basename(name)
        if not is_image(base):
            scan.unknown += 1
            continue
        m = DEEPCHANGE_RE.match(base)
        if m is None:
            raise bad_name(path, DEEPCHANGE_RULE)
        if not os.path.isfile(path):
            raise ReidError(f"{path}: listed in {os.path.basename(list_path)} but missing")
        pid, cam, x = int(m.group(1)), int(m.group(2)), m.group(3)
        scan.add(split, make_key(split, name), path, dataset="deepchange", split=split, pid=pid,
                 camid=to_int(track.strip(), f"{list_path}: {name}"), camera=cam, clothes=f"P{m.group(1)}_{x}",
                 modality="rgb", orig_name=name, subset=dataset_split)


def deepchange(root: str, opts: Options) -> Scan:
    chosen = _eval_set(opts, "deepchange")
    scan = Scan()
    _deepchange_list(root, "train-set", "train", scan, "train")
    for role in ("query", "gallery"):
        _deepchange_list(root, f"{chosen}-set-{role}", role, scan, chosen)
    other = "val" if chosen == "test" else "test"
    scan.notes.append(f"query/gallery from the {chosen} set ({other}-set-* not written; --variant {other} writes it)")
    return scan


# ----------------------------------------------------------------------------- LaST
LAST_RE = re.compile(r"^(\d+)(?:_.*)?_([^_]+)$")
LAST_RULE = "{pid}_..._{clothes} (pid the first and clothes the last '_' field, e.g. 000001_0_0001_0.jpg)"


def _nested(folder: str, scan: Scan) -> list[str]:
    """`folder/*/*.jpg` as relative paths, sorted like the loaders' sorted glob."""
    return [f"{d}/{n}" for d in list_dirs(folder) for n in list_images(os.path.join(folder, d), scan)]


def _last_add(scan: Scan, split: str, folder: str, rel: list[str], subset: str, labelled: bool,
              first_camid: int = 0) -> None:
    for index, name in enumerate(rel):
        path = os.path.join(folder, name)
        m = LAST_RE.match(os.path.splitext(os.path.basename(name))[0])
        if m is None:
            raise bad_name(path, LAST_RULE)
        pid = int(m.group(1))
        scan.add(split, make_key(split, name), path, dataset="last", split=split, pid=pid,
                 camid=first_camid + index,
                 clothes=f"{m.group(1)}_{m.group(2)}" if labelled else m.group(1),
                 modality="rgb", orig_name=name, subset=subset)


def last(root: str, opts: Options) -> Scan:
    chosen = _eval_set(opts, "last")
    scan = Scan()
    train = need_dir(os.path.join(root, "train"), "LaST train images")
    _last_add(scan, "train", train, _nested(train, scan), "train", labelled=True)
    qdir = need_dir(os.path.join(root, chosen, "query"), f"LaST {chosen} query images")
    gdir = need_dir(os.path.join(root, chosen, "gallery"), f"LaST {chosen} gallery images")
    queries = list_images(qdir, scan)
    _last_add(scan, "query", qdir, queries, chosen, labelled=False)
    # gallery cameras continue after the queries', as the loaders number them: none coincide
    _last_add(scan, "gallery", gdir, _nested(gdir, scan), chosen, labelled=False, first_camid=len(queries))
    other = "val" if chosen == "test" else "test"
    scan.notes.append(f"query/gallery from {chosen}/ ({other}/ not written; --variant {other} writes it)")
    return scan


# ----------------------------------------------------------------------------- Celeb-reID
CELEB_RE = re.compile(r"^(\d+)_(\d+)_")
CELEB_RULE = "{pid}_{n}_{x} (e.g. 1_2_0.jpg)"


def celebreid(root: str, opts: Options) -> Scan:
    scan = Scan()
    num_query = 0
    for split in ("train", "query", "gallery"):
        path = need_dir(os.path.join(root, split), f"Celeb-reID {split} images")
        names = list_images(path, scan)
        # every image its own camera; gallery numbers continue after the queries' so none coincide
        # (the loaders restart at 0 per folder, which would pair query i with gallery i)
        first = num_query if split == "gallery" else 0
        num_query = len(names) if split == "query" else num_query
        for index, name in enumerate(names):
            m = CELEB_RE.match(name)
            if m is None:
                raise bad_name(os.path.join(path, name), CELEB_RULE)
            scan.add(split, make_key(split, name), os.path.join(path, name), dataset="celebreid", split=split,
                     pid=int(m.group(1)), camid=first + index, clothes=str(int(m.group(1))), modality="rgb",
                     orig_name=name, image_index=int(m.group(2)))
    return scan
