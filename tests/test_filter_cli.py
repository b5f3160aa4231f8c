"""`reid filter` / `reid pose` through the CLI: the acceptance pipeline, reports, top-N, missing fields."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from reidtools.shards import ShardWriter, iter_shard, meta

REID = [sys.executable, "-m", "reidtools"]


def reid(*args, **kw):
    return subprocess.run([*REID, *map(str, args)], capture_output=True, text=True, **kw)


def test_acceptance_pipeline(tmp_path):
    """reid synth -o - | reid mask --engine labels - -o - | reid filter --rule quality - -o out/"""
    synth = subprocess.Popen([*REID, "synth", "--ids", "4", "--outfits", "1", "--cams", "2", "--images-per", "2",
                              "-o", "-", "-q"], stdout=subprocess.PIPE)
    mask = subprocess.Popen([*REID, "mask", "--engine", "labels", "-", "-o", "-", "-q"], stdin=synth.stdout,
                            stdout=subprocess.PIPE)
    synth.stdout.close()
    filt = subprocess.run([*REID, "filter", "--rule", "quality", "-", "-o", tmp_path / "out", "-q",
                           "--report", tmp_path / "r.json"], stdin=mask.stdout, capture_output=True, text=True)
    mask.stdout.close()
    assert synth.wait() == 0 and mask.wait() == 0 and filt.returncode == 0, filt.stderr
    out = [s for f in sorted(glob.glob(str(tmp_path / "out" / "*.tar"))) for s in iter_shard(f)]
    assert len(out) == 16
    for s in out:
        q = meta(s)["quality"]
        assert q["resolution"] == 128 * 64 and q["sharpness"] > 0 and "mask.png" in s
    assert json.loads((tmp_path / "r.json").read_text()) == {
        "input": 16, "kept": 16, "rules": [{"rule": "quality", "removed": 0, "failed": 0, "parameters": {
            "min_resolution": 0, "min_sharpness": 0.0, "top_n_per_id": None, "top_n": None, "rank": "resolution"}}]}


def test_top_n_per_id_and_report(synth_dir, tmp_path):
    # 8 ids x 2 outfits x 2 cams x 2 images = 8 images per id; keep 3 per id -> 24, from stdin too
    r = reid("filter", "--rule", "quality", "--top-n-per-id", "3", synth_dir, "-o", tmp_path / "a",
             "--report", tmp_path / "a.json", "-q")
    assert r.returncode == 0, r.stderr
    kept = [s for f in sorted(glob.glob(str(tmp_path / "a" / "*.tar"))) for s in iter_shard(f)]
    per_id = {}
    for s in kept:
        per_id.setdefault(meta(s)["pid"], []).append(meta(s)["quality"]["sharpness"])
    assert len(kept) == 24 and all(len(v) == 3 for v in per_id.values())
    # the kept ones are the sharpest of their identity
    every = [s for f in sorted(synth_dir.glob("*.tar")) for s in iter_shard(str(f))]
    from reidtools.shards import image
    from reidtools.vision.quality import sharpness
    for pid, kept_scores in per_id.items():
        all_scores = sorted((round(sharpness(image(s)), 4) for s in every if meta(s)["pid"] == pid), reverse=True)
        assert sorted(kept_scores, reverse=True) == all_scores[:3]
    rep = json.loads((tmp_path / "a.json").read_text())
    assert rep["input"] == 64 and rep["kept"] == 24 and rep["rules"][0]["removed"] == 40
    # the thresholds the rule ran with are in the report beside its counts
    assert rep["rules"][0]["parameters"] == {"min_resolution": 0, "min_sharpness": 0.0, "top_n_per_id": 3,
                                             "top_n": None, "rank": "resolution"}
    with open(synth_dir / "train-000000.tar", "rb") as fh:
        r = reid("filter", "--rule", "quality", "--top-n", "5", "-", "-o", tmp_path / "b", "-q", stdin=fh)
    assert r.returncode == 0, r.stderr
    assert len(list(iter_shard(str(tmp_path / "b" / "stdin-000000.tar")))) == 5


def test_missing_pose_is_exit_1_naming_key_and_command(tmp_path):
    with ShardWriter(str(tmp_path / "in"), prefix="x") as w:
        w.write({"__key__": "nopose", "jpg": Image.new("RGB", (8, 16)), "json": {"pid": 1}})
    r = reid("filter", "--rule", "frontal", tmp_path / "in", "-o", tmp_path / "out", "-q")
    assert r.returncode == 1
    assert "nopose" in r.stderr and "reid pose" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = reid("filter", "--rule", "pose-ref", "--keypoints", "nose,elbow", tmp_path / "in", "-o", tmp_path / "out")
    assert r.returncode == 2 and "elbow" in r.stderr


def test_pose_rules_on_synthetic_keypoints(synth_dir, tmp_path):
    # synthetic poses carry confidences; pose-ref over the body keypoints keeps a subset, and scores land in pose
    r = reid("filter", "--rule", "pose-ref", "--rule", "frontal", "--frontal-mode", "composite", synth_dir,
             "-o", tmp_path, "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["input"] == 64 and 0 < rep["kept"] < 64
    s = next(s for p in sorted(tmp_path.glob("*.tar")) for s in iter_shard(str(p)))
    assert meta(s)["pose"]["scores"]["ref_min_conf"] >= 0.6 and meta(s)["pose"]["frontal"]["passed"]


def test_pose_without_mediapipe_says_how_to_install(synth_dir, tmp_path):
    try:
        import mediapipe  # noqa: F401
        pytest.skip("mediapipe is installed here")
    except ImportError:
        pass
    r = reid("pose", synth_dir / "query-000000.tar", "-o", tmp_path)
    assert r.returncode == 1 and "pip install 'reidtools[pose]'" in r.stderr
