"""Prompts longer than the text encoder's 77 positions are truncated explicitly: counted, warned about
with their count and dropped words, and recorded in history (never silently cut by diffusers)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.shards import ShardWriter, expand_inputs, iter_samples, meta


@pytest.fixture(scope="module")
def char_tokenizer(tmp_path_factory):
    from reidtools.testing.models import write_clip_tokenizer

    return write_clip_tokenizer(str(tmp_path_factory.mktemp("tok")))


def test_count_includes_start_and_end_tokens(char_tokenizer):
    from reidtools.generate.prompt_length import PromptBudget

    budget = PromptBudget(char_tokenizer)
    # character-level vocabulary: "ab cd" -> a, b</w>, c, d</w>; plus <|startoftext|> and <|endoftext|>
    assert budget.count("ab cd") == 6
    assert budget.limit == 77
    assert budget.check(["ab cd"]) == [6] and budget.summary() is None


def test_long_prompt_warns_with_count_and_dropped_words(char_tokenizer, caplog):
    from reidtools.generate.prompt_length import PromptBudget

    budget = PromptBudget(char_tokenizer)
    prompt = "x" * 75 + " yyyyy"            # 75 + 5 letters + 2 specials = 82 positions; 77 are read
    with caplog.at_level(logging.WARNING, logger="reidtools"):
        assert budget.check([prompt, prompt]) == [82, 82]
        budget.check(["z" * 80])            # a second long prompt: counted, not warned again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    # kept: start token + the 75 x's + end token; dropped: exactly the five y's
    assert "82 tokens" in warnings[0] and "reads 77" in warnings[0] and "'yyyyy'" in warnings[0]
    assert budget.summary() == "2 distinct prompts were longer than 77 tokens and were truncated (longest: 82 tokens)"


def test_inpaint_records_prompt_tokens_and_reports_truncation(tmp_path, capfd):
    from reidtools.testing.models import build_inpaint_pipeline

    model = str(tmp_path / "sd")
    build_inpaint_pipeline(model)
    with ShardWriter(str(tmp_path / "in"), prefix="train") as wr:
        m = np.zeros((32, 16), np.uint8)
        m[8:24] = 255
        wr.write({"__key__": "s0", "jpg": Image.new("RGB", (16, 32), (90, 40, 20)),
                  "mask.png": Image.fromarray(m, "L"),
                  "json": {"dataset": "t", "split": "train", "pid": 0, "camid": 0, "clothes": "0_0"}})
    prompt = " ".join(["red"] * 30)         # 30 x (r, e, d</w>) = 90 + 2 = 92 positions
    run_cli(cli, ["inpaint", "-q", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", model,
                  "--prompts", f"fixed:{prompt}", "-k", "2", "--steps", "1", "--size", "32x16", "--dtype", "fp32",
                  "--device", "cpu"])
    text = capfd.readouterr().err
    assert "a prompt has 92 tokens but the text encoder reads 77" in text
    assert "1 distinct prompts were longer than 77 tokens and were truncated (longest: 92 tokens)" in text
    outs = [meta(s) for s in iter_samples(expand_inputs([str(tmp_path / "out")]))]
    assert len(outs) == 2
    assert all(o["history"][-1]["parameters"]["prompt_tokens"] == 92 for o in outs), json.dumps(outs[0]["history"])


def test_word_tokens_make_each_garment_word_one_token(tmp_path):
    """The demo's tiny tokenizer: CLIP BPE (characters, the last with '</w>', merged by rank) with
    merges that make each synthetic garment word one token; other words still spell out."""
    from transformers import CLIPTokenizer

    from reidtools.data.synth import PROMPT_WORDS
    from reidtools.testing.models import write_clip_tokenizer

    write_clip_tokenizer(str(tmp_path / "tok"), words=PROMPT_WORDS)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))    # reloaded as a pipeline loads it
    assert tok.tokenize("green checked top pink skirt red shoes") == [
        "green</w>", "checked</w>", "top</w>", "pink</w>", "skirt</w>", "red</w>", "shoes</w>"]
    for word in PROMPT_WORDS:
        assert tok.tokenize(word) == [word + "</w>"], word
    # "re" + "d</w>" style pieces of other words are left alone: "reds" is not a garment word
    assert "".join(tok.tokenize("reds")).replace("</w>", "") == "reds" and len(tok.tokenize("reds")) > 1
    assert tok.tokenize("a person") == ["a</w>", "p", "e", "r", "s", "o", "n</w>"]
    ids = tok("red top").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 4
