"""Visible-infrared datasets: SYSU-MM01 and LLCM.

SYSU-MM01: `cam1`..`cam6/<pid, 4 digits>/<nnnn>.jpg`; cam3 and cam6 are infrared. `exp/train_id.txt`,
`exp/val_id.txt`, `exp/test_id.txt` hold comma-separated ids. Train ids -> `train`, val ids -> `val`
(kept apart; most papers train on train+val: pass both shard sets), test ids: infrared -> `query`,
visible -> `gallery` (the standard infrared-to-visible protocol). Images of ids in no list are
skipped and counted.

LLCM: `idx/train_vis.txt`, `idx/train_nir.txt`, `idx/test_vis.txt`, `idx/test_nir.txt` with lines
`REL_PATH LABEL`, paths such as `nir/0351/0351_c06_s200656_f4830_nir.jpg`. vis = rgb, nir = ir; pid
and camera come from the file name (`{pid}_c{cam}_...`), the list's label is kept as `list_label`.
Test images: `--direction i2v` (default) stores nir as `query` and vis as `gallery`; `v2i` swaps.

RegDB (AGW `data_manager.process_test_regdb` and `data_loader.RegDBData`): `idx/train_visible_{t}.txt`,
`idx/train_thermal_{t}.txt`, `idx/test_visible_{t}.txt`, `idx/test_thermal_{t}.txt` for trial t
(1-10) with lines `REL_PATH LABEL` (paths such as `Visible/...bmp`, `Thermal/...bmp`). pid = the
list's label, camid 1 = visible, 2 = thermal (one camera each; AGW's `eval_regdb` uses no
camera). Test: `--direction v2i` (default, AGW's visible-to-thermal test) stores visible as query,
thermal as gallery; `i2v` swaps (AGW `--tvsearch`).
"""

from __future__ import annotations

import os
import re

from reidtools.errors import ReidError
from reidtools.data.pack.base import (Options, Scan, bad_name, is_image, list_dirs, list_images, make_key,
                                      need_dir, need_file, read_list)

SYSU_IR_CAMS = (3, 6)


def _read_ids(path: str) -> set[int]:
    need_file(path, "SYSU-MM01 id list")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    ids = set()
    for tok in re.split(r"[,\s]+", text.strip()):
        if not tok:
            continue
        if not tok.isdigit():
            raise ReidError(f"{path}: {tok!r} is not an id")
        ids.add(int(tok))
    return ids


def sysu(root: str, opts: Options) -> Scan:
    scan = Scan()
    exp = os.path.join(root, "exp")
    train, test = _read_ids(os.path.join(exp, "train_id.txt")), _read_ids(os.path.join(exp, "test_id.txt"))
    val = _read_ids(os.path.join(exp, "val_id.txt")) if os.path.exists(os.path.join(exp, "val_id.txt")) else set()
    unlisted = 0
    for cam in range(1, 7):
        cam_dir = need_dir(os.path.join(root, f"cam{cam}"), "SYSU-MM01 camera folder")
        modality = "ir" if cam in SYSU_IR_CAMS else "rgb"
        for pid_folder in list_dirs(cam_dir):
            if not pid_folder.isdigit():
                raise ReidError(f"{os.path.join(cam_dir, pid_folder)}: identity folder must be a number (e.g. 0001)")
            pid = int(pid_folder)
            if pid in test:
                split = "query" if modality == "ir" else "gallery"
            elif pid in val:
                split = "val"
            elif pid in train:
                split = "train"
            else:
                split = None
            for name in list_images(os.path.join(cam_dir, pid_folder), scan):
                if split is None:
                    unlisted += 1
                    continue
                scan.add(split, make_key(split, f"cam{cam}", pid_folder, name),
                         os.path.join(cam_dir, pid_folder, name), dataset="sysu", split=split, pid=pid, camid=cam,
                         clothes=str(pid), modality=modality, orig_name=f"cam{cam}/{pid_folder}/{name}")
    if unlisted:
        scan.notes.append(f"{unlisted} images of ids in no exp/*_id.txt list skipped")
    return scan


LLCM_RE = re.compile(r"^(\d+)_c(\d+)_")


def llcm(root: str, opts: Options) -> Scan:
    direction = opts.direction or "i2v"
    if direction not in ("i2v", "v2i"):
        raise ReidError(f"llcm: --direction must be i2v or v2i, got {direction!r}")
    query_mod = "nir" if direction == "i2v" else "vis"
    scan = Scan()
    for part in ("train", "test"):
        for mod in ("vis", "nir"):
            list_path = os.path.join(root, "idx", f"{part}_{mod}.txt")
            split = "train" if part == "train" else ("query" if mod == query_mod else "gallery")
            for row in read_list(list_path, f"LLCM {part} {mod} list"):
                if len(row) != 2:
                    raise ReidError(f"{list_path}: expected lines 'PATH LABEL', got {' '.join(row)!r}")
                rel, label = row
                path = os.path.join(root, rel)
                name = os.path.basename(rel)
                if not is_image(name):
                    scan.unknown += 1
                    continue
                m = LLCM_RE.match(name)
                if m is None:
                    raise bad_name(path, "PID_cCAM_... (e.g. 0351_c06_s200656_f4830_nir.jpg)")
                if not os.path.isfile(path):
                    raise ReidError(f"{path}: listed in {os.path.basename(list_path)} but missing")
                pid = int(m.group(1))
                scan.add(split, make_key(split, rel), path, dataset="llcm", split=split, pid=pid,
                         camid=int(m.group(2)), clothes=str(pid), modality="rgb" if mod == "vis" else "ir",
                         orig_name=rel, list_label=int(label) if label.lstrip("-").isdigit() else label)
    return scan


def regdb(root: str, opts: Options) -> Scan:
    trial = opts.variant or "1"
    if trial not in [str(t) for t in range(1, 11)]:
        raise ReidError(f"regdb: --variant is the trial, 1 to 10, got {trial!r}")
    direction = opts.direction or "v2i"
    if direction not in ("i2v", "v2i"):
        raise ReidError(f"regdb: --direction must be i2v or v2i, got {direction!r}")
    query_mod = "visible" if direction == "v2i" else "thermal"
    scan = Scan()
    for part in ("train", "test"):
        for mod in ("visible", "thermal"):
            list_path = os.path.join(root, "idx", f"{part}_{mod}_{trial}.txt")
            split = "train" if part == "train" else ("query" if mod == query_mod else "gallery")
            for row in read_list(list_path, f"RegDB trial {trial} {part} {mod} list"):
                if len(row) != 2:
                    raise ReidError(f"{list_path}: expected lines 'PATH LABEL', got {' '.join(row)!r}")
                rel, label = row
                path = os.path.join(root, rel)
                if not is_image(rel):
                    scan.unknown += 1
                    continue
                if not label.isdigit():
                    raise ReidError(f"{list_path}: {rel}: label {label!r} is not a non-negative integer")
                if not os.path.isfile(path):
                    raise ReidError(f"{path}: listed in {os.path.basename(list_path)} but missing")
                pid = int(label)
                # train and test lists both number their identities from 0: scope clothes by part
                scan.add(split, make_key(split, rel), path, dataset="regdb", split=split, pid=pid,
                         camid=1 if mod == "visible" else 2, clothes=f"{part}_{pid}",
                         modality="rgb" if mod == "visible" else "ir", orig_name=rel, trial=int(trial))
    return scan
