"""The synthetic dataset: determinism, ground-truth correctness, split rules, CLI, kill-resume."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from reidtools.data.labels import ATR_LABELS, LABEL_SETS, LIP_LABELS, MEDIAPIPE33, POSE_FORMATS
from reidtools.data.synth import (COLORS, SynthOptionError, camera_traits, identity_traits, iter_synth,
                                  write_dataset)
from reidtools.shards import image, iter_samples, mask, meta
from reidtools.shards.sample import encode_field

REID = os.path.join(os.path.dirname(sys.executable), "reid")
SMALL = dict(ids=6, outfits=2, cams=3, images_per=2, size=(64, 32))


def _bytes(sample):
    return {f: encode_field(f, v) for f, v in sample.items() if not f.startswith("__")}


@pytest.fixture(scope="module")
def samples():
    """128x64 rgb samples: big enough that thin limbs rasterise, small enough to be quick."""
    return list(iter_synth(ids=8, outfits=3, cams=3, images_per=2, seed=5))


def test_label_tables():
    assert len(LIP_LABELS) == 20 and LIP_LABELS[5] == "upper-clothes" and LIP_LABELS[19] == "right-shoe"
    assert len(ATR_LABELS) == 18 and ATR_LABELS[4] == "upper-clothes" and ATR_LABELS[17] == "scarf"
    assert LABEL_SETS == {"lip": LIP_LABELS, "atr": ATR_LABELS}
    assert len(MEDIAPIPE33) == 33 and MEDIAPIPE33[11] == "left_shoulder" and MEDIAPIPE33[32] == "right_foot_index"
    assert POSE_FORMATS["mediapipe33"] is MEDIAPIPE33


def test_same_seed_same_bytes_other_seed_differs():
    a = [_bytes(s) for s in iter_synth(seed=1, **SMALL)]
    b = [_bytes(s) for s in iter_synth(seed=1, **SMALL)]
    c = [_bytes(s) for s in iter_synth(seed=2, **SMALL)]
    assert a == b
    assert [x["jpg"] for x in a] != [x["jpg"] for x in c]
    assert sum(x["jpg"] == y["jpg"] for x, y in zip(a, c)) == 0


def test_a_person_does_not_depend_on_the_number_of_ids():
    # identity 1's samples are the same whatever --ids is (seeds derive from the key only)
    few = {s["__key__"]: _bytes(s) for s in iter_synth(seed=0, **{**SMALL, "ids": 2})}
    more = {s["__key__"]: _bytes(s) for s in iter_synth(seed=0, **{**SMALL, "ids": 6})}
    p1 = [k for k in few if k.startswith("synth_p0001_")]
    assert p1 and all(few[k] == more[k] for k in p1)


def test_sample_contract(samples):
    s = samples[0]
    m = meta(s)
    assert s["__key__"] == "synth_p0001_o0_c1_i0"
    assert m["dataset"] == "synth" and m["pid"] == 1 and m["camid"] == 1 and m["clothes"] == "0001_0"
    assert m["modality"] == "rgb" and m["parse_labels"] == "lip" and m["view"] in ("front", "back", "side")
    assert m["pose"]["format"] == "mediapipe33" and len(m["pose"]["points"]) == 33
    g = m["garments"]
    assert g["upper_color"] in COLORS and g["lower_type"] in ("pants", "shorts", "skirt")
    assert s["parse.png"].mode == "L" and s["parse.png"].size == s["jpg"].size == (64, 128)


def test_parse_labels_are_valid_lip_ids_and_match_the_lower_garment(samples):
    for s in samples:
        p = np.asarray(s["parse.png"])
        assert set(np.unique(p)) <= set(range(len(LIP_LABELS)))
        assert (p == 5).any() and (p == 13).any() | (p == 2).any()
        lower = meta(s)["garments"]["lower_type"]
        assert ((p == 12).any()) == (lower == "skirt"), s["__key__"]
        assert ((p == 9).any()) == (lower in ("pants", "shorts")), s["__key__"]


def test_upper_clothes_pixels_carry_the_outfit_colour(samples):
    names = list(COLORS)
    palette = np.array([COLORS[k] for k in names], float)
    checked = 0
    for s in samples:
        m = meta(s)
        if m["garments"]["upper_pattern"] != "solid":
            continue
        cam = camera_traits(5, m["camid"], "rgb")
        pixels = np.asarray(s["jpg"], float)[np.asarray(s["parse.png"]) == 5]
        # undo the camera's lighting; 0.9 = mean of the body shading (0.7..1)
        seen = np.median(pixels, 0) / (cam.gain * np.array(cam.tint))
        nearest = names[int(np.argmin(((0.9 * palette - seen) ** 2).sum(1)))]
        assert nearest == m["garments"]["upper_color"], (s["__key__"], seen)
        checked += 1
    assert checked >= 20


def test_identity_traits_are_constant_across_outfits(samples):
    hair = defaultdict(list)
    for s in samples:
        m = meta(s)
        p = np.asarray(s["parse.png"])
        img = np.asarray(s["jpg"], float)
        ident = identity_traits(5, m["pid"])
        # glasses are the one face mark with its own label; they show whenever the face does
        if m["view"] != "back":
            assert (p == 4).any() == (ident.face_mark == "glasses"), s["__key__"]
        if (p == 2).sum() >= 12:
            hair[(m["pid"], m["camid"])].append((m["clothes"], np.median(img[p == 2], 0)))
    compared = 0
    for (pid, cam), seen in hair.items():
        outfits = {c for c, _ in seen}
        if len(outfits) < 2:
            continue
        cols = np.array([c for _, c in seen])
        # same person, same camera, other clothes: hair colour differs only by lighting jitter/noise
        assert np.ptp(cols, axis=0).max() < 45, (pid, cam, cols)
        compared += 1
    assert compared >= 10


def test_keypoints_lie_on_the_person(samples):
    for s in samples:
        p = np.asarray(s["parse.png"])
        h, w = p.shape
        for name, (x, y, c) in zip(MEDIAPIPE33, meta(s)["pose"]["points"]):
            assert 0 <= x <= 1 and 0 <= y <= 1 and 0 <= c <= 1
            col, row = int(x * w), int(y * h)
            # 3x3 neighbourhood: a keypoint on a 3-pixel limb may round onto its edge
            assert p[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].any(), (s["__key__"], name)


def test_keypoint_sides_and_back_view_confidence(samples):
    views = defaultdict(int)
    for s in samples:
        m = meta(s)
        pts = np.array(m["pose"]["points"])
        ls, rs = pts[MEDIAPIPE33.index("left_shoulder")], pts[MEDIAPIPE33.index("right_shoulder")]
        nose = pts[0]
        views[m["view"]] += 1
        if m["view"] == "front":   # the person's left is on the image's right
            assert ls[0] > rs[0] and nose[2] > 0.8
        elif m["view"] == "back":  # seen from behind the sides swap and the face is hidden
            assert ls[0] < rs[0] and nose[2] < 0.2 and pts[1:7, 2].max() < 0.2
    assert views["front"] and views["back"] and views["side"]


def test_ir_loses_garment_colour_but_keeps_bright_skin():
    ss = list(iter_synth(ids=4, outfits=2, cams=2, images_per=2, seed=0, modalities=("rgb", "ir")))
    by_mod = defaultdict(list)
    for s in ss:
        by_mod[meta(s)["modality"]].append(s)
        assert meta(s)["modality"] == ("rgb" if meta(s)["camid"] == 1 else "ir")
    for s in by_mod["ir"]:
        img = np.asarray(s["jpg"], int)
        assert np.abs(img[..., 0] - img[..., 1]).max() == 0 and np.abs(img[..., 1] - img[..., 2]).max() == 0
        p = np.asarray(s["parse.png"])
        skin = np.isin(p, [13, 14, 15, 16, 17])
        assert img[..., 0][skin].mean() > img[..., 0][p == 0].mean() + 40
    assert by_mod["rgb"] and by_mod["ir"]


def test_splits_and_clothes_changing_feasibility():
    ss = [meta(s) for s in iter_synth(seed=0, **SMALL)]
    train = {m["pid"] for m in ss if m["split"] == "train"}
    test = {m["pid"] for m in ss if m["split"] != "train"}
    assert train == {1, 2, 3} and test == {4, 5, 6}
    query = [m for m in ss if m["split"] == "query"]
    gallery = [m for m in ss if m["split"] == "gallery"]
    assert len(query) == 3 * 2 * 3 and len(gallery) == len(query)
    for q in query:
        assert any(g["pid"] == q["pid"] and g["camid"] != q["camid"] and g["clothes"] != q["clothes"]
                   for g in gallery), q
    # every (identity, outfit, camera) exists for test ids
    assert {(m["pid"], m["clothes"], m["camid"]) for m in gallery} == \
        {(p, f"{p:04d}_{o}", c) for p in test for o in range(2) for c in (1, 2, 3)}


@pytest.mark.parametrize("bad, option", [({"images_per": 1}, "images_per"), ({"cams": 1}, "cams"),
                                         ({"ids": 1}, "ids"), ({"modalities": ("rgb", "uv")}, "modalities"),
                                         ({"size": (16, 8)}, "size")])
def test_impossible_options_are_clear_errors(bad, option):
    with pytest.raises(SynthOptionError) as err:
        next(iter_synth(**{**SMALL, **bad}))
    assert err.value.option == option


def test_fixtures_give_readable_datasets(synth_dir, synth_ir_dir):
    names = sorted(os.path.basename(p) for p in glob.glob(str(synth_dir / "*.tar")))
    assert names == ["gallery-000000.tar", "query-000000.tar", "train-000000.tar"]
    mods = {meta(s)["modality"] for s in iter_samples(sorted(glob.glob(str(synth_ir_dir / "*.tar"))))}
    assert mods == {"rgb", "ir"}
    s = next(iter_samples([str(synth_dir / "train-000000.tar")]))
    assert image(s).size == (32, 64) and mask(s, "parse.png").mode == "L"


def _read_all(folder):
    return {s["__key__"]: {f: v for f, v in s.items() if not f.startswith("__")}
            for s in iter_samples(sorted(glob.glob(os.path.join(folder, "*.tar"))))}


def test_resume_after_a_kill_reproduces_the_same_samples(tmp_path):
    opts = dict(SMALL, maxcount=5, seed=4)
    full = tmp_path / "full"
    write_dataset(str(full), **opts)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    train = sorted(glob.glob(str(part / "train-*.tar")))
    assert len(train) >= 3
    # a kill while writing shard k leaves shards < k final, shard k as .tar.tmp, nothing after
    k = len(train) // 2
    for p in train[k:]:
        os.remove(p)
    with open(train[k] + ".tmp", "wb") as fh:
        fh.write(b"partial garbage")
    for p in glob.glob(str(part / "query-*.tar")) + glob.glob(str(part / "gallery-*.tar")):
        os.remove(p)
    summary = write_dataset(str(part), **opts)
    assert summary["skipped"] == 5 * k and summary["written"] == len(_read_all(str(full))) - 5 * k
    assert not glob.glob(str(part / "*.tmp"))
    assert _read_all(str(part)) == _read_all(str(full))


def test_cli_synth_then_stats(tmp_path):
    out = tmp_path / "d"
    r = subprocess.run([REID, "synth", "-q", "-o", str(out), "--ids", "4", "--outfits", "2", "--cams", "2",
                        "--size", "64x32", "--seed", "7"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""  # -q: no bar, no summary
    shards = sorted(glob.glob(str(out / "*.tar")))
    r = subprocess.run([REID, "stats", *shards], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    assert rows["train"][1:6] == ["16", "0", "2", "2", "4"]   # images generated ids cameras clothes
    assert rows["query"][1] == "8" and rows["gallery"][1] == "8" and rows["total"][1] == "32"


def test_cli_synth_stdout_into_stats_stdin():
    synth = subprocess.Popen([REID, "synth", "-q", "-o", "-", "--ids", "2", "--outfits", "2", "--cams", "2",
                              "--size", "64x32", "--modalities", "rgb,ir"], stdout=subprocess.PIPE)
    stats = subprocess.run([REID, "stats", "--json", "-"], stdin=synth.stdout, capture_output=True, text=True)
    synth.stdout.close()
    assert synth.wait() == 0 and stats.returncode == 0, stats.stderr
    import json

    data = json.loads(stats.stdout)
    assert data["total"]["images"] == 16 and data["total"]["modalities"] == {"ir": 8, "rgb": 8}
    assert data["total"]["fields"] == {"jpg": 16, "json": 16, "parse.png": 16}


def test_cli_synth_usage_error_exit_2(tmp_path):
    r = subprocess.run([REID, "synth", "-o", str(tmp_path / "x"), "--images-per", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--images-per" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_cli_synth_prints_a_summary_to_stderr(tmp_path):
    r = subprocess.run([REID, "synth", "-o", str(tmp_path / "d"), "--ids", "2", "--outfits", "1", "--cams", "2",
                        "--size", "64x32"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == ""
    rows = {line.split()[0]: line.split()[1:] for line in r.stderr.splitlines() if line.split()}
    assert rows["train"][:4] == ["4", "1", "2", "1"] and rows["query"][:4] == ["2", "1", "2", "1"]
    r = subprocess.run([REID, "synth", "-o", str(tmp_path / "d"), "--ids", "2", "--outfits", "1", "--cams", "2",
                        "--size", "64x32"], capture_output=True, text=True)
    assert "0 samples written" in r.stderr and "8 already present" in r.stderr


def test_rerun_with_other_options_into_the_same_folder_is_refused(tmp_path):
    from reidtools.errors import ReidError

    write_dataset(str(tmp_path), seed=1, **SMALL)
    assert write_dataset(str(tmp_path), seed=1, **SMALL)["skipped"] > 0      # same options: resume
    with pytest.raises(ReidError, match=r"seed 1 -> 2"):
        write_dataset(str(tmp_path), seed=2, **SMALL)
    r = subprocess.run([REID, "synth", "-o", str(tmp_path), "--seed", "3"], capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "other options" in r.stderr


def test_dataset_name_sets_the_field_and_the_key_prefix(tmp_path):
    """Two synthetic sets read together (DiVE's visible + VI sets, DCAC's sources) need distinct
    keys and identities: --dataset names both; the default output is unchanged."""
    small = dict(ids=2, outfits=1, cams=2, images_per=2, size=(32, 16))
    default = list(iter_synth(**small))
    named = list(iter_synth(**small, dataset="synth_vis"))
    assert [s["__key__"] for s in default][:3] == ["synth_p0001_o0_c1_i0", "synth_p0001_o0_c1_i1",
                                                   "synth_p0001_o0_c2_i0"]
    assert [s["__key__"] for s in named] == ["synth_vis" + s["__key__"][5:] for s in default]
    assert {meta(s)["dataset"] for s in default} == {"synth"} and {meta(s)["dataset"] for s in named} == {"synth_vis"}
    write_dataset(str(tmp_path / "a"), **small, dataset="synth_vis")
    with pytest.raises(Exception, match="dataset"):   # resume refuses another name in the same folder
        write_dataset(str(tmp_path / "a"), **small, dataset="other")
    r = subprocess.run([REID, "synth", "-o", str(tmp_path / "b"), "--dataset", "a b"], capture_output=True, text=True)
    assert r.returncode == 2 and "--dataset" in r.stderr
