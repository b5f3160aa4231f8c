"""CCVID: tracklet folders `session{1,2,3}/{pid}_{cam}/NNNNN.jpg` and split lists `train.txt`,
`query.txt`, `gallery.txt` with lines `session/tracklet pid clothes_label`.

Rules from Simple-CCReID's CCVID loader: clothes = `{pid}_{clothes_label}`; camera = the number after
the tracklet's `_`, plus 12 in session3 (its cameras are distinct from sessions 1-2). One sample per
frame (every `frame_step`-th frame of each tracklet, counting from the first), with `tracklet` and
`frame` (the frame file's number, or its index when the name is not a number).
"""

from __future__ import annotations

import os

from reidtools.errors import ReidError
from reidtools.data.pack.base import Options, Scan, list_images, make_key, read_list, to_int


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
