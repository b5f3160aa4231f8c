"""`reid eval --ranks` (top-k lists with good/junk/wrong marks) and `reid show --ranks` (the sheet)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from PIL import Image

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.data.ranksheet import FRAME
from reidtools.metrics.ranklist import order_queries
from reidtools.shards import ShardWriter, iter_samples, meta


def _run(capsys, *args):
    rc = run_cli(cli, [args[0], "-q", *args[1:]])
    return rc, capsys.readouterr()


def _write(directory, prefix, rows):
    """rows: (key, pid, camid, clothes, x) -> samples with a 2-d feature (x, 0)."""
    with ShardWriter(str(directory), prefix=prefix) as w:
        for key, pid, cam, clothes, x in rows:
            w.write({"__key__": key, "json": {"pid": pid, "camid": cam, "clothes": clothes},
                     "feat.npy": np.asarray([x, 0.0], np.float32)})
    return str(directory)


@pytest.fixture()
def tiny(tmp_path):
    # squared Euclidean distances from the query at x=0: 1, 4, 9, 16, 25 -- g0 nearest
    q = _write(tmp_path / "q", "query", [("q0", 1, 1, "1_a", 0.0)])
    g = _write(tmp_path / "g", "gallery", [
        ("g0", 1, 1, "1_b", 1.0),   # same pid, same camera: junk in every mode
        ("g1", 2, 2, "2_a", 2.0),   # another identity: wrong
        ("g2", 1, 2, "1_a", 3.0),   # same pid, other camera, same clothes: good (market), junk (cc)
        ("g3", 1, 3, "1_b", 4.0),   # same pid, other camera, other clothes: good in both
        ("g4", 3, 2, "3_a", 5.0),   # wrong
    ])
    return q, g


@pytest.mark.parametrize("protocol, marks, ranks, ap", [
    # market: kept ranking g1 g2 g3 g4; goods at ranks 2, 3: AP = (1/2 + 2/3) / 2 = 7/12
    ("market", ["junk", "wrong", "good", "good"], [None, 1, 2, 3], 7 / 12),
    # cc: g2 (same clothes) is junk too; kept ranking g1 g3 g4; one good at rank 2: AP = 1/2
    ("cc", ["junk", "wrong", "junk", "good"], [None, 1, None, 2], 1 / 2),
])
def test_ranks_file_marks_by_protocol(tiny, tmp_path, capsys, protocol, marks, ranks, ap):
    q, g = tiny
    out = tmp_path / "ranks.json"
    rc, cap = _run(capsys, "eval", q, "-g", g, "-p", protocol, "--distance", "euclidean",
                   "--ranks", str(out), "--ranks-k", "4", "--json", str(tmp_path / "m.json"))
    assert rc == 0, cap.err
    obj = json.loads(out.read_text())
    assert (obj["format"], obj["protocol"], obj["k"]) == ("reid-ranks/1", protocol, 4)
    (query,) = obj["queries"]
    top = query["top"]
    assert [e["key"] for e in top] == ["g0", "g1", "g2", "g3"]
    assert [e["mark"] for e in top] == marks
    assert [e["rank"] for e in top] == ranks
    assert [e["distance"] for e in top] == pytest.approx([1, 4, 9, 16])
    assert query["ap"] == pytest.approx(ap)
    assert query["first_good_rank"] == 2 and query["num_good"] == marks.count("good")
    # the file's AP is the metric's AP
    assert json.loads((tmp_path / "m.json").read_text())["mAP"] == pytest.approx(ap)
    assert "ranked" not in json.loads((tmp_path / "m.json").read_text())
    assert top[0]["shard"].startswith("/") and top[0]["clothes"] == "1_b"


def test_ranks_k_larger_than_gallery_and_ties_in_gallery_order(tmp_path, capsys):
    q = _write(tmp_path / "q", "query", [("q0", 1, 1, "1", 0.0)])
    g = _write(tmp_path / "g", "gallery", [("a", 2, 2, "2", 1.0), ("b", 1, 2, "1", 1.0), ("c", 3, 2, "3", 1.0)])
    out = tmp_path / "r.json"
    rc, cap = _run(capsys, "eval", q, "-g", g, "--distance", "euclidean", "--ranks", str(out), "--ranks-k", "10")
    assert rc == 0, cap.err
    top = json.loads(out.read_text())["queries"][0]["top"]
    assert [e["key"] for e in top] == ["a", "b", "c"]          # equal distances: gallery order
    assert [e["mark"] for e in top] == ["wrong", "good", "wrong"]


def test_order_queries_worst_first():
    qs = [{"key": "a", "ap": 0.5, "first_good_rank": 1}, {"key": "b", "ap": None, "first_good_rank": None},
          {"key": "c", "ap": 0.1, "first_good_rank": 3}, {"key": "d", "ap": 0.9, "first_good_rank": 7}]
    assert [q["key"] for q in order_queries(qs, None)] == ["a", "b", "c", "d"]
    assert [q["key"] for q in order_queries(qs, "ap")] == ["c", "a", "d", "b"]     # no-match query last
    assert [q["key"] for q in order_queries(qs, "rank")] == ["d", "c", "a", "b"]


def _with_features(synth_dir, tmp_path):
    """The synthetic query/gallery images with a feature that knows pid and clothes (plus noise)."""
    rng = np.random.default_rng(0)
    dirs = []
    for split in ("query", "gallery"):
        out = tmp_path / f"{split}_f"
        with ShardWriter(str(out), prefix=split) as w:
            for s in iter_samples([str(synth_dir / f"{split}-000000.tar")]):
                m = meta(s)
                f = np.zeros(64, np.float32)
                f[m["pid"] % 64] = 1.0
                f[zlib.crc32(m["clothes"].encode()) % 64] += 0.8
                s = {k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"}
                s["feat.npy"] = f + 0.05 * rng.normal(size=64).astype(np.float32)
                w.write(s)
        dirs.append(str(out))
    return dirs


def _frame_colour(png, row, col, tile=(128, 64)):
    """The colour of the frame of tile `col` (0 = query) in `row`, read from its left border."""
    th, tw = tile
    border, gap, sep, font_px = 3, 3, 12, max(8, min(12, tw // 6))
    cell_w, cell_h = tw + 2 * border, th + 2 * border + 4 * (font_px + 2) + 2
    x = gap + (0 if col == 0 else cell_w + sep + (col - 1) * (cell_w + gap)) + 1
    y = gap + row * (cell_h + gap) + th // 2
    return png.getpixel((x, y))


def test_show_ranks_draws_marked_rows(synth_dir, tmp_path, capsys):
    q, g = _with_features(synth_dir, tmp_path)
    ranks = tmp_path / "ranks.json"
    rc, cap = _run(capsys, "eval", q, "-g", g, "-p", "cc", "--ranks", str(ranks), "--ranks-k", "5",
                   "--rerank", "--json", str(tmp_path / "m.json"))
    assert rc == 0, cap.err
    # per-query APs (over the whole re-ranked gallery, not the top 5) average to the metric's mAP
    aps = [qq["ap"] for qq in json.loads(ranks.read_text())["queries"] if qq["ap"] is not None]
    assert np.mean(aps) == pytest.approx(json.loads((tmp_path / "m.json").read_text())["mAP"])
    png_path = tmp_path / "ranks.png"
    rc, cap = _run(capsys, "show", "--ranks", str(ranks), "-o", str(png_path), "--n", "3", "--worst")
    assert rc == 0, cap.err
    png = Image.open(png_path).convert("RGB")
    obj = json.loads(ranks.read_text())
    rows = order_queries(obj["queries"], "ap")[:3]
    assert png.size[1] > 3 * 128 and png.size[0] > 6 * 64
    for r, query in enumerate(rows):
        assert _frame_colour(png, r, 0) == FRAME["query"]
        for c, e in enumerate(query["top"], start=1):
            assert _frame_colour(png, r, c) == FRAME[e["mark"]], (r, c, e)
    # with a feature that encodes clothes, CC mode's same-clothes matches come first and are junk
    assert any(e["mark"] == "junk" for qq in obj["queries"] for e in qq["top"][:1])


def test_show_ranks_from_feature_only_shards_needs_inputs(synth_dir, tmp_path, capsys):
    q, g = _with_features(synth_dir, tmp_path)
    feats = tmp_path / "feats"
    rc, cap = _run(capsys, "eval", q, "-g", g, "--save-features", str(feats))
    assert rc == 0, cap.err
    ranks = tmp_path / "r.json"
    rc, cap = _run(capsys, "eval", str(feats / "query-000000.tar"), "-g", str(feats / "gallery-000000.tar"),
                   "--ranks", str(ranks), "--ranks-k", "3")
    assert rc == 0, cap.err
    rc, cap = _run(capsys, "show", "--ranks", str(ranks), "-o", str(tmp_path / "x.png"), "--n", "2")
    assert rc == 1 and "no image" in cap.err and "pass the image shards as INPUTS" in cap.err
    assert len(cap.err.strip().splitlines()) == 1
    rc, cap = _run(capsys, "show", "--ranks", str(ranks), str(synth_dir), "-o", str(tmp_path / "x.png"), "--n", "2")
    assert rc == 0, cap.err
    # INPUTS that lack a listed key: one line naming the key
    rc, cap = _run(capsys, "show", "--ranks", str(ranks), str(synth_dir / "train-000000.tar"),
                   "-o", str(tmp_path / "y.png"))
    assert rc == 1 and "no sample with key" in cap.err and not (tmp_path / "y.png").exists()


def test_show_ranks_bad_files_and_usage(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mAP": 0.5}))
    rc, cap = _run(capsys, "show", "--ranks", str(bad), "-o", str(tmp_path / "o.png"))
    assert rc == 1 and "not a `reid eval --ranks` file" in cap.err
    rc, cap = _run(capsys, "show", "-o", str(tmp_path / "o.png"))
    assert rc == 2 and "INPUTS" in cap.err
    rc, cap = _run(capsys, "show", str(tmp_path), "--worst", "-o", str(tmp_path / "o.png"))
    assert rc == 2 and "--worst needs --ranks" in cap.err
    rc, cap = _run(capsys, "show", "--ranks", str(bad), "--ids", "3", "-o", str(tmp_path / "o.png"))
    assert rc == 2 and "--ids: not used with --ranks" in cap.err


def test_ranks_of_a_multi_trial_protocol_record_trial_zero(tmp_path, capsys):
    rows_q = [(f"q{i}", i % 3, 3, str(i % 3), float(i)) for i in range(6)]
    rows_g = [(f"g{i}", i % 3, 1 + i % 2, str(i % 3), float(i) + 0.5) for i in range(12)]
    q = _write(tmp_path / "q", "query", rows_q)
    g = _write(tmp_path / "g", "gallery", rows_g)
    out = tmp_path / "r.json"
    rc, cap = _run(capsys, "eval", q, "-g", g, "-p", "sysu-indoor", "--distance", "euclidean",
                   "--ranks", str(out), "--ranks-k", "3", "--trials", "2")
    assert rc == 0, cap.err
    obj = json.loads(out.read_text())
    assert obj["trial"] == 0 and len(obj["queries"]) == 6
    # trial 0's gallery holds one image per (pid, camera 1/2): 6 items, keys from the gallery set
    assert all(e["key"].startswith("g") for qq in obj["queries"] for e in qq["top"])
