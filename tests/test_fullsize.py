"""Published-size architectures (random weights, hub layout; configs in reidtools/testing/fullsize/)
driven through the real `reid` command at a small resolution with 1-2 steps.

Outside the default suite: `pytest -m fullsize tests/test_fullsize.py`. Each model is built in its
own process and run in another, one at a time (SD-1.5 is 4.3 GB in fp32 on disk and again in RAM).
Set REID_FULLSIZE_LOG=FILE to append one JSON line per run (wall time, peak RSS) for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.fullsize

REID = [sys.executable, "-m", "reidtools"]


def _run_measured(name: str, argv: list[str]) -> subprocess.CompletedProcess:
    """`argv` under a tiny Python wrapper that prints the child's peak RSS (getrusage of its child)."""
    wrapper = ("import resource,subprocess,sys;"
               "r=subprocess.run(sys.argv[1:]);"
               "sys.stderr.write('\\nPEAK_RSS_KB %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
               "sys.exit(r.returncode)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss_kb = None
    for line in proc.stderr.splitlines()[::-1]:
        if line.startswith("PEAK_RSS_KB "):
            rss_kb = int(line.split()[1])
            break
    log = os.environ.get("REID_FULLSIZE_LOG")
    if log:
        shown = argv[3:] if argv[:3] == REID else argv
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"run": name, "argv": " ".join(shown), "rc": proc.returncode, "wall_s": round(wall, 1),
                                 "peak_rss_gib": None if rss_kb is None else round(rss_kb / 2**20, 2)}) + "\n")
    assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    proc.wall, proc.rss_kb = wall, rss_kb
    return proc


def _build(name: str, folder) -> str:
    _run_measured(f"build {name}", [sys.executable, "-c",
                                    f"from reidtools.testing.fullsize import build; build({name!r}, {str(folder)!r})"])
    return str(folder)


@pytest.fixture(scope="module")
def bpe():
    from reidtools.testing.clip_bpe import bpe_path

    if bpe_path() is None:
        pytest.skip("CLIP BPE vocabulary not found: pip install --no-deps open-clip-torch (or set REID_CLIP_BPE)")
    return bpe_path()


def _person_shard(folder, h=128, w=64, n=1):
    from reidtools.shards import ShardWriter

    r = np.random.RandomState(0)
    with ShardWriter(str(folder), prefix="train") as wr:
        for i in range(n):
            m = np.zeros((h, w), np.uint8)
            m[h // 4: 3 * h // 4, w // 8: 7 * w // 8] = 255
            wr.write({"__key__": f"p{i}", "jpg": Image.fromarray(r.randint(0, 255, (h, w, 3), dtype=np.uint8)),
                      "mask.png": Image.fromarray(m, "L"),
                      "json": {"dataset": "t", "split": "train", "pid": i, "camid": 0, "clothes": f"{i:04d}_0"}})
    return str(folder)


def _meta(folder):
    from reidtools.shards import expand_inputs, iter_samples, meta

    return [meta(s) for s in iter_samples(expand_inputs([str(folder)]))]


# ----------------------------------------------------------------------------- the real CLIP tokenizer
def test_clip_bpe_tokenizer_matches_clip(bpe, tmp_path):
    from reidtools.testing.clip_bpe import write_clip_bpe_tokenizer
    from transformers import AutoTokenizer

    write_clip_bpe_tokenizer(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(tok) == 49408
    # CLIP's own example (openai/CLIP README, transformers' CLIP docs): "a photo of a cat"
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("name", ["sd15", "sd15-inpainting", "sd2-inpainting", "resnet50", "clip-vit-base-patch16",
                                  "llama-2-7b-chat", "llava-1.5-7b"])
def test_parameter_counts_are_the_published_ones(name):
    """Meta-device build: parameter counts of the published checkpoints (their model cards / papers)."""
    import math

    from reidtools.testing.fullsize import shapes

    counts = {k: sum(math.prod(s) for s in d.values()) for k, d in shapes(name).items()}
    expected = {  # millions, rounded as the model cards / common references give them
        "sd15": {"unet": 859.5, "vae": 83.7, "text_encoder": 123.1},
        "sd15-inpainting": {"unet": 859.5, "vae": 83.7, "text_encoder": 123.1},
        "sd2-inpainting": {"unet": 865.9, "vae": 83.7, "text_encoder": 340.4},
        "resnet50": {"model": 25.6},
        "clip-vit-base-patch16": {"model": 149.6},
        "llama-2-7b-chat": {"model": 6738.4},     # 6,738,415,616 (Llama 2 paper's "7B")
        "llava-1.5-7b": {"model": 7063.4},        # 7,063,427,072
    }[name]
    assert {k: round(v / 1e6, 1) for k, v in counts.items()} == expected
    if name.endswith("inpainting"):
        assert shapes(name)["unet"]["conv_in.weight"] == (320, 9, 3, 3)   # 4 latent + 1 mask + 4 masked-image
    if name == "llava-1.5-7b":   # (336 / 14)^2 = 576 image tokens + the class token
        pos = [v for k, v in shapes(name)["model"].items() if k.endswith("position_embedding.weight")]
        assert pos == [(577, 1024)]


# ----------------------------------------------------------------------------- inpainting
@pytest.mark.parametrize("name", ["sd15-inpainting", "sd2-inpainting"])
def test_inpaint_full_size_with_a_dlcr_prompt_over_77_tokens(bpe, tmp_path, name):
    model = _build(name, tmp_path / "model")
    shards = _person_shard(tmp_path / "in")
    # a DLCR bank entry whose normalised prompt is longer than CLIP's 75 content tokens
    items = [f"{c} {g}" for c in ("red", "navy blue", "olive green", "black", "white", "grey", "beige", "maroon")
             for g in ("cotton shirt", "denim jeans", "leather shoes", "wool coat")]
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"0000_0": ["plain top"], "0001_0": items}))
    res = _run_measured(f"inpaint {name}", [*REID, "inpaint", shards, "-o", str(tmp_path / "out"), "--model", model,
                                            "--prompts", f"bank:{bank}", "-k", "1", "--steps", "1", "--size", "128x64",
                                            "--dtype", "fp32", "--device", "cpu", "--batch-size", "1"])
    assert "but the text encoder reads 77: truncated" in res.stderr
    (out,) = _meta(tmp_path / "out")
    params = out["history"][-1]["parameters"]
    assert params["prompt_tokens"] > 77 and params["size"] == [128, 64] and params["steps"] == 1


# ----------------------------------------------------------------------------- ReID backbones
def _synth(folder):
    _run_measured("synth", [*REID, "synth", "-o", str(folder), "--ids", "4", "--outfits", "1", "--cams", "2",
                            "--images-per", "2", "--size", "128x64"])
    return str(folder)


def _assert_backbone_loads_the_saved_weights(backbone: str, folder: str) -> None:
    """The hub checkpoint's head-wrapped keys (resnet.*, vision_model.*) must map onto the backbone:
    every backbone tensor equals the saved one (none silently re-initialised)."""
    import torch
    from safetensors.torch import load_file

    from reidtools.reid.backbones import build_backbone

    saved = load_file(os.path.join(folder, "model.safetensors"))
    net = build_backbone(backbone, folder).net
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        # the hub checkpoint wraps the backbone: ResNetForImageClassification (resnet.*), CLIPModel (vision_model.*)
        name = next((p + key for p in ("", "resnet.", "vision_model.") if p + key in saved), None)
        assert name is not None, f"{key}: not in the saved checkpoint"
        assert torch.equal(value, saved[name]), key


@pytest.mark.parametrize("name,backbone", [("resnet50", "resnet50"), ("clip-vit-base-patch16", "clip-b16"),
                                           ("clip-vit-base-patch16", "vit-b16")])
def test_train_and_eval_full_size_backbone(tmp_path, name, backbone):
    model = _build(name, tmp_path / "model")
    _assert_backbone_loads_the_saved_weights(backbone, model)
    data = _synth(tmp_path / "synth")
    run = tmp_path / "run"
    _run_measured(f"train {backbone}", [*REID, "train", os.path.join(data, "train-*.tar"), "-o", str(run),
                                        "--backbone", backbone, "--pretrained", model, "--epochs", "1",
                                        "--batch", "2x2", "--size", "128x64", "--cpu", "--workers", "0"])
    assert (run / "model.safetensors").exists()
    res = _run_measured(f"eval {backbone}", [*REID, "eval", os.path.join(data, "query-*.tar"), "-g",
                                             os.path.join(data, "gallery-*.tar"), "--model", str(run),
                                             "--device", "cpu", "--json", "-"])
    assert "mAP" in json.loads(res.stdout)
