"""`reid invert`: DiVE identity tokens + camera-code LoRA (fit), and sampling from them (sample).

CLI glue only; the library is reidtools.generate.inversion (training, sample).
"""

from __future__ import annotations

import click

from reidtools.commands._options import (SD_BASE, command, device_option, dtype_option, fit_checkpoint_options,
                                         inputs_argument, output_option, progress_enabled, resolve_task,
                                         scheduler_option, seed_option, task_options)
HELP = "Learn identity tokens and a LoRA (DiVE), then sample new images."


@click.group("invert", short_help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Learn identity tokens and a LoRA (DiVE), then sample new images.

    `fit` learns one textual-inversion token per identity (`<id_PID>`) and one LoRA on the Stable
    Diffusion U-Net, conditioned on a random fixed code per camera (or per modality), from training
    shards. `sample` renders any identity under any camera code, e.g. infrared images of identities
    that were only ever seen in visible light. The checkpoint loads with diffusers' own
    `load_textual_inversion` and `load_lora_weights`.

    \b
    Examples:
      reid invert fit market/train-*.tar sysu/train-*.tar -o ckpt/ --steps 20000
      reid invert sample ckpt/ -o gen/ --cameras ir --per-id 18
      accelerate launch -m reidtools invert fit train/ -o ckpt/ --resume
    """


@command("invert fit", short_help="Train identity tokens and the camera-code LoRA on training shards.")
@inputs_argument
@output_option(help="Checkpoint folder (learned_embeds.safetensors, pytorch_lora_weights.safetensors, manifest.json).")
@click.option("--base", default=SD_BASE, help="Stable Diffusion 1.x pipeline: hub id (local cache) or folder (DiVE: SD 1.5).")
@click.option("--rank", type=click.IntRange(min=1), default=128, help="LoRA rank (paper: 128).")
@click.option("--lr", type=float, default=5e-5, help="AdamW learning rate of the LoRA and the tokens (paper: 5e-5).")
@click.option("--steps", type=click.IntRange(min=1), default=400_000, help="Optimiser steps (paper: 400,000 at batch 16).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Images per step and process (paper: 16).")
@click.option("--size", default="512x256", help="Training size HxW, multiples of 8 (paper: 512x256).")
@click.option("--min-images-per-id", type=click.IntRange(min=1), default=12,
              help="Identities with fewer images are skipped (listed in the manifest).")
@click.option("--code-length", type=click.IntRange(min=1), default=8,
              help="Characters of each random camera code (paper: 8; released code: 4).")
@click.option("--codes-per", type=click.Choice(["camera", "modality"]), default="camera",
              help="One code per modality x camera (paper's multi-view setting) or per modality ([V], [I]).")
@click.option("--id-caption-prob", type=click.FloatRange(0, 1), default=1.0,
              help="Probability of the full caption T([p],[k]) (eq. 6: always); otherwise the camera code alone "
                   "(released code: 0.5).")
@click.option("--template", default="a {camera} photo of {id} person", show_default=True,
              help="Caption template with {camera} and {id}.")
@click.option("--lora-targets", default="to_q,to_k,to_v",
              help="Comma-separated U-Net attention projections that get LoRA (paper: query, key, value).")
@click.option("--lora-mode", type=click.Choice(["partition", "shared"]), default="partition",
              help="partition: each camera code trains and renders its own block of the LoRA's rank (paper §3); "
                   "shared: one LoRA for every code (released code).")
@click.option("--init-token", default="person", help="Word whose embedding initialises every identity token.")
@click.option("--flip/--no-flip", default=True, help="Random horizontal flips (paper: on).")
@fit_checkpoint_options("Identities rendered under each camera code at each validation.")
@seed_option
def fit_cmd(inputs, output, size, lora_targets, resume, device, **options):
    """Train identity tokens and the camera-code LoRA on training shards.

    Every input sample needs `pid`, `camid` and an image (`modality` defaults to rgb). Inputs may
    mix datasets (DiVE: Market-1501 RGB + SYSU-MM01 RGB/IR): identities and cameras are then keyed
    by dataset too (tokens `<id_DATASET_PID>`, cameras `DATASET-ir3`). Captions are
    "a {camera code} photo of <id_PID> person" (eq. 6; --id-caption-prob below 1 sometimes gives the
    code alone, as the released code does with 0.5). Only the LoRA and the new token rows are trained. The checkpoint is written every
    --save-every steps (as -o/checkpoint-N/) and at the end (into -o, with each weight file's
    SHA-256); --resume continues from the newest checkpoint-N/ with the same batches a single run
    would have seen. Runs on several GPUs with `accelerate launch`.
    """
    from reidtools.commands._options import parse_size
    from reidtools.generate.inversion.training import FitOptions, fit
    from reidtools.shards import expand_inputs

    if output == "-":
        raise click.BadParameter("fit writes a checkpoint folder, not a stream", param_hint="-o")
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    if not targets:
        raise click.BadParameter("name at least one module", param_hint="--lora-targets")
    opts = FitOptions(size=parse_size(size, "--size", multiple=8), lora_targets=targets, **options)
    manifest = fit(expand_inputs(list(inputs)), output, opts, resume=resume, progress=progress_enabled(), device=device)
    import logging

    logging.getLogger("reidtools").info("checkpoint %s: %d identities, %d camera codes, step %d, loss %.4f",
                                        output, len(manifest["ids"]), len(manifest["cameras"]), manifest["step"],
                                        manifest.get("last_loss", float("nan")))


@command("invert sample", short_help="Render identities under camera codes from a fit checkpoint.")
@click.argument("ckpt_dir", metavar="CKPT_DIR")
@output_option()
@click.option("--ids", default=None,
              help="Comma-separated pids (or DATASET/PID when several datasets were fit) [default: every identity].")
@click.option("--cameras", multiple=True,
              help="Camera keys (ir3) or modalities (ir); repeatable [default: every IR camera].")
@click.option("--per-id", type=click.IntRange(min=1), default=18, help="Images per identity and camera code (paper: 18).")
@click.option("--steps", type=click.IntRange(min=1), default=25, help="Denoising steps (paper: 25; released code: 50).")
@scheduler_option("dpm++", "paper: DPM-Solver++")
@click.option("--guidance", type=float, default=7.5, help="Classifier-free guidance scale.")
@click.option("--size", default=None, help="Output size HxW [default: the training size].")
@click.option("--base", default=None, help="Base pipeline [default: the one in the manifest].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images per pipeline call.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, help="Samples per output shard.")
@dtype_option()
@device_option
@task_options
@seed_option
def sample_cmd(size, shard_index, num_shards, **options):
    """Render identities under camera codes from a fit checkpoint.

    Prompt: "a {camera code} photo of <id_PID> person" (the fit template). Every image has its own
    seed derived from (--seed, identity, camera, index), so output does not depend on --batch-size or on
    task splitting. Outputs are `invert-NNNNNN.tar` shards of --shard-size samples keyed
    `dive-ID-CAMERA-INDEX` with pid, dataset, camid, modality and a source-less history (prompt, seed,
    steps, scheduler, guidance). --shard-index/--num-shards give each task every N-th output shard;
    finished shards are skipped on a re-run.
    """
    from reidtools.commands._options import parse_size
    from reidtools.generate.inversion.sample import SampleRun, run_sample

    index, count = resolve_task(shard_index, num_shards)
    run_sample(SampleRun(size=parse_size(size, "--size", multiple=8) if size else None, shard_index=index,
                         num_shards=count, **options), progress=progress_enabled())


cli.add_command(fit_cmd, name="fit")
cli.add_command(sample_cmd, name="sample")
