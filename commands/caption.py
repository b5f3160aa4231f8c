"""`reid caption`: clothing captions and per-clothes-id prompts (CLI glue; library: reidtools.generate)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, progress_enabled,
                                         resolve_task, seed_option, task_options)

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
DEFAULT_SUMMARY_MODEL = "meta-llama/Llama-2-7b-chat-hf"
DLCR_QUESTION = "What clothes is the person wearing?"
STAGE = ".caption-stage"


@command("caption", short_help="Describe each person's clothes and summarise prompts per clothes id.")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--engine", type=click.Choice(["llava", "template", "random"]), default="llava",
              help="llava: a vision-language model (DLCR); template: from the synthetic data's `garments`; "
                   "random: random garments per body part from the packaged vocabulary (DLCR's ablation).")
@click.option("--model", default=DEFAULT_MODEL, help="Image-text-to-text model (hub id or folder) for --engine llava.")
@click.option("--question", default=DLCR_QUESTION, help="The question asked about each image (DLCR's).")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.2,
              help="Sampling temperature (DLCR: 0.2); 0 = greedy, which does not depend on the batch.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=96, help="Longest caption / summary in tokens.")
@click.option("--summarize", is_flag=True,
              help="Per clothes id: summarise its captions with --summary-model and write `clothes_prompt` to each sample.")
@click.option("--summary-model", default=DEFAULT_SUMMARY_MODEL, help="Chat causal LM (hub id or folder) for --summarize.")
@click.option("--words", type=click.IntRange(min=1), default=200,
              help="--summarize: the first N words of a clothes id's concatenated captions (DLCR: 200).")
@click.option("--recaption", is_flag=True, help="--summarize: caption samples that already carry a `caption` again.")
@click.option("--bank", "bank_path", metavar="FILE.json", default=None,
              help="Write the prompt bank (clothes id -> items) for `reid inpaint --prompts bank:FILE.json`.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images (or clothes ids) per model call.")
@click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32"]), default="fp16",
              help="Model dtype (fp16 falls back to fp32 on CPU).")
@click.option("--device", default=None, help="Device [default: best available].")
@task_options
@seed_option
def cli(inputs, output, engine, model, question, temperature, max_new_tokens, summarize, summary_model, words, recaption,
        bank_path, batch_size, dtype, device, shard_index, num_shards, seed, overwrite):
    """Describe each person's clothes and summarise prompts per clothes id.

    --engine llava asks a vision-language model DLCR's question about each image (tall crops are
    padded to a square, not centre-cropped) and writes json `caption`. --summarize then concatenates
    the captions of each clothes id (first --words words), asks a chat LLM to "Extract the clothing
    items from the following text: ...", parses the item list and writes `clothes_prompt` (the items
    normalised as DLCR does) to every sample of that clothes id. --engine template/random need no
    model: they write `caption` and `clothes_prompt` directly. --bank FILE.json collects clothes id
    -> items for `reid inpaint --prompts bank:FILE.json`.

    --summarize and --bank see every clothes id only when one task reads all shards: caption in
    parallel first (an array job without --summarize), then summarise in one task.

    \b
    Examples:
      reid caption --engine template train/ -o cap/ --bank bank.json
      reid caption train/ -o cap/ --summarize --bank bank.json
      reid caption train/ -o cap/ --num-shards 8 --shard-index $SLURM_ARRAY_TASK_ID   # captions only
      reid caption cap/ -o cap2/ --summarize --bank bank.json                          # reuses captions
    """
    import json
    import logging
    import os
    import shutil
    import tempfile

    from reidtools.errors import ReidError
    from reidtools.shards import expand_inputs, map_shards

    log = logging.getLogger("reidtools")
    index, count = resolve_task(shard_index, num_shards)
    if summarize and engine != "llava":
        raise click.UsageError(f"--summarize summarises llava captions; --engine {engine} writes prompts directly")
    if (summarize or bank_path) and count > 1:
        raise click.UsageError("--summarize and --bank need every shard in one task (caption in parallel first, "
                               "then summarise in one task)")
    shards = expand_inputs(list(inputs))
    bank: dict[str, list[str]] = {}
    progress = progress_enabled()

    if engine in ("template", "random"):
        process = _model_free(engine, seed, bank)
        map_shards(shards, output, process, shard_index=index, num_shards=count, desc="caption", progress=progress,
                   overwrite=overwrite)
    elif not summarize:
        if bank_path:
            raise click.UsageError("--bank with --engine llava needs --summarize")
        process = _llava(model, question, temperature, max_new_tokens, batch_size, dtype, device, seed, recaption=True)
        map_shards(shards, output, process, shard_index=index, num_shards=count, desc="caption", progress=progress,
                   overwrite=overwrite)
    else:
        stage = tempfile.mkdtemp(prefix="reid-caption-") if output == "-" else os.path.join(output, STAGE)
        process = _llava(model, question, temperature, max_new_tokens, batch_size, dtype, device, seed, recaption)
        map_shards(shards, stage, process, desc="caption", progress=progress)
        staged = expand_inputs([stage])
        bank.update(_summaries(staged, summary_model, words, max_new_tokens, batch_size, dtype, device, seed, progress))
        prompts = {cid: _normalize(items) for cid, items in bank.items()}
        map_shards(staged, output, _with_prompts(prompts), desc="prompts", progress=progress, overwrite=overwrite)
        shutil.rmtree(stage, ignore_errors=True)
    if bank_path:
        if not bank:
            raise ReidError("no clothes id was seen; the bank would be empty")
        tmp = bank_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(dict(sorted(bank.items())), fh, indent=1, ensure_ascii=False)
        os.replace(tmp, bank_path)
        log.info("wrote %s (%d clothes ids)", bank_path, len(bank))


def _normalize(items):
    from reidtools.generate.prompts import normalize_items

    return normalize_items(items)


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
