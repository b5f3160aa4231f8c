"""The selection rules, quality scores and label rules on hand-made inputs (hand computations in comments)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from reidtools.errors import SampleError
from reidtools.vision import rules as R
from reidtools.vision.masks import LabelError, dilate, iou, mask_from_parse, parse_label_list, repaint_ids
from reidtools.vision.quality import laplacian, sharpness


def pose_sample(points, **meta):
    """A sample whose pose has 33 points, zero except the given {index: (x, y, c)}."""
    pts = [[0.0, 0.0, 0.0] for _ in range(33)]
    for i, p in points.items():
        pts[i] = list(p)
    return {"__key__": "k1", "__shard__": "s.tar", "json": {"pose": {"format": "mediapipe33", "points": pts}, **meta}}


# MediaPipe indices: nose 0, left eye 2, right eye 5, left ear 7, right ear 8
FRONT = {0: (0.5, 0.2, 0.9), 2: (0.55, 0.18, 0.9), 5: (0.45, 0.19, 0.95), 7: (0.6, 0.2, 0.8), 8: (0.4, 0.2, 0.6)}


# ----------------------------------------------------------------------------- frontal (HSGL)
def test_frontal_eq2_hand_case():
    # dy = |0.18 - 0.19| = 0.01 < 0.05; dv = |0.8 - 0.6| = 0.2 < 0.4; min vis(nose, eyes) = 0.9 > 0.7
    out = R.Frontal()(pose_sample(FRONT))
    assert out.passed and out.scores["eye_dy"] == pytest.approx(0.01) and out.scores["ear_dv"] == pytest.approx(0.2)
    side = {**FRONT, 8: (0.4, 0.2, 0.3)}  # dv = 0.5 >= 0.4 -> profile
    assert not R.Frontal()(pose_sample(side)).passed
    tilted = {**FRONT, 5: (0.45, 0.26, 0.95)}  # dy = 0.08 >= 0.05
    assert not R.Frontal()(pose_sample(tilted)).passed


def test_frontal_visibility_all_vs_max():
    dim_nose = {**FRONT, 0: (0.5, 0.2, 0.6)}  # nose 0.6 <= 0.7 but the eyes are > 0.7
    assert not R.Frontal(visibility="all")(pose_sample(dim_nose)).passed
    assert R.Frontal(visibility="max")(pose_sample(dim_nose)).passed


def test_frontal_composite_hand_case():
    p = {k: np.array(v) for k, v in FRONT.items()}
    # 0.3*0.01 + 0.3*|0.5 - (0.55+0.45)/2| + 0.4*0.2 = 0.003 + 0 + 0.08 = 0.083; eye distance 0.1
    score, dist = R.composite(p[0], p[2], p[5], p[7], p[8])
    assert score == pytest.approx(0.083) and dist == pytest.approx(0.1)
    assert R.Frontal(mode="composite")(pose_sample(FRONT)).passed
    # ears 0.9 / 0.2: 0.003 + 0.4*0.7 + 0.5 (one ear > 0.8, the other < 0.3) = 0.783
    score, _ = R.composite(p[0], p[2], p[5], np.array([0.6, 0.2, 0.9]), np.array([0.4, 0.2, 0.2]))
    assert score == pytest.approx(0.783)
    # eyes 0.06 apart: +0.3 penalty -> 0.003 + 0.3*0.0 + 0.08 + 0.3 = 0.383 and distance <= 0.08 -> fail
    close = {**FRONT, 2: (0.53, 0.18, 0.9), 5: (0.47, 0.19, 0.95)}
    out = R.Frontal(mode="composite")(pose_sample(close))
    assert out.scores["score"] == pytest.approx(0.383) and not out.passed


def test_missing_pose_names_the_key_and_command():
    with pytest.raises(SampleError, match=r"k1.*reid pose"):
        R.Frontal()({"__key__": "k1", "__shard__": "s.tar", "json": {}})


# ----------------------------------------------------------------------------- Pose-dIVE eqs. 3-6
def conf_sample(confs, target=None):
    pts = [[0.5, 0.5, c] for c in confs]
    m = {"pose": {"format": "mediapipe33", "points": pts}}
    if target is not None:
        m["history"] = [{"tool": "posegen", "parameters": {"target_pose": {
            "format": "mediapipe33", "points": [[0.5, 0.5, c] for c in target]}}}]
    return {"__key__": "g1", "__shard__": "s.tar", "json": m}


def test_pose_ref_min_confidence():
    assert R.PoseRef(0.6)(conf_sample([0.9, 0.7, 0.65])).passed            # min 0.65 >= 0.6
    out = R.PoseRef(0.6)(conf_sample([0.9, 0.5, 0.95]))                     # min 0.5 < 0.6
    assert not out.passed and out.scores["ref_min_conf"] == pytest.approx(0.5)


def test_pose_target_mean_confidence():
    s = conf_sample([0.75, 0.5, 0.25])                                      # mean 1.5/3 = 0.5
    assert not R.PoseTarget(0.6)(s).passed and R.PoseTarget(0.5)(s).passed


def test_pose_gen_offset_and_mean():
    # |0.9-1.0| + |0.8-0.5| + |0.4-0.5| + |0.7-0.7| = 0.5 -> O = 0.125; mean(gen) = 2.8/4 = 0.7
    s = conf_sample([0.9, 0.8, 0.4, 0.7], target=[1.0, 0.5, 0.5, 0.7])
    out = R.PoseGen(tau=0.6, eps=0.2)(s)
    assert out.passed and out.scores["gen_offset"] == pytest.approx(0.125) and out.scores["gen_mean_conf"] == pytest.approx(0.7)
    assert not R.PoseGen(tau=0.6, eps=0.1)(s).passed
    assert not R.PoseGen(tau=0.75, eps=0.2)(s).passed


def test_pose_gen_needs_target_pose_in_history():
    with pytest.raises(SampleError, match=r"g1.*target_pose.*reid posegen"):
        R.PoseGen()(conf_sample([0.9, 0.9]))


def test_keypoint_subset():
    # only nose (0) and left eye (2) count: min(0.9, 0.8) = 0.8; the 0.1 elsewhere is ignored
    s = conf_sample([0.9, 0.1, 0.8] + [0.1] * 30)
    assert R.PoseRef(0.6, ["nose", "left_eye"])(s).passed and not R.PoseRef(0.6)(s).passed


# ----------------------------------------------------------------------------- quality, size, top-N
def test_laplacian_hand_case():
    # 3x3 with a 9 in the centre, reflect-101 borders: centre -36, edge-centres 9+9 = 18, corners 0;
    # mean (4*18 - 36)/9 = 4; var = (4*14^2 + 40^2 + 4*4^2)/9 = 2448/9 = 272
    g = np.zeros((3, 3)); g[1, 1] = 9
    lap = laplacian(g)
    assert lap[1, 1] == -36 and lap[0, 1] == 18 and lap[0, 0] == 0 and lap.var() == pytest.approx(272)


def test_sharp_beats_blurred():
    rng = np.random.default_rng(0)
    sharp = Image.fromarray((rng.random((64, 32)) > 0.5).astype(np.uint8) * 255).convert("RGB")
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    flat = Image.new("RGB", (32, 64), (120, 30, 200))
    assert sharpness(sharp) > 10 * sharpness(blurred) > 0 and sharpness(flat) == 0


def img_sample(key, img, pid=1):
    return {"__key__": key, "__shard__": "s.tar", "jpg": img, "json": {"dataset": "d", "pid": pid}}


def test_quality_and_size_rules():
    img = Image.new("RGB", (32, 64))
    q = R.Quality(min_resolution=32 * 64)(img_sample("a", img))
    assert q.passed and q.scores["resolution"] == 2048 and q.scores["sharpness"] == 0
    assert not R.Quality(min_resolution=2049)(img_sample("a", img)).passed
    assert not R.Quality(min_sharpness=1)(img_sample("a", img)).passed
    assert R.Size(min_height=64, min_width=32, min_aspect=2.0, max_aspect=2.0)(img_sample("a", img)).passed
    assert not R.Size(min_aspect=2.5)(img_sample("a", img)).passed
    assert not R.Size(min_width=33)(img_sample("a", img)).passed


def test_select_top_per_id_then_overall():
    cands = [("a", 1, (5.0,)), ("b", 1, (7.0,)), ("c", 1, (6.0,)), ("d", 2, (1.0,)), ("e", 2, (9.0,))]
    assert R.select_top(cands, 2, None) == {"b", "c", "e", "d"}
    assert R.select_top(cands, 1, None) == {"b", "e"}
    assert R.select_top(cands, None, 2) == {"e", "b"}
    assert R.select_top(cands, 2, 3) == {"e", "b", "c"}


def test_counts_first_failing_rule():
    c = R.Counts(["frontal", "quality"])
    for passes in ([True, True], [False, False], [True, False]):
        c.add(passes)
    d = c.as_dict()
    assert d["input"] == 3 and d["kept"] == 1
    assert d["rules"] == [{"rule": "frontal", "removed": 1, "failed": 1}, {"rule": "quality", "removed": 1, "failed": 2}]


# ----------------------------------------------------------------------------- label rules
def test_dlcr_rule_lip_and_atr():
    # LIP: keep background 0, hat 1, hair 2, face 13, arms 14-15, legs 16-17; repaint the rest
    assert repaint_ids("lip") == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19]
    # ATR: keep background 0, hat 1, hair 2, face 11, legs 12-13, arms 14-15
    assert repaint_ids("atr") == [3, 4, 5, 6, 7, 8, 9, 10, 16, 17]
    assert repaint_ids("lip", keep=["glove"], repaint=["hair"]) == [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19]
    assert parse_label_list("Upper-Clothes, 9", "lip") == ["upper-clothes", "pants"]
    with pytest.raises(LabelError):
        parse_label_list("bag", "lip")
    with pytest.raises(LabelError):
        repaint_ids("lip", keep=["hair"], repaint=["hair"])


def test_mask_dilate_and_iou():
    parse = np.array([[0, 5, 13], [9, 2, 0]], dtype=np.uint8)
    m = mask_from_parse(parse, repaint_ids("lip"))
    assert m.tolist() == [[0, 255, 0], [255, 0, 0]]
    dot = np.zeros((5, 5), np.uint8); dot[2, 2] = 255
    grown = dilate(dot, 1)
    assert (grown[1:4, 1:4] == 255).all() and grown.sum() == 9 * 255
    assert iou(dot, grown) == pytest.approx(1 / 9) and iou(dot * 0, dot * 0) == 1.0


def test_quality_ranking_is_resolution_first_and_the_released_score_is_an_option():
    """HSGL §3.2.1: "the selection process prioritizes images with higher resolution and minimal
    blurriness". A is 100x50 with S = 10, B is 98x50 with S = 200. Resolution first: A (5000 px) beats
    B (4900 px). The released score R*(10 + 0.5*min(S/100, 1)) gives A 5000*10.05 = 50250 and
    B 4900*10.5 = 51450, so B wins there."""
    a, b = {"resolution": 5000, "sharpness": 10.0}, {"resolution": 4900, "sharpness": 200.0}
    paper = R.Quality()
    assert paper.rank == "resolution" and paper.rank_value(a) > paper.rank_value(b)
    released = R.Quality(rank="released")
    assert released.rank_value(a)[0] == pytest.approx(50250.0) and released.rank_value(b)[0] == pytest.approx(51450.0)
    assert released.rank_value(b) > released.rank_value(a)
    # equal resolution: the sharper one first
    assert paper.rank_value({"resolution": 5000, "sharpness": 11.0}) > paper.rank_value(a)
