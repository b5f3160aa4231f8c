"""Camera/pose-biased splits (Pose-dIVE §A, MSMT17-S (Cam)/(Pose)) on the synthetic dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reidtools.data.bias_splits import orientation, write_split
from reidtools.data.labels import MEDIAPIPE33
from reidtools.errors import ReidError
from reidtools.shards import iter_samples, meta

ROOT = Path(__file__).resolve().parents[1]


def _pose(ls, rs, lh, rh, c=0.9):
    pts = [[0.5, 0.5, 0.0]] * 33
    for name, (x, y) in zip(("left_shoulder", "right_shoulder", "left_hip", "right_hip"), (ls, rs, lh, rh)):
        pts[MEDIAPIPE33.index(name)] = [x, y, c]
    return {"format": "mediapipe33", "points": pts}


def test_orientation_on_hand_made_torsos():
    # torso length: shoulder mid (0.5, 0.3) to hip mid (0.5, 0.6) = 0.3; side below 0.35 * 0.3 = 0.105
    assert orientation(_pose((0.6, 0.3), (0.4, 0.3), (0.58, 0.6), (0.42, 0.6))) == "front"   # dx = +0.2
    assert orientation(_pose((0.4, 0.3), (0.6, 0.3), (0.42, 0.6), (0.58, 0.6))) == "back"    # dx = -0.2
    assert orientation(_pose((0.55, 0.3), (0.45, 0.3), (0.5, 0.6), (0.5, 0.6))) == "side"    # dx = 0.1 < 0.105
    assert orientation(_pose((0.6, 0.3), (0.4, 0.3), (0.58, 0.6), (0.42, 0.6), c=0.1)) is None
    assert orientation(None) is None


def test_orientation_agrees_with_the_synthetic_ground_truth(synth_dir):
    samples = list(iter_samples(sorted(str(p) for p in synth_dir.glob("*.tar"))))
    for s in samples:
        m = meta(s)
        assert orientation(m["pose"]) == m["view"], s["__key__"]


@pytest.mark.parametrize("by,train", [("camera", None), ("pose", {"front"})])
def test_train_and_test_values_are_disjoint(synth_dir, tmp_path, by, train):
    shards = sorted(str(p) for p in synth_dir.glob("*.tar"))
    report = write_split(shards, str(tmp_path), by, train)
    got = {sp: [meta(s) for s in iter_samples(sorted(str(p) for p in tmp_path.glob(f"{sp}-*.tar")))]
           for sp in ("train", "query", "gallery")}
    key = (lambda m: m["camid"]) if by == "camera" else (lambda m: m["view"])
    train_vals = {key(m) for m in got["train"]}
    test_vals = {key(m) for sp in ("query", "gallery") for m in got[sp]}
    assert got["train"] and got["query"] and got["gallery"]
    assert not train_vals & test_vals
    assert train_vals == {1} if by == "camera" else train_vals == {"front"}   # default: lower half of {1, 2}
    assert report["train_kept"] == len(got["train"])


def test_script_and_errors(synth_dir, tmp_path):
    one_cam = tmp_path / "one"
    write_split([str(synth_dir / "train-000000.tar")], str(one_cam), "camera", {1})
    with pytest.raises(ReidError, match="at least 2 cameras"):
        write_split(sorted(str(p) for p in one_cam.glob("*.tar")), str(tmp_path / "x"), "camera")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bias_split.py"), str(synth_dir / "train-000000.tar"),
                        "-o", str(tmp_path / "s"), "--by", "pose", "--train", "up"], capture_output=True, text=True)
    assert r.returncode == 2 and "not in front, back, side" in r.stderr
