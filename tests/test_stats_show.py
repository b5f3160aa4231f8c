"""`reid stats` and `reid show`: counts, integrity check, contact-sheet layout and overlays."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from reidtools.data.sheet import MASK_COLOR, render_sheet, select
from reidtools.data.stats import dataset_stats, format_table
from reidtools.shards import ShardWriter, derive, history_entry, iter_samples, meta

REID = os.path.join(os.path.dirname(sys.executable), "reid")


def _shards(folder):
    return sorted(glob.glob(str(folder / "*.tar")))


def _run(*args, **kw):
    return subprocess.run([REID, *map(str, args)], capture_output=True, text=True, **kw)


# ----------------------------------------------------------------------------- stats
def test_stats_counts_the_synthetic_dataset(synth_dir):
    st = dataset_stats(_shards(synth_dir))
    # 8 ids: 4 train, 4 test; 2 outfits x 2 cameras x 2 images each
    assert st["splits"]["train"] == {
        "images": 32, "generated": 0, "ids": 4, "cameras": 2, "clothes": 8, "modalities": {"rgb": 32},
        "datasets": {"synth": 32}, "fields": {"jpg": 32, "json": 32, "parse.png": 32},
        "metadata": {"garments": 32, "parse_labels": 32, "pose": 32, "view": 32}}
    assert st["splits"]["query"]["images"] == 16 and st["splits"]["gallery"]["images"] == 16
    assert st["total"]["ids"] == 8 and st["total"]["clothes"] == 16 and st["shards"] == 3
    assert list(st["splits"]) == ["train", "query", "gallery"]
    table = format_table(st)
    assert table.splitlines()[0].split() == ["split", "images", "generated", "ids", "cameras", "clothes", "modalities"]
    assert "fields:   jpg, json, parse.png" in table


def test_stats_json_on_stdout(synth_ir_dir):
    r = _run("stats", "--json", synth_ir_dir)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["total"]["modalities"] == {"ir": 32, "rgb": 32}


def _corrupt_shard(path, synth_dir):
    """A copy of the query shard whose third sample's JPEG is cut in half."""
    samples = list(iter_samples([str(synth_dir / "query-000000.tar")]))
    samples[2]["jpg"] = samples[2]["jpg"][: len(samples[2]["jpg"]) // 2]
    with ShardWriter(str(path), prefix="bad", maxcount=100) as w:
        for s in samples:
            w.write(s)
    return str(path / "bad-000000.tar"), samples[2]["__key__"]


def test_stats_names_shard_and_key_of_a_corrupt_jpeg(tmp_path, synth_dir):
    shard, key = _corrupt_shard(tmp_path, synth_dir)
    r = _run("stats", shard)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and shard in lines[0] and key in lines[0] and "jpg" in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    # without decoding, the shard is structurally fine
    assert _run("stats", "--no-verify", shard).returncode == 0


def test_stats_counts_generated_samples_and_their_fields(tmp_path, synth_dir):
    shard = _with_variants(tmp_path, synth_dir, n_orig=2, k=3)
    st = dataset_stats([shard])
    assert st["total"]["images"] == 2 + 6 and st["total"]["generated"] == 6
    assert st["total"]["fields"]["mask.png"] == 6 and st["total"]["metadata"]["source"] == 6


# ----------------------------------------------------------------------------- show
VARIANT_COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]


def _with_variants(tmp_path, synth_dir, n_orig=2, k=3):
    """Originals from the train shard plus k solid-colour variants each (with a half mask)."""
    originals = list(iter_samples([str(synth_dir / "train-000000.tar")]))[:n_orig]
    out = []
    for o in originals:
        out.append(o)
        for j in range(k):
            m = np.zeros((64, 32), np.uint8)
            m[:32] = 255
            out.append(derive(o, f"{o['__key__']}_v{j}", history_entry("inpaint", seed=j),
                              jpg=Image.new("RGB", (32, 64), VARIANT_COLOURS[j]), **{"mask.png": Image.fromarray(m)}))
    with ShardWriter(str(tmp_path), prefix="gen", maxcount=1000) as w:
        for s in out:
            w.write(s)
    return str(tmp_path / "gen-000000.tar")


def test_show_places_variants_right_of_their_source(tmp_path, synth_dir):
    shard = _with_variants(tmp_path, synth_dir)
    groups = select([shard], n=2, variants=4)
    assert len(groups) == 2
    for g in groups:
        assert [meta(v)["source"] for v in g.variants] == [g.head["__key__"]] * 3
    sheet = render_sheet(groups, per_row=8, tile=(64, 32), overlay="none")
    gap = 2
    assert sheet.size[0] == 4 * (32 + gap) + gap   # one original + three variants per row
    a = np.asarray(sheet)
    for j, colour in enumerate(VARIANT_COLOURS):
        x = gap + (j + 1) * (32 + gap) + 16
        # the middle of variant j's tile in row 0 (JPEG: within a few levels)
        assert np.abs(a[gap + 32, x].astype(int) - colour).max() <= 3
    # with --overlay mask the variants' top half is tinted red
    tinted = np.asarray(render_sheet(groups, tile=(64, 32), overlay="mask", alpha=0.5))
    x = gap + 2 * (32 + gap) + 16              # variant 1 (green)
    top, bottom = tinted[gap + 10, x].astype(float), tinted[gap + 50, x].astype(float)
    assert np.abs(bottom - VARIANT_COLOURS[1]).max() <= 3
    assert np.allclose(top, 0.5 * np.array(VARIANT_COLOURS[1]) + 0.5 * MASK_COLOR, atol=3)


def test_show_selection_is_seeded_filtered_and_order_free(synth_dir):
    shards = _shards(synth_dir)
    a = [g.head["__key__"] for g in select(shards, n=10, seed=1)]
    b = [g.head["__key__"] for g in select(list(reversed(shards)), n=10, seed=1)]
    c = [g.head["__key__"] for g in select(shards, n=10, seed=2)]
    assert a == b and a != c and len(a) == 10
    only = select(shards, n=100, ids={2, 7})
    assert {meta(g.head)["pid"] for g in only} == {2, 7} and len(only) == 2 * 2 * 2 * 2


def test_show_cli_writes_a_png(tmp_path, synth_dir):
    out = tmp_path / "sheet.png"
    r = _run("show", synth_dir, "-o", out, "--n", "12", "--per-row", "6", "--overlay", "parse")
    assert r.returncode == 0, r.stderr
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] == 6 * (64 + 2) + 2
    assert "12 samples" in r.stderr and r.stdout == ""
    r = _run("show", synth_dir, "-o", out, "--ids", "999")
    assert r.returncode == 1 and "no samples to show" in r.stderr
    r = _run("show", synth_dir, "-o", out, "--ids", "a,b")
    assert r.returncode == 2 and "--ids" in r.stderr


@pytest.mark.parametrize("overlay", ["auto", "none"])
def test_show_parse_overlay_changes_person_pixels_only(synth_dir, overlay):
    groups = select(_shards(synth_dir), n=1)
    sheet = np.asarray(render_sheet(groups, tile=(64, 32), overlay=overlay))[2:66, 2:34]
    from reidtools.shards import image, mask

    img, parse = np.asarray(image(groups[0].head)), np.asarray(mask(groups[0].head, "parse.png"))
    bg = parse == 0
    assert np.array_equal(sheet[bg], img[bg])
    assert np.array_equal(sheet[~bg], img[~bg]) == (overlay == "none")


@pytest.mark.parametrize("seed", range(4))
def test_show_counts_originals_not_variants(tmp_path, synth_dir, seed):
    shard = _with_variants(tmp_path, synth_dir, n_orig=3, k=3)
    groups = select([shard], n=2, seed=seed, variants=2)
    assert len(groups) == 2 and all("source" not in meta(g.head) for g in groups)
    assert all(len(g.variants) == 2 for g in groups)
    assert select([shard], n=2, seed=seed, variants=0)[0].variants == []


def test_show_variants_without_their_source_are_shown_as_originals(tmp_path, synth_dir):
    shard = _with_variants(tmp_path, synth_dir, n_orig=2, k=3)
    only_variants = [s for s in iter_samples([shard]) if "source" in meta(s)]
    with ShardWriter(str(tmp_path / "v"), prefix="v") as w:
        for s in only_variants:
            w.write(s)
    groups = select([str(tmp_path / "v" / "v-000000.tar")], n=4)
    assert len(groups) == 4 and all("source" in meta(g.head) for g in groups)


def test_show_keeps_the_variants_of_every_picked_original(tmp_path, synth_dir):
    # originals are followed by their variants in the shard; the last picked one must keep its own
    shard = _with_variants(tmp_path, synth_dir, n_orig=6, k=3)
    for seed in range(6):
        for n in (1, 2, 3):
            groups = select([shard], n=n, seed=seed)
            assert [len(g.variants) for g in groups] == [3] * n, (seed, n)
