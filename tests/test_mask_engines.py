"""`reid mask` engines through their real loading paths, on tiny random-weight models and synthetic data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from reidtools.data.labels import ATR_LABELS
from reidtools.shards import iter_shard, mask, meta
from reidtools.vision.masks import iou, mask_from_parse, repaint_ids

REID = [sys.executable, "-m", "reidtools"]


def reid(*args, **kw):
    return subprocess.run([*REID, *map(str, args)], capture_output=True, text=True, **kw)


def samples(path):
    return list(iter_shard(str(path)))


# ----------------------------------------------------------------------------- labels engine
def test_labels_engine_iou_is_one(synth_dir, tmp_path):
    r = reid("mask", "--engine", "labels", synth_dir / "train-000000.tar", "-o", tmp_path, "-q")
    assert r.returncode == 0, r.stderr
    out = samples(tmp_path / "train-000000.tar")
    assert out
    ids = repaint_ids("lip")
    area = 0
    for s in out:
        m = np.asarray(mask(s))
        gt = mask_from_parse(np.asarray(mask(s, "parse.png")), ids)
        assert iou(m, gt) == 1.0
        area += (m > 0).sum()
        assert meta(s)["parse_labels"] == "lip" and meta(s)["mask"]["engine"] == "labels"
    assert area > 0


def test_labels_engine_keep_and_dilate(synth_dir, tmp_path):
    r = reid("mask", synth_dir / "train-000000.tar", "-o", tmp_path, "--keep", "upper-clothes,coat",
             "--dilate", "2", "-q")
    assert r.returncode == 0, r.stderr
    s = samples(tmp_path / "train-000000.tar")[0]
    parse = np.asarray(mask(s, "parse.png"))
    m = np.asarray(mask(s))
    assert "upper-clothes" not in meta(s)["mask"]["repaint"]
    base = mask_from_parse(parse, repaint_ids("lip", keep=["upper-clothes", "coat"]))
    assert (m[base > 0] == 255).all() and (m > 0).sum() > (base > 0).sum()


def test_labels_engine_without_parse_is_exit_1(tmp_path):
    from reidtools.shards import ShardWriter

    with ShardWriter(str(tmp_path / "in"), prefix="x") as w:
        w.write({"__key__": "nop", "jpg": Image.new("RGB", (8, 16)), "json": {"pid": 1}})
    r = reid("mask", tmp_path / "in", "-o", tmp_path / "out", "-q")
    assert r.returncode == 1 and "nop" in r.stderr and "parse.png" in r.stderr


# ----------------------------------------------------------------------------- pose mask (model-free)
def test_pose_mask_iou_on_synthetic_ground_truth(synth_dir, capsys):
    from reidtools.vision.pose_mask import pose_mask

    ids = repaint_ids("lip")
    scores = []
    for s in samples(synth_dir / "train-000000.tar"):
        parse = np.asarray(mask(s, "parse.png"))
        pm = pose_mask(meta(s)["pose"]["points"], parse > 0)
        scores.append(iou(pm, mask_from_parse(parse, ids)))
        assert not (pm[parse == 0]).any()  # never outside the person
    mean = float(np.mean(scores))
    with capsys.disabled():
        print(f"\npose-mask IoU vs synthetic DLCR mask (GT keypoints + GT silhouette): mean {mean:.3f}")
    assert mean > 0.5


# ----------------------------------------------------------------------------- schp-onnx
def build_onnx(path, size=(32, 24), n=20, batch=1):
    """Three outputs like SCHP's export: aux parsing (n ch), fusion parsing (n ch), edge (2 ch).
    fusion: label 0 = B channel, label 5 (upper-clothes) = R channel, others bias -100; aux votes label 7."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    wf = np.zeros((n, 3, 1, 1), np.float32); bf = np.full(n, -100, np.float32)
    wf[0, 0] = 1; bf[0] = 0          # input channel 0 is B (SCHP's BGR order)
    wf[5, 2] = 1; bf[5] = 0          # input channel 2 is R
    wa = np.zeros((n, 3, 1, 1), np.float32); ba = np.zeros(n, np.float32); ba[7] = 100
    we = np.zeros((2, 3, 1, 1), np.float32); be = np.zeros(2, np.float32)
    inits = [numpy_helper.from_array(a, name) for a, name in
             ((wf, "wf"), (bf, "bf"), (wa, "wa"), (ba, "ba"), (we, "we"), (be, "be"))]
    nodes = [helper.make_node("Conv", ["input.1", "wa", "ba"], ["aux"]),
             helper.make_node("Conv", ["input.1", "wf", "bf"], ["fusion"]),
             helper.make_node("Conv", ["input.1", "we", "be"], ["edge"])]
    graph = helper.make_graph(nodes, "tiny_schp", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, h, w])],
                              [helper.make_tensor_value_info("aux", TensorProto.FLOAT, [batch, n, h, w]),
                               helper.make_tensor_value_info("fusion", TensorProto.FLOAT, [batch, n, h, w]),
                               helper.make_tensor_value_info("edge", TensorProto.FLOAT, [batch, 2, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_schp_preprocess_bgr_and_normalisation():
    from reidtools.vision.parsing_onnx import preprocess

    x = preprocess(Image.new("RGB", (10, 20), (255, 0, 0)), (32, 24))
    assert x.shape == (3, 32, 24)
    # centre pixel is red: B = (0 - 0.406)/0.225, G = (0 - 0.456)/0.224, R = (1 - 0.485)/0.229
    assert x[:, 16, 12] == pytest.approx([-0.406 / 0.225, -0.456 / 0.224, 0.515 / 0.229], abs=1e-5)
    # the 20x10 image fills the 32-high input; the sides of the 24-wide input are the zero border
    assert x[:, 16, 0] == pytest.approx([-0.406 / 0.225, -0.456 / 0.224, -0.485 / 0.229], abs=1e-5)


def test_schp_onnx_engine_reads_model_and_maps_back(tmp_path):
    from reidtools.vision.parsing_onnx import SchpOnnx

    parser = SchpOnnx(str(build_onnx(tmp_path / "parsing_lip.onnx")))
    assert parser.labels == "lip" and parser.size == (32, 24) and parser.output_index == 1
    arr = np.zeros((20, 10, 3), np.uint8)
    arr[:, :5] = (255, 0, 0)
    arr[:, 5:] = (0, 0, 255)
    (labels,) = parser([Image.fromarray(arr)])
    assert labels.shape == (20, 10)
    # SCHP maps the last row back from just beyond its input (zero border) -> background there
    assert (labels[:-1, :4] == 5).all() and (labels[:, 6:] == 0).all()


def test_schp_onnx_dynamic_batch_matches_single(tmp_path):
    from reidtools.vision.parsing_onnx import SchpOnnx

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (20, 10, 3), dtype=np.uint8)) for _ in range(3)]
    single = SchpOnnx(str(build_onnx(tmp_path / "a.onnx")))
    multi = SchpOnnx(str(build_onnx(tmp_path / "b.onnx", batch="N")))
    assert multi.batched and not single.batched
    for a, b in zip(single(imgs), multi(imgs)):
        assert np.array_equal(a, b)


def test_schp_onnx_cli(synth_dir, tmp_path):
    model = build_onnx(tmp_path / "parsing_lip.onnx")
    r = reid("mask", "--engine", "schp-onnx", "--model", model, synth_dir / "query-000000.tar", "-o", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "CPUExecutionProvider" in r.stderr  # the active provider is logged
    for s in samples(tmp_path / "o" / "query-000000.tar"):
        parse = np.asarray(mask(s, "parse.png"))
        assert parse.shape == np.asarray(mask(s)).shape
        assert np.array_equal(np.asarray(mask(s)), mask_from_parse(parse, repaint_ids("lip")))
        assert meta(s)["mask"]["model"].endswith("parsing_lip.onnx")
    r = reid("mask", "--engine", "schp-onnx", "--model", tmp_path / "none.onnx", synth_dir / "query-000000.tar", "-o", tmp_path / "p")
    assert r.returncode == 1 and "none.onnx" in r.stderr


# ----------------------------------------------------------------------------- segformer
@pytest.fixture(scope="module")
def tiny_segformer(tmp_path_factory):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    path = tmp_path_factory.mktemp("segformer")
    names = [n.title() if n != "upper-clothes" else "Upper-clothes" for n in ATR_LABELS]
    cfg = SegformerConfig(num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
                          hidden_sizes=[8, 16, 16, 16], num_attention_heads=[1, 1, 1, 1],
                          decoder_hidden_size=16, num_labels=18,
                          id2label={i: n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)})
    SegformerForSemanticSegmentation(cfg).save_pretrained(path)
    SegformerImageProcessor(size={"height": 64, "width": 32}).save_pretrained(path)
    return path


def test_segformer_cli_tiny_model(synth_dir, tmp_path, tiny_segformer):
    # in-process: a subprocess would pay the transformers import (~20 s here) again
    from reidtools.commands import cli
    from reidtools.commands._options import run_cli

    rc = run_cli(cli, ["mask", "--engine", "segformer", "--model", str(tiny_segformer),
                       str(synth_dir / "query-000000.tar"), "-o", str(tmp_path), "--batch-size", "3", "-q"])
    assert rc == 0
    out = samples(tmp_path / "query-000000.tar")
    assert len(out) == len(samples(synth_dir / "query-000000.tar"))
    for s in out:
        parse = np.asarray(mask(s, "parse.png"))
        assert parse.shape == (64, 32) and parse.max() < 18
        assert meta(s)["parse_labels"] == "atr"
        assert np.array_equal(np.asarray(mask(s)), mask_from_parse(parse, repaint_ids("atr")))


def test_segformer_missing_model_is_one_clear_line(synth_dir, tmp_path):
    r = reid("mask", "--engine", "segformer", synth_dir / "query-000000.tar", "-o", tmp_path, "-q")
    assert r.returncode == 1
    assert "mattmdjaga/segformer_b2_clothes is not in the local cache" in r.stderr
    assert "Traceback" not in r.stderr
