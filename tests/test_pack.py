"""`reid pack`: each converter on a fake folder built with the dataset's real naming rules."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from PIL import Image

from reidtools.commands import cli as reid_group
from reidtools.commands._options import run_cli
from reidtools.data.pack import Options, scan_dataset, summarise, write_scan
from reidtools.errors import ReidError
from reidtools.shards import iter_samples, meta

REID = os.path.join(os.path.dirname(sys.executable), "reid")


def img(path, color=(10, 20, 30), size=(4, 8)):
    """A tiny image at `path`, format from the extension; the colour makes the bytes distinct."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[os.path.splitext(path)[1].lower()]
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def junk_file(path, text=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(text)


def pack(fmt, root, out, *extra):
    return run_cli(reid_group, ["pack", fmt, str(root), "-o", str(out), "-q", *extra])


def read(out):
    shards = sorted(str(p) for p in out.glob("*.tar"))
    return {s["__key__"]: s for s in iter_samples(shards)}


def metas(out):
    return {k: meta(s) for k, s in read(out).items()}


# ----------------------------------------------------------------------------- Market-1501 / Duke / CUHK03-NP
def make_market(root):
    tr, q, g = root / "bounding_box_train", root / "query", root / "bounding_box_test"
    img(tr / "0002_c1s1_000451_03.jpg")
    img(tr / "0002_c2s1_000301_01.jpg")
    img(tr / "0007_c3s3_077419_03.jpg")
    img(q / "0001_c1s1_001051_00.jpg")
    img(g / "0001_c5s1_001426_02.jpg")
    img(g / "0000_c6s1_000666_01.jpg")     # distractor: kept
    img(g / "-1_c1s1_000401_03.jpg")       # junk: skipped
    img(g / "-1_c3s1_000551_01.jpg")
    junk_file(tr / "Thumbs.db")
    junk_file(q / ".DS_Store")
    os.makedirs(root / "gt_bbox", exist_ok=True)   # other published folders are not read


def test_market1501(tmp_path):
    make_market(tmp_path / "m")
    assert pack("market1501", tmp_path / "m", tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert sorted(os.listdir(tmp_path / "o")) == ["gallery-000000.tar", "query-000000.tar", "train-000000.tar"]
    assert set(m) == {"train_0002_c1s1_000451_03", "train_0002_c2s1_000301_01", "train_0007_c3s3_077419_03",
                      "query_0001_c1s1_001051_00", "gallery_0001_c5s1_001426_02", "gallery_0000_c6s1_000666_01"}
    t = m["train_0007_c3s3_077419_03"]
    assert (t["dataset"], t["split"], t["pid"], t["camid"], t["seq"], t["frame"]) == ("market1501", "train", 7, 3, 3, 77419)
    assert t["clothes"] == "7" and t["modality"] == "rgb"
    d = m["gallery_0000_c6s1_000666_01"]
    assert (d["split"], d["pid"], d["camid"]) == ("gallery", 0, 6)
    scan = scan_dataset("market1501", str(tmp_path / "m"))
    assert scan.junk == 2 and scan.unknown == 2
    s = summarise(scan)["splits"]
    assert s["train"] == {"images": 3, "ids": 2, "cameras": 3, "clothes": 2, "modalities": ["rgb"]}
    assert s["gallery"]["images"] == 2 and s["gallery"]["ids"] == 2


def test_market_passes_original_bytes(tmp_path):
    make_market(tmp_path / "m")
    pack("market1501", tmp_path / "m", tmp_path / "o")
    sample = read(tmp_path / "o")["query_0001_c1s1_001051_00"]
    assert sample["jpg"] == (tmp_path / "m" / "query" / "0001_c1s1_001051_00.jpg").read_bytes()


def test_summary_on_stderr(tmp_path):
    make_market(tmp_path / "m")
    r = subprocess.run([REID, "pack", "market1501", str(tmp_path / "m"), "-o", str(tmp_path / "o"), "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].split() == ["split", "images", "ids", "cameras", "clothes", "modalities"]
    assert lines[1].split() == ["train", "3", "2", "3", "2", "rgb"]
    assert "junk skipped: 2; unknown files skipped: 2" in r.stderr


def test_unparsable_name_is_one_line_error(tmp_path):
    make_market(tmp_path / "m")
    bad = img(tmp_path / "m" / "query" / "person7.jpg")
    r = subprocess.run([REID, "pack", "market1501", str(tmp_path / "m"), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and str(bad) in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()   # names are checked before anything is written


def test_dukemtmc(tmp_path):
    root = tmp_path / "d"
    img(root / "bounding_box_train" / "0001_c2_f0046182.jpg")
    img(root / "bounding_box_train" / "0001_c6_f0061462.jpg")
    img(root / "query" / "0005_c2_f0046985.jpg")
    img(root / "bounding_box_test" / "0005_c5_f0051341.jpg")
    img(root / "bounding_box_test" / "0019_c8_f0190335.jpg")
    assert pack("dukemtmc", root, tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert len(m) == 5
    q = m["query_0005_c2_f0046985"]
    assert (q["dataset"], q["pid"], q["camid"], q["frame"]) == ("dukemtmc", 5, 2, 46985)
    assert m["gallery_0019_c8_f0190335"]["camid"] == 8
    with pytest.raises(ReidError, match="0001_c2s1"):
        img(root / "query" / "0001_c2s1_000451_03.jpg")   # Market name in a Duke folder
        scan_dataset("dukemtmc", str(root))


def test_cuhk03np_variants(tmp_path):
    root = tmp_path / "c"
    for variant, n in (("detected", 2), ("labeled", 1)):
        for i in range(n):
            img(root / variant / "bounding_box_train" / f"0001_c1_{i + 1}.png")
        img(root / variant / "query" / "1368_c2_1.png")
        img(root / variant / "bounding_box_test" / "1368_c1_3.png")
    assert pack("cuhk03np", root, tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert Counter(v["split"] for v in m.values()) == {"train": 2, "query": 1, "gallery": 1}
    assert m["query_1368_c2_1"]["pid"] == 1368 and m["query_1368_c2_1"]["camid"] == 2
    assert {v["variant"] for v in m.values()} == {"detected"}
    assert "png" in read(tmp_path / "o")["query_1368_c2_1"]
    assert pack("cuhk03np", root, tmp_path / "l", "--variant", "labeled") == 0
    assert Counter(v["split"] for v in metas(tmp_path / "l").values())["train"] == 1
    assert pack("cuhk03np", root, tmp_path / "x", "--variant", "v2") == 2   # not a cuhk03np variant


# ----------------------------------------------------------------------------- MSMT17
def make_msmt(root, v2=False):
    train, test = ("mask_train_v2", "mask_test_v2") if v2 else ("train", "test")
    rows = {"list_train.txt": [(train, "0000/0000_000_01_0303morning_0015_0.jpg", 0),
                               (train, "0000/0000_001_05_0303noon_0152_1.jpg", 0),
                               (train, "0001/0001_000_14_0303afternoon_0620_0.jpg", 1)],
            "list_val.txt": [(train, "0002/0002_000_03_0303morning_0900_0.jpg", 2)],
            "list_query.txt": [(test, "0000/0000_000_07_0303morning_1011_0.jpg", 0)],
            "list_gallery.txt": [(test, "0000/0000_003_15_0113noon_0200_1.jpg", 0),
                                 (test, "0001/0001_000_02_0113noon_0305_0.jpg", 1)]}
    for list_name, entries in rows.items():
        lines = []
        for folder, rel, pid in entries:
            img(root / folder / rel)
            lines.append(f"{rel} {pid}")
        (root / list_name).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("v2", [False, True])
def test_msmt17(tmp_path, v2):
    make_msmt(tmp_path / "s", v2)
    assert pack("msmt17", tmp_path / "s", tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert Counter(v["split"] for v in m.values()) == {"train": 3, "val": 1, "query": 1, "gallery": 2}
    t = m["train_0001_0001_000_14_0303afternoon_0620_0"]
    assert (t["pid"], t["camid"], t["clothes"], t["variant"]) == (1, 14, "train_1", "v2" if v2 else "v1")
    g = m["gallery_0000_0000_003_15_0113noon_0200_1"]
    assert (g["pid"], g["camid"], g["clothes"]) == (0, 15, "test_0")   # test pids restart at 0: scoped clothes


def test_msmt17_variant_flag_and_detection(tmp_path):
    make_msmt(tmp_path / "s")
    with pytest.raises(ReidError, match="missing"):
        scan_dataset("msmt17", str(tmp_path / "s"), Options(variant="v2"))
    os.makedirs(tmp_path / "s" / "mask_train_v2")
    with pytest.raises(ReidError, match="--variant"):
        scan_dataset("msmt17", str(tmp_path / "s"))
    assert len(scan_dataset("msmt17", str(tmp_path / "s"), Options(variant="v1")).items) == 7


# ----------------------------------------------------------------------------- PRCC / LTCC / VC-Clothes
def make_prcc(root):
    rgb = root / "rgb"
    for split, pid in (("train", "001"), ("val", "001"), ("train", "003")):
        for letter in "ABC":
            img(rgb / split / pid / f"{letter}_cropped_rgb{ord(letter):03d}.jpg")
    for letter in "ABC":
        img(rgb / "test" / letter / "310" / "cropped_rgb001.jpg")
        img(rgb / "test" / letter / "310" / "cropped_rgb002.jpg")
    junk_file(rgb / "train" / "001" / "Thumbs.db")


def test_prcc(tmp_path):
    make_prcc(tmp_path / "p")
    assert pack("prcc", tmp_path / "p", tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert Counter(v["split"] for v in m.values()) == {"train": 6, "val": 3, "gallery": 2, "query": 4}
    a, b, c = (m[f"train_{x}_001_{x}_cropped_rgb{ord(x):03d}"] for x in "ABC")
    assert (a["camid"], b["camid"], c["camid"]) == (1, 2, 3)
    assert (a["camera"], b["camera"], c["camera"]) == ("A", "B", "C")
    assert a["clothes"] == b["clothes"] != c["clothes"]          # A and B share an outfit, C differs
    assert m["train_A_003_A_cropped_rgb065"]["clothes"] != a["clothes"]
    assert {v["camera"] for v in m.values() if v["split"] == "gallery"} == {"A"}
    assert {v["camera"] for v in m.values() if v["split"] == "query"} == {"B", "C"}
    qb, qc = m["query_B_310_cropped_rgb001"], m["query_C_310_cropped_rgb001"]
    assert qb["pid"] == qc["pid"] == 310 and qb["clothes"] == m["gallery_A_310_cropped_rgb001"]["clothes"] != qc["clothes"]
    assert scan_dataset("prcc", str(tmp_path / "p")).unknown == 1


def test_prcc_bad_camera_letter(tmp_path):
    make_prcc(tmp_path / "p")
    img(tmp_path / "p" / "rgb" / "train" / "001" / "D_cropped_rgb001.jpg")
    with pytest.raises(ReidError, match="D_cropped_rgb001.jpg"):
        scan_dataset("prcc", str(tmp_path / "p"))


def test_ltcc(tmp_path):
    root = tmp_path / "l"
    img(root / "train" / "001_1_c11_015865.png")
    img(root / "train" / "001_2_c3_015866.png")
    img(root / "query" / "010_1_c2_000123.png")
    img(root / "test" / "010_3_c9_000456.png")
    assert pack("ltcc", root, tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    t = m["train_001_1_c11_015865"]
    assert (t["pid"], t["camid"], t["clothes"], t["frame"]) == (1, 11, "001_1", 15865)
    assert m["train_001_2_c3_015866"]["clothes"] == "001_2"
    assert m["gallery_010_3_c9_000456"]["split"] == "gallery"


def test_vcclothes(tmp_path):
    root = tmp_path / "v"
    img(root / "train" / "0001-01-01-01.jpg")
    img(root / "train" / "0001-03-02-05.jpg")
    img(root / "query" / "0257-02-01-01.jpg")
    img(root / "gallery" / "0257-04-03-07.jpg")
    assert pack("vcclothes", root, tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    t = m["train_0001-03-02-05"]
    assert (t["pid"], t["camid"], t["clothes"], t["frame"]) == (1, 3, "0001_02", 5)
    assert m["query_0257-02-01-01"]["clothes"] != m["gallery_0257-04-03-07"]["clothes"]
    img(root / "gallery" / "0257_04_03_07.jpg")
    with pytest.raises(ReidError, match="0257_04_03_07.jpg"):
        scan_dataset("vcclothes", str(root))


# ----------------------------------------------------------------------------- CCVID
def make_ccvid(root):
    lists = {"train": [("session1/001_01", "001", "u1_l1_s1_c1_m1", 5), ("session3/001_02", "001", "u2_l1_s1_c1_m1", 2)],
             "query": [("session2/150_07", "150", "u1_l1_s1_c1_m1", 2)],
             "gallery": [("session3/150_04", "150", "u3_l2_s1_c1_m1", 3)]}
    for split, rows in lists.items():
        for tracklet, pid, clothes, n in rows:
            for f in range(n):
                img(root / tracklet / f"{f + 10:05d}.jpg")
        (root / f"{split}.txt").write_text("".join(f"{t}\t{p}\t{c}\n" for t, p, c, _ in rows))


def test_ccvid(tmp_path):
    make_ccvid(tmp_path / "c")
    assert pack("ccvid", tmp_path / "c", tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert Counter(v["split"] for v in m.values()) == {"train": 7, "query": 2, "gallery": 3}
    f = m["train_session1_001_01_00012"]
    assert (f["pid"], f["camid"], f["tracklet"], f["frame"], f["clothes"]) == (1, 1, "session1/001_01", 12, "001_u1_l1_s1_c1_m1")
    assert m["train_session3_001_02_00010"]["camid"] == 14        # session3 cameras are offset by 12
    assert m["gallery_session3_150_04_00010"]["clothes"] != m["query_session2_150_07_00010"]["clothes"]
    assert pack("ccvid", tmp_path / "c", tmp_path / "s", "--frame-step", "2") == 0
    frames = sorted(v["frame"] for v in metas(tmp_path / "s").values() if v["tracklet"] == "session1/001_01")
    assert frames == [10, 12, 14]


# ----------------------------------------------------------------------------- SYSU-MM01 / LLCM
def make_sysu(root):
    for cam in range(1, 7):
        for pid in ("0001", "0002", "0003", "0004"):
            if cam == 5 and pid == "0001":
                continue                                  # not every id is seen by every camera
            img(root / f"cam{cam}" / pid / "0001.jpg")
    img(root / "cam1" / "0005" / "0001.jpg")              # id in no list
    (root / "exp").mkdir()
    (root / "exp" / "train_id.txt").write_text("1,2")
    (root / "exp" / "val_id.txt").write_text("3")
    (root / "exp" / "test_id.txt").write_text("4\n")


def test_sysu(tmp_path):
    make_sysu(tmp_path / "s")
    assert pack("sysu", tmp_path / "s", tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert Counter(v["split"] for v in m.values()) == {"train": 11, "val": 6, "query": 2, "gallery": 4}
    assert {v["modality"] for v in m.values() if v["camid"] in (3, 6)} == {"ir"}
    assert {v["modality"] for v in m.values() if v["camid"] not in (3, 6)} == {"rgb"}
    assert {v["camid"] for v in m.values() if v["split"] == "query"} == {3, 6}
    assert {v["pid"] for v in m.values() if v["split"] in ("query", "gallery")} == {4}
    assert m["train_cam3_0002_0001"]["pid"] == 2
    scan = scan_dataset("sysu", str(tmp_path / "s"))
    assert any("1 images of ids in no" in n for n in scan.notes)


def make_llcm(root):
    lists = {"train_vis": ["vis/0001/0001_c01_s185535_f7010_vis.jpg 0", "vis/0001/0001_c04_s185535_f7100_vis.jpg 0"],
             "train_nir": ["nir/0001/0001_c02_s185535_f7020_nir.jpg 0"],
             "test_vis": ["vis/0351/0351_c05_s200656_f4800_vis.jpg 351"],
             "test_nir": ["nir/0351/0351_c06_s200656_f4830_nir.jpg 351", "nir/0351/0351_c07_s200656_f4900_nir.jpg 351"]}
    for name, lines in lists.items():
        for line in lines:
            img(root / line.split()[0])
        os.makedirs(root / "idx", exist_ok=True)
        (root / "idx" / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_llcm(tmp_path):
    make_llcm(tmp_path / "l")
    assert pack("llcm", tmp_path / "l", tmp_path / "o") == 0
    m = metas(tmp_path / "o")
    assert Counter(v["split"] for v in m.values()) == {"train": 3, "query": 2, "gallery": 1}
    q = m["query_nir_0351_0351_c06_s200656_f4830_nir"]
    assert (q["pid"], q["camid"], q["modality"], q["list_label"]) == (351, 6, "ir", 351)
    assert m["train_vis_0001_0001_c04_s185535_f7100_vis"]["modality"] == "rgb"
    assert pack("llcm", tmp_path / "l", tmp_path / "v", "--direction", "v2i") == 0
    v = metas(tmp_path / "v")
    assert {x["modality"] for x in v.values() if x["split"] == "query"} == {"rgb"}
    assert {x["modality"] for x in v.values() if x["split"] == "gallery"} == {"ir"}


# ----------------------------------------------------------------------------- folder manifests
def test_folder_csv_and_jsonl(tmp_path):
    root = tmp_path / "mine"
    img(root / "imgs" / "a.b.jpg")
    img(root / "imgs" / "c.png")
    img(root / "imgs" / "d.bmp", color=(200, 0, 0))
    (root / "manifest.csv").write_text("path,pid,camid,clothes,modality,split,view\n"
                                       "imgs/a.b.jpg,1,1,1_a,rgb,train,front\n"
                                       "imgs/c.png,1,2,1_b,ir,query,\n"
                                       "imgs/d.bmp,2,1,2_a,rgb,gallery,\n"
                                       "notes.txt,3,1,3_a,rgb,train,\n")
    assert pack("folder", root, tmp_path / "o") == 0
    s = read(tmp_path / "o")
    assert set(s) == {"train_imgs_a_b", "query_imgs_c", "gallery_imgs_d"}
    t = s["train_imgs_a_b"]["json"]
    assert (t["dataset"], t["pid"], t["camid"], t["clothes"], t["view"]) == ("mine", 1, 1, "1_a", "front")
    assert s["query_imgs_c"]["json"]["modality"] == "ir"
    bmp = Image.open(io.BytesIO(s["gallery_imgs_d"]["png"]))            # .bmp converted to png, losslessly
    assert bmp.format == "PNG" and bmp.getpixel((0, 0)) == (200, 0, 0)
    (root / "manifest.csv").unlink()
    (root / "m.jsonl").write_text(json.dumps({"path": "imgs/c.png", "pid": 4, "camid": 3, "clothes": "4_x",
                                              "modality": "rgb", "split": "val"}) + "\n")
    assert pack("folder", root / "m.jsonl", tmp_path / "j") == 0
    assert read(tmp_path / "j")["val_imgs_c"]["json"]["pid"] == 4


def test_folder_bad_rows(tmp_path):
    root = tmp_path / "mine"
    img(root / "a.jpg")
    (root / "manifest.csv").write_text("path,pid,camid,clothes,modality,split\na.jpg,1,1,1,rgb,test\n")
    with pytest.raises(ReidError, match="manifest.csv:2: split must be"):
        scan_dataset("folder", str(root))
    (root / "manifest.csv").write_text("path,pid\na.jpg,1\n")
    with pytest.raises(ReidError, match="header lacks camid"):
        scan_dataset("folder", str(root))


def test_duplicate_keys_are_an_error(tmp_path):
    root = tmp_path / "mine"
    img(root / "a b.jpg")
    img(root / "a_b.jpg")
    (root / "manifest.csv").write_text("path,pid,camid,clothes,modality,split\n"
                                       "a b.jpg,1,1,1,rgb,train\na_b.jpg,1,1,1,rgb,train\n")
    with pytest.raises(ReidError, match="key 'train_a_b'"):
        write_scan(scan_dataset("folder", str(root)), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- determinism, resume
def test_deterministic_and_resumable(tmp_path):
    make_prcc(tmp_path / "p")
    assert pack("prcc", tmp_path / "p", tmp_path / "a", "--maxcount", "2") == 0
    assert pack("prcc", tmp_path / "p", tmp_path / "b", "--maxcount", "2") == 0
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(os.listdir(tmp_path / "b")) and len(names) == 3 + 2 + 1 + 2
    for n in names:   # byte-identical apart from tar mtimes: compare the samples
        assert read_one(tmp_path / "a" / n) == read_one(tmp_path / "b" / n)
    # a killed run: one finished shard missing, another left as a partial .tar.tmp
    os.remove(tmp_path / "b" / "train-000001.tar")
    os.replace(tmp_path / "b" / "query-000000.tar", tmp_path / "b" / "query-000000.tar.tmp")
    with open(tmp_path / "b" / "query-000000.tar.tmp", "r+b") as fh:
        fh.truncate(700)
    before = os.path.getmtime(tmp_path / "b" / "train-000000.tar")
    assert pack("prcc", tmp_path / "p", tmp_path / "b", "--maxcount", "2") == 0
    assert sorted(os.listdir(tmp_path / "b")) == names                 # no .tmp left behind
    assert os.path.getmtime(tmp_path / "b" / "train-000000.tar") == before   # finished shards not rewritten
    for n in names:
        assert read_one(tmp_path / "a" / n) == read_one(tmp_path / "b" / n)


def read_one(shard):
    return [(s["__key__"], {f: v for f, v in s.items() if not f.startswith("__")}) for s in iter_samples([str(shard)])]


def test_stdout_stream(tmp_path):
    make_market(tmp_path / "m")
    r = subprocess.run([REID, "pack", "market1501", str(tmp_path / "m"), "-o", "-", "-q"], capture_output=True)
    assert r.returncode == 0
    p = tmp_path / "all.tar"
    p.write_bytes(r.stdout)
    assert len(read_one(p)) == 6


def test_missing_folder_or_no_images_is_clear(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ReidError, match="bounding_box_train: missing folder"):
        scan_dataset("market1501", str(tmp_path / "m"))
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / "m" / folder).mkdir()
    with pytest.raises(ReidError, match="no market1501 images found"):
        scan_dataset("market1501", str(tmp_path / "m"))


def test_real_kill_leaves_only_whole_shards(tmp_path):
    """SIGKILL a run mid-write: every .tar left must read completely; a re-run completes the set and
    gives the same samples as an uninterrupted run."""
    import signal
    import time

    root = tmp_path / "v"
    for i in range(150):
        img(root / "train" / f"{i // 3 + 1:04d}-{i % 4 + 1:02d}-{i % 2 + 1:02d}-{i:02d}.jpg", color=(i, 0, 0))
    os.makedirs(root / "query")
    os.makedirs(root / "gallery")
    out = tmp_path / "o"
    proc = subprocess.Popen([REID, "pack", "vcclothes", str(root), "-o", str(out), "--maxcount", "1", "-q"])
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None and len(list(out.glob("*.tar"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL        # killed mid-run, not finished (150 fsynced shards take > 1 s)
    for shard in out.glob("*.tar"):
        assert len(read_one(shard)) == 1
    assert pack("vcclothes", root, out, "--maxcount", "1") == 0
    assert pack("vcclothes", root, tmp_path / "clean", "--maxcount", "1") == 0
    names = sorted(os.listdir(tmp_path / "clean"))
    assert sorted(os.listdir(out)) == names and len(names) == 150
    for n in names:
        assert read_one(out / n) == read_one(tmp_path / "clean" / n)


# ----------------------------------------------------------------------------- DeepChange / LaST / Celeb-reID
def make_deepchange(root):
    sets = {
        "train-set": [("P00001_C02_D1_F00012.jpg", 3), ("P00001_C05_D2_F00100.jpg", 4)],
        "val-set-query": [("P00050_C01_D1_F00001.jpg", 9)],
        "val-set-gallery": [("P00050_C03_D2_F00002.jpg", 10)],
        "test-set-query": [("P00200_C07_D3_F00001.jpg", 21)],
        "test-set-gallery": [("P00200_C07_D3_F00020.jpg", 22), ("P00201_C01_D1_F00003.jpg", 23)],
    }
    for folder, rows in sets.items():
        for name, _ in rows:
            img(root / folder / name)
        (root / f"{folder}-bbox.txt").write_text("".join(f"{n},{t}\n" for n, t in rows))


def test_deepchange(tmp_path):
    make_deepchange(tmp_path / "d")
    assert pack("deepchange", tmp_path / "d", tmp_path / "o") == 0
    ms = metas(tmp_path / "o")
    m = ms["train_P00001_C02_D1_F00012"]
    # Simple-CCReID: pid from P-number, clothes = P-field + third field, camid := the tracklet id
    assert (m["pid"], m["camid"], m["camera"], m["clothes"]) == (1, 3, 2, "P00001_D1")
    assert ms["train_P00001_C05_D2_F00100"]["clothes"] == "P00001_D2"
    assert Counter(m["split"] for m in ms.values()) == {"train": 2, "query": 1, "gallery": 2}
    g = ms["gallery_P00200_C07_D3_F00020"]
    # same person, same camera, other tracklet: a valid match under the market rule
    assert (g["camid"], g["camera"]) == (22, 7) and ms["query_P00200_C07_D3_F00001"]["camid"] == 21
    assert pack("deepchange", tmp_path / "d", tmp_path / "v", "--variant", "val") == 0
    assert {m["subset"] for m in metas(tmp_path / "v").values() if m["split"] != "train"} == {"val"}


def test_deepchange_bad_lines(tmp_path, capsys):
    make_deepchange(tmp_path / "d")
    (tmp_path / "d" / "test-set-query-bbox.txt").write_text("P00200_C07_D3_F00001.jpg\n")
    assert pack("deepchange", tmp_path / "d", tmp_path / "o") == 1
    assert "NAME,TRACKLET_ID" in capsys.readouterr().err
    (tmp_path / "d" / "test-set-query-bbox.txt").write_text("X00200_C07.jpg,4\n")
    img(tmp_path / "d" / "test-set-query" / "X00200_C07.jpg")
    assert pack("deepchange", tmp_path / "d", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "X00200_C07.jpg" in err and "P{pid}_C{cam}" in err and not list(tmp_path.glob("o/*.tar"))


def make_last(root):
    img(root / "train" / "000001" / "000001_0_0001_0.jpg")
    img(root / "train" / "000001" / "000001_0_0002_1.jpg")
    img(root / "train" / "000002" / "000002_1_0001_0.jpg")
    for part in ("val", "test"):
        img(root / part / "query" / "000100_0_0001_0.jpg")
        img(root / part / "query" / "000101_0_0001_0.jpg")
        img(root / part / "gallery" / "000100" / "000100_3_0005_0.jpg")
        img(root / part / "gallery" / "000101" / "000101_2_0007_1.jpg")
        img(root / part / "gallery" / "000102" / "000102_2_0009_0.jpg")


def test_last(tmp_path):
    make_last(tmp_path / "l")
    assert pack("last", tmp_path / "l", tmp_path / "o") == 0
    ms = metas(tmp_path / "o")
    assert ms["train_000001_000001_0_0002_1"]["clothes"] == "000001_1"     # pid + last field (train only)
    assert ms["train_000001_000001_0_0001_0"]["clothes"] == "000001_0"
    q = {k: m for k, m in ms.items() if m["split"] == "query"}
    g = {k: m for k, m in ms.items() if m["split"] == "gallery"}
    # every image its own camera: queries 0, 1 then gallery 2, 3, 4 (the loaders' `recam`)
    assert sorted(m["camid"] for m in q.values()) == [0, 1]
    assert sorted(m["camid"] for m in g.values()) == [2, 3, 4]
    assert {m["clothes"] for m in g.values()} == {"000100", "000101", "000102"}   # no clothes labels
    assert {m["subset"] for m in q.values()} == {"test"}
    assert pack("last", tmp_path / "l", tmp_path / "v", "--variant", "val") == 0
    assert {m["subset"] for m in metas(tmp_path / "v").values() if m["split"] == "gallery"} == {"val"}


def test_celebreid(tmp_path, capsys):
    r = tmp_path / "c"
    img(r / "train" / "1_1_0.jpg")
    img(r / "train" / "1_2_0.jpg")
    img(r / "query" / "633_1_0.jpg")
    img(r / "gallery" / "633_2_1.jpg")
    img(r / "gallery" / "634_1_0.jpg")
    assert pack("celebreid", r, tmp_path / "o") == 0
    ms = metas(tmp_path / "o")
    assert (ms["query_633_1_0"]["pid"], ms["query_633_1_0"]["camid"]) == (633, 0)
    assert [ms[k]["camid"] for k in ("gallery_633_2_1", "gallery_634_1_0")] == [1, 2]   # after the query's
    assert ms["train_1_2_0"]["image_index"] == 2 and ms["train_1_2_0"]["clothes"] == "1"
    img(r / "gallery" / "x_1.jpg")
    assert pack("celebreid", r, tmp_path / "p") == 1
    assert "{pid}_{n}_{x}" in capsys.readouterr().err


# ----------------------------------------------------------------------------- RegDB
def make_regdb(root, trials=(1, 2)):
    for t in trials:
        for part, pids in (("train", (0, 1)), ("test", (0, 1))):
            for mod, letter in (("visible", "v"), ("thermal", "t")):
                lines = []
                for label in pids:
                    person = label + 1 + (0 if part == "train" else 100) + 10 * t
                    rel = f"{mod.capitalize()}/{person}/male_back_{letter}_{person:05d}_{person}.bmp"
                    img(root / rel)
                    lines.append(f"{rel} {label}")
                (root / "idx").mkdir(parents=True, exist_ok=True)
                (root / "idx" / f"{part}_{mod}_{t}.txt").write_text("\n".join(lines) + "\n")


def test_regdb(tmp_path):
    make_regdb(tmp_path / "r")
    assert pack("regdb", tmp_path / "r", tmp_path / "o") == 0
    samples = read(tmp_path / "o")
    ms = {k: meta(s) for k, s in samples.items()}
    assert len(ms) == 8 and all(s.get("png") for s in samples.values())    # bmp -> png
    q = [m for m in ms.values() if m["split"] == "query"]
    g = [m for m in ms.values() if m["split"] == "gallery"]
    # default v2i (AGW's visible-to-thermal test): visible queries, thermal gallery
    assert {(m["modality"], m["camid"]) for m in q} == {("rgb", 1)}
    assert {(m["modality"], m["camid"]) for m in g} == {("ir", 2)}
    assert {m["clothes"] for m in ms.values()} == {"train_0", "train_1", "test_0", "test_1"}
    assert {m["trial"] for m in ms.values()} == {1}
    assert pack("regdb", tmp_path / "r", tmp_path / "i", "--direction", "i2v", "--variant", "2") == 0
    mi = metas(tmp_path / "i")
    assert {m["modality"] for m in mi.values() if m["split"] == "query"} == {"ir"}
    assert {m["trial"] for m in mi.values()} == {2}


def test_regdb_bad_trial_and_direction_for_others(tmp_path, capsys):
    make_regdb(tmp_path / "r", trials=(1,))
    assert pack("regdb", tmp_path / "r", tmp_path / "o", "--variant", "11") == 2
    assert pack("regdb", tmp_path / "r", tmp_path / "o", "--variant", "2") == 1
    assert "train_visible_2.txt: missing file" in capsys.readouterr().err
    make_market(tmp_path / "m")
    assert pack("market1501", tmp_path / "m", tmp_path / "o", "--direction", "v2i") == 2


# ----------------------------------------------------------------------------- MARS
def make_mars(root):
    from scipy.io import savemat

    train = ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0002C3T0002F001.jpg"]
    test = ["0003C1T0001F001.jpg", "0003C1T0001F002.jpg", "0003C2T0003F001.jpg",
            "00-1C4T0001F001.jpg", "0000C5T0002F001.jpg"]
    for home, names in (("bbox_train", train), ("bbox_test", test)):
        for n in names:
            img(root / home / n[:4] / n)
    (root / "info").mkdir(parents=True)
    (root / "info" / "train_name.txt").write_text("\n".join(train) + "\n")
    (root / "info" / "test_name.txt").write_text("\n".join(test) + "\n")
    savemat(root / "info" / "tracks_train_info.mat", {"track_train_info": [[1, 2, 1, 1], [3, 3, 2, 3]]})
    savemat(root / "info" / "tracks_test_info.mat",
            {"track_test_info": [[1, 2, 3, 1], [3, 3, 3, 2], [4, 4, -1, 4], [5, 5, 0, 5]]})
    savemat(root / "info" / "query_IDX.mat", {"query_IDX": [[1]]})


def test_mars(tmp_path, capsys):
    make_mars(tmp_path / "m")
    assert pack("mars", tmp_path / "m", tmp_path / "o") == 0
    assert "junk skipped: 1" in capsys.readouterr().err           # the pid -1 tracklet's frame
    ms = metas(tmp_path / "o")
    assert Counter(m["split"] for m in ms.values()) == {"train": 3, "query": 2, "gallery": 2}
    q = ms["query_0003C1T0001F002"]
    assert (q["pid"], q["camid"], q["tracklet"], q["frame"]) == (3, 1, "bbox_test/00001", 2)
    assert ms["query_0003C1T0001F001"]["tracklet"] == q["tracklet"]
    assert ms["gallery_0003C2T0003F001"]["tracklet"] == "bbox_test/00002"
    assert ms["gallery_0000C5T0002F001"]["pid"] == 0                 # distractor kept
    assert ms["train_0002C3T0002F001"]["tracklet"] == "bbox_train/00002"


def test_mars_mixed_tracklet_is_an_error(tmp_path, capsys):
    from scipy.io import savemat

    make_mars(tmp_path / "m")
    savemat(tmp_path / "m" / "info" / "tracks_test_info.mat", {"track_test_info": [[1, 3, 3, 1]]})
    assert pack("mars", tmp_path / "m", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "row 1" in err and "several people or cameras" in err and not list(tmp_path.glob("o/*.tar"))


def test_mars_tracklets_feed_eval(tmp_path, capsys):
    """Packed MARS frames, given features, are ranked as tracklets by `reid eval --tracklets`."""
    import numpy as np

    from reidtools.shards import ShardWriter

    make_mars(tmp_path / "m")
    assert pack("mars", tmp_path / "m", tmp_path / "o") == 0
    for split in ("query", "gallery"):
        with ShardWriter(str(tmp_path / "f"), prefix=split) as w:
            for s in iter_samples([str(tmp_path / "o" / f"{split}-000000.tar")]):
                m = meta(s)
                w.write({"__key__": s["__key__"], "json": m,
                         "feat.npy": np.asarray([m["pid"], m["frame"]], np.float32)})
    out = tmp_path / "r.json"
    rc = run_cli(reid_group, ["eval", "-q", str(tmp_path / "f" / "query-000000.tar"), "-g",
                              str(tmp_path / "f" / "gallery-000000.tar"), "-p", "market", "--tracklets", "mean",
                              "--distance", "euclidean", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    # 1 query tracklet (2 frames), 2 gallery tracklets (the junk one skipped); the same person on
    # another camera is the nearer one: rank 1
    assert (res["num_query"], res["num_gallery"], res["rank1"], res["mAP"]) == (1, 2, 1.0, 1.0)
