"""CCVID: tracklet folders `session{1,2,3}/{pid}_{cam}/NNNNN.jpg` and split lists `train.txt`,
`query.txt`, `gallery.txt` with lines `session/tracklet pid clothes_label`.

Rules from Simple-CCReID's CCVID loader: clothes = `{pid}_{clothes_label}`; camera = the number after
the tracklet's `_`, plus 12 in session3 (its cameras are distinct from sessions 1-2). One sample per
frame (every `frame_step`-th frame of each tracklet, counting from the first), with `tracklet` and
`frame` (the frame file's number, or its index when the name is not a number).

MARS: rules from torchreid's MARS loader (`torchreid/data/datasets/video/mars.py`):
`info/train_name.txt`, `info/test_name.txt` (one frame name per line), `info/tracks_train_info.mat`
and `info/tracks_test_info.mat` (arrays `track_train_info`/`track_test_info`, one row per tracklet:
1-based first and last line of the name list, pid, camid 1-6), `info/query_IDX.mat` (`query_IDX`,
1-based rows of the test tracks that are queries; every other test tracklet is gallery). Frames
live in `bbox_train/` or `bbox_test/` under the name's first 4 characters. Name
`{pid:4}C{cam}T{tracklet:4}F{frame:3}.jpg` (e.g. `0001C1T0001F001.jpg`; junk is `00-1`). pid -1
tracklets are junk (skipped, counted); pid 0 (distractors) kept. A tracklet whose names show two
people or two cameras is an error (torchreid asserts both).
"""

from __future__ import annotations

import os
import re

from reidtools.errors import ReidError
from reidtools.data.pack.base import Options, Scan, bad_name, list_images, make_key, need_dir, need_file, read_list, to_int


def ccvid(root: str, opts: Options) -> Scan:
    if opts.frame_step < 1:
        raise ReidError("ccvid: --frame-step must be >= 1")
    scan = Scan()
    for split in ("train", "query", "gallery"):
        list_path = os.path.join(root, f"{split}.txt")
        for row in read_list(list_path, f"CCVID {split} list"):
            if len(row) != 3:
                raise ReidError(f"{list_path}: expected lines 'session/tracklet pid clothes', got {' '.join(row)!r}")
            tracklet, pid_text, clothes_label = row
            folder = os.path.join(root, tracklet)
            session, _, track = tracklet.partition("/")
            if "_" not in track:
                raise ReidError(f"{folder}: tracklet name does not follow the naming rule PID_CAM (e.g. 001_01)")
            cam = to_int(track.split("_")[1], folder)
            if not os.path.isdir(folder):
                raise ReidError(f"{folder}: listed in {split}.txt but missing")
            pid = to_int(pid_text, list_path)
            frames = list_images(folder, scan)
            for index, name in enumerate(frames):
                if index % opts.frame_step:
                    continue
                stem = os.path.splitext(name)[0]
                frame = int(stem) if stem.isdigit() else index
                scan.add(split, make_key(split, session, track, name), os.path.join(folder, name), dataset="ccvid",
                         split=split, pid=pid, camid=cam + 12 if session == "session3" else cam,
                         clothes=f"{pid_text}_{clothes_label}", modality="rgb", tracklet=tracklet, frame=frame,
                         orig_name=f"{tracklet}/{name}")
    return scan


MARS_RE = re.compile(r"^([-\d]{4})C(\d)T(\d{4})F(\d{3})")
MARS_RULE = "{pid:4}C{cam}T{tracklet:4}F{frame:3}.jpg (e.g. 0001C1T0001F001.jpg)"


def _mat(path: str, name: str):
    import numpy as np
    from scipy.io import loadmat

    need_file(path, f"MARS {name}")
    try:
        data = loadmat(path)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise ReidError(f"{path}: not a readable .mat file ({exc})") from None
    if name not in data:
        raise ReidError(f"{path}: no array {name!r} in it")
    return np.asarray(data[name])


def _names(path: str) -> list[str]:
    need_file(path, "MARS frame name list")
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def mars(root: str, opts: Options) -> Scan:
    info = need_dir(os.path.join(root, "info"), "MARS info/ (name lists and .mat track tables)")
    scan = Scan()
    train_names = _names(os.path.join(info, "train_name.txt"))
    test_names = _names(os.path.join(info, "test_name.txt"))
    train = _mat(os.path.join(info, "tracks_train_info.mat"), "track_train_info")
    test = _mat(os.path.join(info, "tracks_test_info.mat"), "track_test_info")
    query_rows = {int(i) - 1 for i in _mat(os.path.join(info, "query_IDX.mat"), "query_IDX").ravel()}
    if any(not 0 <= i < len(test) for i in query_rows):
        raise ReidError(f"{os.path.join(info, 'query_IDX.mat')}: a query index is outside 1..{len(test)}")
    junk = 0
    for table, names, home, table_name in ((train, train_names, "bbox_train", "tracks_train_info.mat"),
                                          (test, test_names, "bbox_test", "tracks_test_info.mat")):
        if table.ndim != 2 or table.shape[1] < 4:
            raise ReidError(f"{os.path.join(info, table_name)}: expected rows (start, end, pid, camid), "
                            f"got shape {table.shape}")
        folder = need_dir(os.path.join(root, home), f"MARS {home} frames")
        for row, (start, end, pid, camid) in enumerate(table[:, :4].astype(int).tolist()):
            where = f"{os.path.join(info, table_name)}: row {row + 1}"
            if not 1 <= start <= end <= len(names):
                raise ReidError(f"{where}: frames {start}..{end} outside the name list (1..{len(names)})")
            frames = names[start - 1:end]
            if pid == -1:
                junk += len(frames)
                continue
            if not 1 <= camid <= 6:
                raise ReidError(f"{where}: camid {camid} outside 1..6")
            if len({n[:4] for n in frames}) != 1 or len({n[5:6] for n in frames}) != 1:
                raise ReidError(f"{where}: one tracklet holds frames of several people or cameras "
                                f"({frames[0]} .. {frames[-1]})")
            if home == "bbox_train":
                split = "train"
            else:
                split = "query" if row in query_rows else "gallery"
            tracklet = f"{home}/{row + 1:05d}"
            for name in frames:
                m = MARS_RE.match(name)
                path = os.path.join(folder, name[:4], name)
                if m is None:
                    raise bad_name(path, MARS_RULE)
                if not os.path.isfile(path):
                    raise ReidError(f"{path}: listed in {table_name} (row {row + 1}) but missing")
                scan.add(split, make_key(split, name), path, dataset="mars", split=split, pid=pid, camid=camid,
                         clothes=str(pid), modality="rgb", tracklet=tracklet, frame=int(m.group(4)),
                         orig_name=f"{home}/{name[:4]}/{name}")
    scan.junk += junk
    return scan
