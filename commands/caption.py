"""`reid caption`: clothing captions and per-clothes-id prompts (library: reidtools.generate.caption.run)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, device_option, dtype_option, inputs_argument, output_option,
                                         overwrite_option, progress_enabled, resolve_task, seed_option, task_options)
# the papers' defaults, named once in the library (that module does not import torch)
from reidtools.generate.caption.run import DEFAULT_MODEL, DEFAULT_SUMMARY_MODEL, DLCR_QUESTION


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
@click.option("--garments", is_flag=True,
              help="Describe catalogue garments (`reid tryoff` output: garment.png) as json `garment_desc`, "
                   "HSGL's T_desc for `reid tryon`.")
@click.option("--summarize", is_flag=True,
              help="Per clothes id: summarise its captions with --summary-model and write `clothes_prompt` to each sample.")
@click.option("--summary-model", default=DEFAULT_SUMMARY_MODEL, help="Chat causal LM (hub id or folder) for --summarize.")
@click.option("--words", type=click.IntRange(min=1), default=200,
              help="--summarize: the first N words of a clothes id's concatenated captions (DLCR: 200).")
@click.option("--recaption", is_flag=True, help="--summarize: caption samples that already carry a `caption` again.")
@click.option("--bank", "bank_path", metavar="FILE.json", default=None,
              help="Write the prompt bank (clothes id -> items) for `reid inpaint --prompts bank:FILE.json`.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images (or clothes ids) per model call.")
@dtype_option()
@device_option
@task_options
@seed_option
def cli(shard_index, num_shards, **options) -> None:
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
    from reidtools.generate.caption.run import CaptionRun, run_caption

    index, count = resolve_task(shard_index, num_shards)
    if options["summarize"] and options["engine"] != "llava":
        raise click.UsageError(f"--summarize summarises llava captions; --engine {options['engine']} writes "
                               "prompts directly")
    if (options["summarize"] or options["bank_path"]) and count > 1:
        raise click.UsageError("--summarize and --bank need every shard in one task (caption in parallel first, "
                               "then summarise in one task)")
    if options["garments"] and (options["summarize"] or options["bank_path"]):
        raise click.UsageError("--garments describes catalogue garments; --summarize/--bank are for person captions")
    if options["bank_path"] and options["engine"] == "llava" and not options["summarize"]:
        raise click.UsageError("--bank with --engine llava needs --summarize")
    run_caption(CaptionRun(shard_index=index, num_shards=count, **options), progress=progress_enabled())
