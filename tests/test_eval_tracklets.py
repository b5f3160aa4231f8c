"""Video ReID evaluation (`reid eval --tracklets`): frame features pooled per tracklet, then ranked
under the image protocols (CCVID general/cc as Simple-CCReID's test; MARS with the market rule)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.metrics.tracklets import cal_weights
from reidtools.shards import ShardWriter


def cal_clip_counts(n: int, seq_len: int, stride: int) -> np.ndarray:
    """How often each frame occurs in the test clips of Simple-CCReID's `_recombination_for_testset`
    (CCVID loader), written out from its description: strided clips over whole blocks of
    seq_len*stride frames; over the rest a smaller stride `rest // seq_len` with as many clips;
    the last n % seq_len frames padded cyclically to seq_len. Returns counts and clip count."""
    clips = []
    block = seq_len * stride
    for i in range(n // block):
        for j in range(stride):
            clips.append(list(range(i * block + j, (i + 1) * block, stride)))
    rest = n % block
    if rest:
        base = n // block * block
        small = rest // seq_len
        for i in range(small):
            clips.append(list(range(base + i, base + seq_len * small, small)))
        if n % seq_len:
            tail = list(range(n // seq_len * seq_len, n))
            padded = [tail[k % len(tail)] for k in range(seq_len)]
            clips.append(padded)
    assert all(len(c) == seq_len for c in clips) and len(clips) == math.ceil(n / seq_len)
    return np.bincount(np.concatenate(clips), minlength=n), len(clips)


@pytest.mark.parametrize("seq_len, stride", [(8, 4), (16, 4), (4, 2)])
def test_cal_weights_match_the_clip_formation(seq_len, stride):
    for n in range(1, 140):
        counts, num_clips = cal_clip_counts(n, seq_len, stride)
        assert np.allclose(cal_weights(n, seq_len), counts / (num_clips * seq_len)), n


def test_cal_weights_by_hand():
    # 11 frames, clips of 8: frames 0-7 form one clip; frames 8, 9, 10 padded to 8 -> 8 9 10 8 9 10 8 9
    # (counts 3, 3, 2); 2 clips x 8 slots = 16
    assert cal_weights(11, 8).tolist() == [1 / 16] * 8 + [3 / 16, 3 / 16, 2 / 16]
    # 40 frames: 4 strided clips over 0-31 and one over 32-39; every frame once: the plain mean
    assert np.allclose(cal_weights(40, 8), 1 / 40)
    # 5 frames: one clip 0 1 2 3 4 0 1 2
    assert cal_weights(5, 8).tolist() == [2 / 8, 2 / 8, 2 / 8, 1 / 8, 1 / 8]


def _frames(directory, prefix, tracklets):
    """tracklets: name -> (pid, camid, clothes, [x per frame]); frame features (x, 0)."""
    with ShardWriter(str(directory), prefix=prefix) as w:
        for name, (pid, cam, clothes, xs) in tracklets.items():
            for f, x in enumerate(xs):
                w.write({"__key__": f"{prefix}_{name}_{f:03d}", "json": {
                    "pid": pid, "camid": cam, "clothes": clothes, "tracklet": f"session1/{name}", "frame": f},
                    "feat.npy": np.asarray([x, 0.0], np.float32)})
    return str(directory)


@pytest.fixture()
def video(tmp_path):
    q = _frames(tmp_path / "q", "query", {"qa": (1, 1, "1_a", [0.0, 2.0])})            # mean 1
    g = _frames(tmp_path / "g", "gallery", {
        "gb": (1, 2, "1_a", [4.0, 6.0]),         # mean 5: d^2 16; same clothes
        "gc": (2, 2, "2_a", [1.0, 3.0, 5.0]),    # mean 3: d^2 4; cal (counts 3 3 2 / 8) 2.75: d^2 3.0625
        "gd": (1, 3, "1_b", [10.0]),             # 10: d^2 81; other clothes
        "ge": (1, 1, "1_b", [1.5]),              # same camera: junk in every mode
    })
    return q, g


def _eval(capsys, *args):
    rc = run_cli(cli, ["eval", "-q", *args])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return cap


@pytest.mark.parametrize("protocol, ap", [
    # ranking ge (junk) gc gb gd; general: goods gb, gd at kept ranks 2, 3: (1/2 + 2/3) / 2
    ("general", 7 / 12),
    # cc also drops gb (same clothes): kept gc gd, the good gd at rank 2
    ("cc", 1 / 2),
])
def test_tracklet_protocols_by_hand(video, tmp_path, capsys, protocol, ap):
    q, g = video
    out, ranks = tmp_path / "r.json", tmp_path / "ranks.json"
    _eval(capsys, q, "-g", g, "-p", protocol, "--distance", "euclidean", "--tracklets", "mean",
          "--json", str(out), "--ranks", str(ranks))
    res = json.loads(out.read_text())
    assert (res["num_query"], res["num_gallery"]) == (1, 4)
    assert res["mAP"] == pytest.approx(ap) and res["rank1"] == 0.0
    assert res["tracklets"] == {"pool": "mean"}
    top = json.loads(ranks.read_text())["queries"][0]["top"]
    assert [e["tracklet"] for e in top] == ["session1/ge", "session1/gc", "session1/gb", "session1/gd"]
    assert [e["distance"] for e in top] == pytest.approx([0.25, 4.0, 16.0, 81.0])
    assert top[1]["key"] == "gallery_gc_000"     # a tracklet is drawn by its first frame


def test_cal_pooling_weights_the_padded_frames(video, tmp_path, capsys):
    q, g = video
    ranks = tmp_path / "ranks.json"
    _eval(capsys, q, "-g", g, "-p", "general", "--distance", "euclidean", "--tracklets", "cal",
          "--ranks", str(ranks))
    top = {e["tracklet"]: e["distance"] for e in json.loads(ranks.read_text())["queries"][0]["top"]}
    # gc's 3 frames padded to 8: 1 3 5 1 3 5 1 3 -> 22/8 = 2.75; (2.75 - 1)^2 = 3.0625
    assert top["session1/gc"] == pytest.approx(3.0625)
    assert top["session1/gb"] == pytest.approx(16.0)   # 2 frames padded evenly: the plain mean


def test_frame_level_without_tracklets(video, tmp_path, capsys):
    q, g = video
    out = tmp_path / "r.json"
    _eval(capsys, q, "-g", g, "-p", "general", "--json", str(out))
    res = json.loads(out.read_text())
    assert (res["num_query"], res["num_gallery"]) == (2, 7) and "tracklets" not in res


def test_tracklet_errors_name_the_frame(tmp_path, capsys):
    q = _frames(tmp_path / "q", "query", {"qa": (1, 1, "1_a", [0.0])})
    with ShardWriter(str(tmp_path / "g"), prefix="gallery") as w:
        w.write({"__key__": "g0", "json": {"pid": 1, "camid": 2, "clothes": "1_a", "tracklet": "t"},
                 "feat.npy": np.zeros(2, np.float32)})
        w.write({"__key__": "g1", "json": {"pid": 2, "camid": 2, "clothes": "1_a", "tracklet": "t"},
                 "feat.npy": np.zeros(2, np.float32)})
        w.write({"__key__": "g2", "json": {"pid": 1, "camid": 2, "clothes": "1_a"},
                 "feat.npy": np.zeros(2, np.float32)})
    rc = run_cli(cli, ["eval", "-q", q, "-g", str(tmp_path / "g"), "--tracklets", "mean"])
    err = capsys.readouterr().err
    assert rc == 1 and "g2" in err and "missing field 'tracklet'" in err
    assert len(err.strip().splitlines()) == 1


def test_tracklet_with_two_identities_is_an_error(tmp_path, capsys):
    q = _frames(tmp_path / "q", "query", {"qa": (1, 1, "1_a", [0.0])})
    with ShardWriter(str(tmp_path / "g"), prefix="gallery") as w:
        for key, pid in (("g0", 1), ("g1", 2)):
            w.write({"__key__": key, "json": {"pid": pid, "camid": 2, "clothes": "1_a", "tracklet": "t7"},
                     "feat.npy": np.zeros(2, np.float32)})
    rc = run_cli(cli, ["eval", "-q", q, "-g", str(tmp_path / "g"), "--tracklets", "cal"])
    err = capsys.readouterr().err
    assert rc == 1 and "g1" in err and "tracklet 't7': pid 2 differs from 1" in err
