"""`reid caption`: DLCR's prompt normalisation and item parsing, the model-free engines, and the
llava + summarise path on tiny random-weight models built offline and loaded by folder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.generate.prompts import normalize_items, parse_items, random_outfit, template_items
from reidtools.shards import ShardWriter, expand_inputs, iter_samples, meta


def _reid(*args):
    return run_cli(cli, ["caption", "-q", *map(str, args)])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cap-in")
    r = np.random.RandomState(0)
    with ShardWriter(str(folder), prefix="train", maxcount=3) as wr:
        for i in range(5):
            wr.write({"__key__": f"s{i}", "jpg": Image.fromarray(r.randint(0, 255, (32, 16, 3), dtype=np.uint8)),
                      "json": {"pid": i // 2, "clothes": f"c{i % 3}",
                               "garments": {"upper": ["red", "green", "blue"][i % 3], "upper_pattern": "striped",
                                            "lower": "black", "lower_type": "skirt"}}})
    return str(folder)


def _metas(folder):
    return {s["__key__"]: meta(s) for s in iter_samples(expand_inputs([str(folder)]))}


def test_normalize_items_follows_dlcr():
    # lower-cased, punctuation removed, items of <= 2 characters dropped, joined by spaces
    assert normalize_items(["Blue T-Shirt.", "a", "OK", "Black  Jeans!", "hat"]) == "blue tshirt black jeans hat"
    assert normalize_items([]) == ""


def test_parse_items_reads_lists_and_sentences():
    answer = "Sure! Here are the clothing items:\n1. Blue shirt\n2) black jeans\n- white sneakers"
    assert parse_items(answer) == ["Blue shirt", "black jeans", "white sneakers"]
    assert parse_items("The items are: a red jacket, blue jeans and white shoes.") == ["a red jacket", "blue jeans", "white shoes"]
    assert parse_items("red shirt; red shirt") == ["red shirt"]


def test_model_free_engines_are_deterministic():
    a, b = random_outfit(0, "c1"), random_outfit(0, "c1")
    assert a == b and len(a) == 3
    assert any(random_outfit(0, f"c{i}") != a for i in range(2, 6))
    assert random_outfit(1, "c1") != a or random_outfit(1, "c2") != random_outfit(0, "c2")
    assert template_items({"upper": "red", "upper_pattern": "striped", "lower": "blue", "lower_type": "skirt",
                           "shoes": "black"}) == ["red striped top", "blue skirt", "black shoes"]
    assert template_items({"upper": {"color": "white", "pattern": "plain"}, "lower": {"color": "grey"}}) == \
        ["white top", "grey pants"]


def test_template_engine_writes_prompts_and_bank(tmp_path, shards):
    bank = tmp_path / "bank.json"
    assert _reid(shards, "-o", tmp_path / "out", "--engine", "template", "--bank", bank) == 0
    metas = _metas(tmp_path / "out")
    assert metas["s1"]["clothes_prompt"] == "green striped top black skirt"
    assert metas["s1"]["caption"] == "The person is wearing green striped top, black skirt."
    data = json.loads(bank.read_text())
    assert data == {"c0": ["red striped top", "black skirt"], "c1": ["green striped top", "black skirt"],
                    "c2": ["blue striped top", "black skirt"]}
    # the bank feeds `reid inpaint --prompts bank:` directly
    from reidtools.generate.prompts import PromptPolicy

    targets = PromptPolicy(f"bank:{bank}").targets({"__key__": "s0"}, {"clothes": "c0"}, 2)
    assert {t.target for t in targets} == {"c1", "c2"}


def test_random_engine_and_usage_errors(tmp_path, shards, capsys):
    assert _reid(shards, "-o", tmp_path / "r", "--engine", "random", "--seed", 3) == 0
    metas = _metas(tmp_path / "r")
    assert metas["s0"]["clothes_prompt"] == metas["s3"]["clothes_prompt"]      # same clothes id c0
    assert metas["s0"]["clothes_prompt"] == normalize_items(random_outfit(3, "c0"))
    assert _reid(shards, "-o", tmp_path / "x", "--engine", "random", "--summarize") == 2
    assert _reid(shards, "-o", tmp_path / "x", "--engine", "template", "--bank", tmp_path / "b.json",
                 "--num-shards", 2, "--shard-index", 0) == 2
    nog = tmp_path / "nog"
    with ShardWriter(str(nog), prefix="train") as wr:
        wr.write({"__key__": "k0", "jpg": Image.new("RGB", (8, 16)), "json": {"clothes": "c"}})
    assert _reid(nog, "-o", tmp_path / "y", "--engine", "template") == 1
    err = capsys.readouterr().err
    assert "k0" in err and "garments" in err


def test_missing_hub_model_fails_fast(tmp_path, shards, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _reid(shards, "-o", tmp_path / "x", "--model", "nobody/no-such-llava") == 1
    assert "model nobody/no-such-llava is not in the local cache" in capsys.readouterr().err


# ----------------------------------------------------------------------------- llava + summary, tiny models
@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    from reidtools.testing.models import build_chat_lm, build_llava

    llava, lm = tmp_path_factory.mktemp("llava"), tmp_path_factory.mktemp("lm")
    build_llava(str(llava))
    build_chat_lm(str(lm))
    return str(llava), str(lm)


def test_tall_crops_are_padded_to_square_not_cropped(tiny_vlm):
    import torch

    from reidtools.generate.caption.vlm import Captioner, pad_to_square

    img = Image.new("RGB", (10, 30), (255, 0, 0))
    sq = pad_to_square(img, (1, 2, 3))
    assert sq.size == (30, 30)
    arr = np.asarray(sq)
    assert (arr[:, 10:20] == [255, 0, 0]).all() and (arr[:, :10] == [1, 2, 3]).all()
    cap = Captioner(tiny_vlm[0], device="cpu", dtype=torch.float32, temperature=0.0, max_new_tokens=4)
    assert cap.fill == tuple(int(round(m * 255)) for m in cap.processor.image_processor.image_mean)
    seen = []
    real = cap.processor.__call__

    def spy(*args, **kwargs):
        seen.extend(im.size for im in kwargs["images"])
        return real(*args, **kwargs)

    cap.processor = type("P", (), {"__call__": staticmethod(spy), "batch_decode": cap.processor.batch_decode})()
    answers = cap.caption([img, Image.new("RGB", (16, 32))])
    assert seen == [(30, 30), (32, 32)]
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # the question reaches the model through the chat template
    assert "What clothes is the person wearing?" in cap.prompt and "<image>" in cap.prompt


def test_captioner_logs_the_prompt_as_the_model_sees_it(tiny_vlm):
    """One line per model load: prompt length and image tokens (LLaVA-1.5 at full size: 576 of ~600)."""
    import logging

    import torch

    from reidtools.generate.caption.vlm import Captioner

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log = logging.getLogger("reidtools")
    level = log.level
    log.setLevel(logging.INFO)       # a CLI test before may have left it at WARNING (setLevel clears the cache)
    log.addHandler(handler)
    try:
        cap = Captioner(tiny_vlm[0], device="cpu", dtype=torch.float32, temperature=0.0, max_new_tokens=2)
        cap.caption([Image.new("RGB", (16, 32))])
        cap.caption([Image.new("RGB", (16, 32))])
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    lines = [line for line in lines if line.startswith("caption prompt")]
    # build_llava: 32-pixel images, 8-pixel patches -> (32 / 8)^2 = 16 image tokens (the class token dropped)
    assert len(lines) == 1 and lines[0].endswith(", 16 of them image tokens; pixel values (3, 32, 32)")


def test_llava_summarize_writes_prompts_per_clothes_id(tmp_path, shards, tiny_vlm):
    llava, lm = tiny_vlm
    bank, out = tmp_path / "bank.json", tmp_path / "out"
    assert _reid(shards, "-o", out, "--model", llava, "--summarize", "--summary-model", lm, "--bank", bank,
                 "--dtype", "fp32", "--max-new-tokens", 6, "--batch-size", 2) == 0
    assert not os.path.exists(out / ".caption-stage")
    metas = _metas(out)
    assert all(m["caption"] and m["caption_model"] == llava for m in metas.values())
    data = json.loads(bank.read_text())
    for m in metas.values():
        if m["clothes"] in data:
            assert m["clothes_prompt"] == normalize_items(data[m["clothes"]])
    assert metas["s0"].get("clothes_prompt") == metas["s3"].get("clothes_prompt")    # both c0
    # summarise-only on captioned shards: the captioning model is never loaded
    assert _reid(out, "-o", tmp_path / "again", "--model", str(tmp_path / "no-such-folder"), "--summarize",
                 "--summary-model", lm, "--dtype", "fp32", "--max-new-tokens", 6) == 0
    assert {k: m["caption"] for k, m in _metas(tmp_path / "again").items()} == {k: m["caption"] for k, m in metas.items()}
