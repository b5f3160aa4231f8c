"""MediaPipe Pose on a real photo (the pose extra). Skips cleanly where mediapipe is not importable
(the main venv has numpy 2; run these in a venv with `pip install 'reidtools[pose]'`)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

mp = pytest.importorskip("mediapipe", reason="the pose extra (mediapipe==0.10.21) is not installed")
matplotlib = pytest.importorskip("matplotlib")

PHOTO = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


@pytest.fixture(scope="module")
def estimator():
    from reidtools.vision.pose_mediapipe import MediaPipePose

    est = MediaPipePose()
    yield est
    est.close()


def test_pose_on_grace_hopper(estimator):
    img = Image.open(PHOTO)
    pose, person = estimator(img)
    pts = np.asarray(pose["points"])
    assert pose["format"] == "mediapipe33" and pose["detected"] and pts.shape == (33, 3)
    # off-image joints (her legs) are extrapolated beyond [0, 1] with low visibility; visible ones are inside
    vis = pts[:, 2] > 0.5
    assert vis.sum() >= 11 and ((pts[vis, :2] >= 0) & (pts[vis, :2] <= 1)).all()
    nose, le, re = pts[0], pts[2], pts[5]
    # a frontal portrait: the face is visible, the eyes are level and lie either side of the nose
    assert min(nose[2], le[2], re[2]) > 0.9
    assert abs(le[1] - re[1]) < 0.05 and min(le[0], re[0]) < nose[0] < max(le[0], re[0])
    assert person.shape == (img.height, img.width) and 0.2 < (person > 0).mean() < 0.9


def test_pose_cli_and_frontal_rule(tmp_path):
    import subprocess
    import sys

    from reidtools.shards import ShardWriter, iter_shard, meta

    with ShardWriter(str(tmp_path / "in"), prefix="x") as w:
        w.write({"__key__": "grace", "jpg": Image.open(PHOTO).convert("RGB"), "json": {"pid": 1}})
        w.write({"__key__": "blank", "jpg": Image.new("RGB", (64, 128), (128, 128, 128)), "json": {"pid": 2}})
    reid = [sys.executable, "-m", "reidtools"]
    r = subprocess.run([*reid, "pose", tmp_path / "in", "-o", tmp_path / "p", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = {s["__key__"]: meta(s)["pose"] for s in iter_shard(str(tmp_path / "p" / "x-000000.tar"))}
    assert got["grace"]["detected"] and not got["blank"]["detected"]
    r = subprocess.run([*reid, "filter", "--rule", "frontal", tmp_path / "p", "-o", tmp_path / "f", "-q"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [s["__key__"] for s in iter_shard(str(tmp_path / "f" / "x-000000.tar"))] == ["grace"]


def test_pose_mask_engine_on_photo(tmp_path):
    import subprocess
    import sys

    from reidtools.shards import ShardWriter, iter_shard, mask, meta

    with ShardWriter(str(tmp_path / "in"), prefix="x") as w:
        w.write({"__key__": "grace", "jpg": Image.open(PHOTO).convert("RGB"), "json": {"pid": 1}})
    r = subprocess.run([sys.executable, "-m", "reidtools", "mask", "--engine", "pose", tmp_path / "in", "-o",
                        tmp_path / "m", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (s,) = list(iter_shard(str(tmp_path / "m" / "x-000000.tar")))
    m = np.asarray(mask(s))
    assert meta(s)["pose"]["detected"] and meta(s)["mask"]["engine"] == "pose"
    # the uniform (torso) is repainted, the face (around the nose) is kept
    nose = meta(s)["pose"]["points"][0]
    h, w = m.shape
    assert m[int(nose[1] * h), int(nose[0] * w)] == 0 and (m > 0).mean() > 0.05


def test_pose_engine_iou_on_synthetic(estimator, capsys):
    """Reported, not a target: MediaPipe on cartoon people. 128x64 renders of the synthetic dataset."""
    from reidtools.data.synth import iter_synth
    from reidtools.vision.masks import iou, mask_from_parse, repaint_ids
    from reidtools.vision.pose_mask import pose_mask

    ids = repaint_ids("lip")
    scores, detected = [], 0
    for s in iter_synth(ids=8, outfits=2, cams=2, images_per=2, size=(128, 64), seed=0):
        pose, person = estimator(s["jpg"])
        detected += pose["detected"]
        gt = mask_from_parse(np.asarray(s["parse.png"]), ids)
        scores.append(iou(pose_mask(pose["points"], person), gt) if pose["detected"] else 0.0)
    mean = float(np.mean(scores))
    with capsys.disabled():
        print(f"\npose engine (MediaPipe) IoU vs synthetic DLCR masks: detected {detected}/{len(scores)}, "
              f"mean IoU {mean:.3f} (misses count 0)")
    assert detected > 0 and mean > 0.1
