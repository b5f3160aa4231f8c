"""`reid caption` as one library call (DLCR seed 000 §3.1, supplementary §10).

Three stages: per-image captions (LLaVA asked DLCR's question, or the model-free `template` /
`random` engines), then per clothes id a chat LLM's item list from the first `words` words of its
captions (`summarize`), then `clothes_prompt` written to every sample of that clothes id, and the
prompt bank (clothes id -> items) for `reid inpaint --prompts bank:FILE.json`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from reidtools.errors import ReidError
from reidtools.generate.options import GeneratorOptions

log = logging.getLogger("reidtools")

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
DEFAULT_SUMMARY_MODEL = "meta-llama/Llama-2-7b-chat-hf"
DLCR_QUESTION = "What clothes is the person wearing?"
# HSGL Alg. 1 line 11 gets a description T_desc with each catalogue garment but does not say how;
# this question (ours) asks the captioning model for one, as IDM-VTON's "model is wearing {desc}" wants
GARMENT_QUESTION = "Describe this garment in a few words."
STAGE = ".caption-stage"


@dataclass(kw_only=True)
class CaptionRun(GeneratorOptions):
    inputs: tuple
    output: str
    engine: str = "llava"
    model: str = DEFAULT_MODEL
    question: str = DLCR_QUESTION
    temperature: float = 0.2              # DLCR
    max_new_tokens: int = 96
    summarize: bool = False
    garments: bool = False                # describe catalogue garments (garment.png) as json garment_desc
    summary_model: str = DEFAULT_SUMMARY_MODEL
    words: int = 200                      # DLCR
    recaption: bool = False
    bank_path: str | None = None
    overwrite: bool = False


def run_caption(run: CaptionRun, *, progress: bool = True) -> dict:
    """Caption (and summarise) the shards; returns the prompt bank (clothes id -> items)."""
    from reidtools.fileio import write_json_atomic
    from reidtools.shards import expand_inputs, map_shards

    if run.summarize and run.engine != "llava":
        raise ReidError(f"--summarize summarises llava captions; --engine {run.engine} writes prompts directly")
    if (run.summarize or run.bank_path) and run.num_shards > 1:
        raise ReidError("--summarize and --bank need every shard in one task (caption in parallel first, "
                        "then summarise in one task)")
    if run.bank_path and run.engine == "llava" and not run.summarize:
        raise ReidError("--bank with --engine llava needs --summarize")
    if run.garments and (run.summarize or run.bank_path):
        raise ReidError("--garments describes catalogue garments; --summarize/--bank are for person captions")
    shards = expand_inputs(list(run.inputs))
    bank: dict[str, list[str]] = {}
    task = dict(shard_index=run.shard_index, num_shards=run.num_shards)
    llava = (run.model, run.question, run.temperature, run.max_new_tokens, run.batch_size, run.dtype, run.device,
             run.seed)
    if run.garments:
        map_shards(shards, run.output, _garment_descriptions(run), desc="caption", progress=progress,
                   overwrite=run.overwrite, **task)
    elif run.engine in ("template", "random"):
        map_shards(shards, run.output, _model_free(run.engine, run.seed, bank), desc="caption", progress=progress,
                   overwrite=run.overwrite, **task)
    elif not run.summarize:
        map_shards(shards, run.output, _llava(*llava, recaption=True), desc="caption", progress=progress,
                   overwrite=run.overwrite, **task)
    else:
        stage = tempfile.mkdtemp(prefix="reid-caption-") if run.output == "-" else os.path.join(run.output, STAGE)
        map_shards(shards, stage, _llava(*llava, recaption=run.recaption), desc="caption", progress=progress)
        staged = expand_inputs([stage])
        bank.update(_summaries(staged, run.summary_model, run.words, run.max_new_tokens, run.batch_size, run.dtype,
                               run.device, run.seed, progress))
        prompts = {cid: _normalize(items) for cid, items in bank.items()}
        map_shards(staged, run.output, _with_prompts(prompts), desc="prompts", progress=progress,
                   overwrite=run.overwrite)
        shutil.rmtree(stage, ignore_errors=True)
    if run.bank_path:
        if not bank:
            raise ReidError("no clothes id was seen; the bank would be empty")
        write_json_atomic(run.bank_path, dict(sorted(bank.items())))
        log.info("wrote %s (%d clothes ids)", run.bank_path, len(bank))
    return bank


def _normalize(items):
    from reidtools.generate.prompts import normalize_items

    return normalize_items(items)


def _garment_descriptions(run: CaptionRun):
    """json `garment_desc` for each catalogue sample (`reid tryoff` output): HSGL's T_desc.

    llava describes the `garment.png` image; template names the garment from the ground-truth
    `garments` the catalogue sample kept from its person (synthetic data); random draws one."""
    from reidtools.errors import SampleError
    from reidtools.generate.prompts import random_outfit, template_items
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import meta, require
    from reidtools.shards.sample import rgb_field

    state = {}
    part = {"tops": 0, "bottoms": 1}

    def describe(batch):
        if run.engine == "llava":
            if "c" not in state:
                from reidtools.generate.caption.vlm import Captioner

                dev = best_device(run.device)
                question = GARMENT_QUESTION if run.question == DLCR_QUESTION else run.question
                state["c"] = Captioner(run.model, device=dev, dtype=torch_dtype(run.dtype, dev), question=question,
                                       temperature=run.temperature, max_new_tokens=run.max_new_tokens)
            pictures = [rgb_field(s, "garment.png") for s in batch]
            return state["c"].caption(pictures, seed=derive_seed(run.seed, batch[0]["__key__"]))
        out = []
        for s in batch:
            m = meta(s)
            if run.engine == "template":
                m = require(s, "garments", hint="--engine template needs ground-truth `garments` (reid synth)")
                try:
                    items = template_items(m["garments"])
                except ValueError as exc:
                    raise SampleError(s.get("__shard__", "<memory>"), s["__key__"], str(exc)) from None
            else:
                items = random_outfit(run.seed, str(m.get("garment") or s["__key__"]))
            out.append(items[min(part.get(m.get("garment_type"), 0), len(items) - 1)])
        return out

    def process(samples):
        buffer = []

        def flush():
            for s, desc in zip(buffer, describe(buffer)):
                m = meta(s)
                m["garment_desc"] = " ".join(str(desc).split())
                m["garment_desc_model"] = run.model if run.engine == "llava" else run.engine
            yield from buffer

        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= run.batch_size:
                yield from flush()
                buffer = []
        if buffer:
            yield from flush()

    return process


def _model_free(engine, seed, bank):
    from reidtools.errors import SampleError
    from reidtools.generate.prompts import random_outfit, template_items, vocabulary
    from reidtools.shards import require

    vocab = vocabulary()

    def process(samples):
        for sample in samples:
            where = (sample.get("__shard__", "<memory>"), sample["__key__"])
            if engine == "template":
                m = require(sample, "garments", hint="--engine template needs ground-truth `garments` (reid synth)")
                try:
                    items = template_items(m["garments"])
                except ValueError as exc:
                    raise SampleError(*where, str(exc)) from None
            else:
                m = require(sample, "clothes", hint="--engine random draws one outfit per clothes id")
                items = random_outfit(seed, m["clothes"], vocab)
            m["caption"] = "The person is wearing " + ", ".join(items) + "."
            m["clothes_prompt"] = _normalize(items)
            if m.get("clothes") is not None:
                bank.setdefault(str(m["clothes"]), items)
            yield sample

    return process


def _llava(model, question, temperature, max_new_tokens, batch_size, dtype, device, seed, recaption):
    from reidtools.runtime import best_device
    from reidtools.runtime import torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import image, meta

    state = {}

    def captioner():
        if "c" not in state:
            from reidtools.generate.caption.vlm import Captioner

            dev = best_device(device)
            state["c"] = Captioner(model, device=dev, dtype=torch_dtype(dtype, dev), question=question,
                                   temperature=temperature, max_new_tokens=max_new_tokens)
        return state["c"]

    def flush(buffer):
        todo = [s for s in buffer if recaption or not meta(s).get("caption")]
        if todo:
            answers = captioner().caption([image(s) for s in todo], seed=derive_seed(seed, todo[0]["__key__"]))
            for s, a in zip(todo, answers):
                m = meta(s)
                m["caption"] = a
                m.pop("clothes_prompt", None)      # described by an older caption
                m["caption_model"] = model
        yield from buffer

    def process(samples):
        buffer = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= batch_size:
                yield from flush(buffer)
                buffer = []
        yield from flush(buffer)

    return process


def _summaries(shards, summary_model, words, max_new_tokens, batch_size, dtype, device, seed, progress):
    import logging

    from tqdm import tqdm

    from reidtools.generate.caption.summarize import Summarizer
    from reidtools.runtime import best_device
    from reidtools.runtime import torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import iter_samples, require

    log = logging.getLogger("reidtools")
    captions: dict[str, list[str]] = {}
    for sample in iter_samples(shards):
        m = require(sample, "clothes", "caption", hint="--summarize groups captions by clothes id")
        captions.setdefault(str(m["clothes"]), []).append(m["caption"])
    dev = best_device(device)
    summarizer = Summarizer(summary_model, device=dev, dtype=torch_dtype(dtype, dev), words=words,
                            max_new_tokens=max_new_tokens)
    ids = sorted(captions)
    bank = {}
    for i in tqdm(range(0, len(ids), batch_size), desc="summarise", disable=not progress, leave=False):
        chunk = ids[i:i + batch_size]
        for cid, (answer, items) in zip(chunk, summarizer.summarize([captions[c] for c in chunk],
                                                                    seed=derive_seed(seed, "summary", chunk[0]))):
            if not items or not _normalize(items):
                log.warning("clothes id %s: no clothing item in the summary %r; left out of the bank", cid, answer[:80])
                continue
            bank[cid] = items
    return bank


def _with_prompts(prompts):
    from reidtools.shards import meta

    def process(samples):
        for sample in samples:
            m = meta(sample)
            prompt = prompts.get(str(m.get("clothes")))
            if prompt:
                m["clothes_prompt"] = prompt
            yield sample

    return process
