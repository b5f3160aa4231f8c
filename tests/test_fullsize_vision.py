"""Published-size SegFormer-B2 (`reid mask --engine segformer`'s default) and TryOffAnyone (`reid
tryoff`'s default), random weights in the hub layout (configs in reidtools/testing/fullsize/), through
the real command at a small resolution with 1 step.

Outside the default suite: `pytest -m fullsize tests/test_fullsize_vision.py`. Builds and runs are
separate processes, one at a time (TryOffAnyone's U-Net is 3.4 GB in fp32); REID_FULLSIZE_LOG=FILE
appends one JSON line per process (wall time, peak RSS), as tests/test_fullsize.py does.
"""

from __future__ import annotations

import io
import json
import math
import os
import re

import numpy as np
import pytest

from test_fullsize import REID, _build, _meta, _run_measured

pytestmark = pytest.mark.fullsize


def _synth(folder) -> str:
    """One training identity, 2 cameras x 2 images at 128x64, with the ground-truth LIP parse.png."""
    _run_measured("synth", [*REID, "synth", "-o", str(folder), "--ids", "2", "--outfits", "1", "--cams", "2",
                            "--images-per", "2", "--size", "128x64"])
    return os.path.join(str(folder), "train-000000.tar")


def _samples(path) -> list[dict]:
    from reidtools.shards import expand_inputs, iter_samples

    return list(iter_samples(expand_inputs([str(path)])))


def _safetensors_shapes(path: str) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(path, "pt") as fh:  # header only: no tensor is read
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


@pytest.mark.parametrize("name", ["segformer-b2-clothes", "tryoffanyone"])
def test_parameter_counts_are_the_published_ones(name):
    from reidtools.testing.fullsize import shapes

    parts = shapes(name)
    counts = {k: round(sum(math.prod(s) for s in d.values()) / 1e6, 1) for k, d in parts.items()}
    if name == "segformer-b2-clothes":
        # the hub lists mattmdjaga/segformer_b2_clothes at 27.4 M; SegFormer (Xie et al. 2021) Table 1:
        # the MiT-B2 encoder has 24.2 M parameters
        assert counts == {"model": 27.4}
        encoder = sum(math.prod(s) for k, s in parts["model"].items() if k.startswith("segformer."))
        assert round(encoder / 1e6, 1) == 24.2
    else:
        # SD-1.5 inpainting U-Net (as tests/test_fullsize.py) and the SD VAE (sd-vae-ft-mse keeps its shape)
        assert counts == {"unet": 859.5, "vae": 83.7}
        assert parts["unet"]["conv_in.weight"] == (320, 9, 3, 3)


# ----------------------------------------------------------------------------- SegFormer-B2 (reid mask)
def test_mask_segformer_b2_full_size(tmp_path):
    from transformers import AutoImageProcessor

    from reidtools.data.labels import ATR_LABELS
    from reidtools.shards.sample import mask, meta
    from reidtools.vision.masks import mask_from_parse, repaint_ids

    model = _build("segformer-b2-clothes", tmp_path / "model")
    with open(os.path.join(model, "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    assert cfg["depths"] == [3, 4, 6, 3] and cfg["hidden_sizes"] == [64, 128, 320, 512]
    assert cfg["decoder_hidden_size"] == 768 and cfg["num_attention_heads"] == [1, 2, 5, 8]
    names = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]
    assert len(names) == 18 and [n.lower() for n in names] == ATR_LABELS
    saved = _safetensors_shapes(os.path.join(model, "model.safetensors"))
    depth = {}
    for key in saved:
        m = re.match(r"segformer\.encoder\.block\.(\d+)\.(\d+)\.", key)
        if m:
            depth[int(m[1])] = max(depth.get(int(m[1]), 0), int(m[2]) + 1)
    assert depth == {0: 3, 1: 4, 2: 6, 3: 3}
    assert saved["segformer.encoder.patch_embeddings.0.proj.weight"] == (64, 3, 7, 7)
    assert saved["segformer.encoder.block.0.0.attention.self.sr.weight"] == (64, 64, 8, 8)   # sr_ratio 8
    assert saved["decode_head.linear_fuse.weight"] == (768, 4 * 768, 1, 1)
    assert saved["decode_head.classifier.weight"] == (18, 768, 1, 1)
    # the hub's legacy SegformerFeatureExtractor file, read by the engine's AutoImageProcessor
    proc = AutoImageProcessor.from_pretrained(model)
    assert (proc.size["height"], proc.size["width"]) == (512, 512) and proc.resample == 2

    shard = _synth(tmp_path / "synth")
    out = tmp_path / "out"
    _run_measured("mask segformer-b2", [*REID, "mask", "--engine", "segformer", "--model", model, shard, "-o", str(out),
                                        "--device", "cpu", "--batch-size", "2"])
    before, after = _samples(shard), _samples(out)
    assert [s["__key__"] for s in after] == [s["__key__"] for s in before] and len(after) == 4
    for s in after:
        parse = np.asarray(mask(s, "parse.png"))
        assert parse.shape == (128, 64) and parse.max() < 18   # logits upsampled back to the image size
        m = meta(s)
        assert m["parse_labels"] == "atr" and m["mask"]["engine"] == "segformer" and m["mask"]["model"] == model
        assert np.array_equal(np.asarray(mask(s)), mask_from_parse(parse, repaint_ids("atr")))


# ----------------------------------------------------------------------------- TryOffAnyone (reid tryoff)
def test_tryoff_tryoffanyone_full_size(tmp_path):
    from PIL import Image

    from reidtools.generate.tryoff.pipeline import FULL_SIZE_KEY_COUNT, FULL_SIZE_SAMPLE_KEYS
    from reidtools.testing.fullsize import load_config
    from reidtools.testing.fullsize.tryoff import paths

    cfg = load_config("tryoffanyone")
    where = paths(cfg, _build("tryoffanyone", tmp_path / "model"))
    weights = _safetensors_shapes(os.path.join(where["weights"], "model.safetensors"))
    assert len(weights) == FULL_SIZE_KEY_COUNT == 416
    assert {k: weights[k] for k in FULL_SIZE_SAMPLE_KEYS} == FULL_SIZE_SAMPLE_KEYS
    with open(os.path.join(where["model"], "unet", "config.json"), encoding="utf-8") as fh:
        unet = json.load(fh)
    assert unet["in_channels"] == 9 and unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert os.path.isfile(os.path.join(where["model"], "scheduler", "scheduler_config.json"))
    assert os.path.isfile(os.path.join(where["vae"], "diffusion_pytorch_model.safetensors"))

    shard = _synth(tmp_path / "synth")
    out = tmp_path / "out"
    # fp32: the command's default bf16 (TryOffAnyone's) has no native kernels on an AVX2-only CPU and
    # ran at ~200 s per image here (BENCHMARKS.md)
    _run_measured("tryoff tryoffanyone", [*REID, "tryoff", shard, "-o", str(out), "--model", where["model"],
                                          "--vae", where["vae"], "--weights", where["weights"], "--steps", "1",
                                          "--size", "128x64", "--device", "cpu", "--dtype", "fp32"])
    garments = _samples(out)
    sources = [s["__key__"] for s in _samples(shard)]
    assert len(garments) == len(sources) == 4
    for i, (g, src) in enumerate(zip(garments, _meta(out))):
        assert g["__key__"] == src["garment"] == f"g{i:04d}" and src["source"] == sources[i]
        with Image.open(io.BytesIO(g["garment.png"])) as picture:
            assert picture.format == "PNG" and picture.mode == "RGB" and picture.size == (64, 128)
        entry = src["history"][-1]
        assert entry["tool"] == "tryoff" and entry["model"] == where["model"]
        params = entry["parameters"]
        assert params["steps"] == 1 and params["size"] == [128, 64] and params["weights"] == where["weights"]
        assert params["dtype"] == "fp32"
