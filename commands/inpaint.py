"""`reid inpaint`: K repaintings of each clothing region (library: reidtools.generate.inpaint.run)."""

from __future__ import annotations

import click

from reidtools.commands._options import (SD_INPAINT, command, device_option, dtype_option, empty_mask_option,
                                         inputs_argument, output_option, overwrite_option, parse_size,
                                         progress_enabled, resolve_task, scheduler_option, seed_option, task_options)


def _policy(ctx, param, value):
    from reidtools.generate.prompts import parse_policy

    try:
        parse_policy(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


@command("inpaint", short_help="Repaint the clothing region K times with a diffusion inpainting model.")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--model", default=SD_INPAINT,
              help="Inpainting pipeline: hub id (local cache), folder, or a `reid finetune` folder. HSGL used "
                   "stabilityai/stable-diffusion-2-inpainting.")
@click.option("--prompts", "prompt_spec", metavar="POLICY", required=True, callback=_policy,
              help="bank:FILE.json (other clothes ids' items, DLCR), fixed:TEXT (HSGL: fixed:'generate a new cloth "
                   "for the person'), or field:NAME (a metadata field, e.g. field:clothes_prompt).")
@click.option("--negative-prompt", default=None, help="Negative prompt for every output.")
@click.option("-k", "--variants", type=click.IntRange(min=1), default=10,
              help="K outputs per input (DLCR paper: 10; its released code: 5).")
@click.option("--steps", type=click.IntRange(min=1), default=50, help="Denoising steps (DLCR: 50).")
@click.option("--size", default="768x256", help="Generation size HxW, multiples of 8 (DLCR: 768x256).")
@click.option("--guidance", type=float, default=7.5,
              help="Classifier-free guidance scale (DLCR passes none, i.e. diffusers' 7.5); recorded in history.")
@click.option("--strength", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0,
              help="1.0 starts from pure noise in the mask (diffusers' default).")
@scheduler_option("default", "PNDM for SD 1.5 inpainting")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Outputs per pipeline call.")
@dtype_option()
@device_option
@click.option("--compile", is_flag=True, help="torch.compile the U-Net (regional: its repeated blocks).")
@click.option("--channels-last/--no-channels-last", default=True, help="channels-last memory format for the U-Net.")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png",
              help="Image field of the outputs; png keeps pixels outside the mask bit-exact, jpg does not.")
@click.option("--keep-source", is_flag=True, help="Also pass each input sample through, before its variants.")
@click.option("--mask-field", default="mask.png", help="The L-mode mask field (255 = repaint).")
@empty_mask_option
@click.option("--discriminator", metavar="DISC_DIR", default=None,
              help="Discriminator guidance (DLCR §12) with a folder made by `reid discriminator`.")
@click.option("--dg-weight", type=float, default=1.0, help="Discriminator guidance weight w (eq. 8).")
@click.option("--dg-min-t", type=float, default=0.0,
              help="Guide only at timesteps t >= this: 0 = every step (DLCR §12.1); the released code uses 201.")
@task_options
@seed_option
def cli(size: str, shard_index, num_shards, **options) -> None:
    """Repaint the clothing region K times with a diffusion inpainting model.

    Each input sample needs an image and a mask (`reid mask`). For every sample, K variants are
    generated with Stable Diffusion inpainting, keyed `{source}-inpaint{k:02d}`, with `source`, a
    new `clothes` id and a `history` entry (model, scheduler, steps, guidance, size, seed, prompt,
    target clothes id). The generated region is composited into the original at its original size
    (mask*gen + (1-mask)*orig), so identity pixels are kept exactly. Seeds derive from (--seed, key,
    k): outputs do not depend on --batch-size or on how shards are split across tasks.

    \b
    Examples:
      reid caption --engine template train/ -o cap/ --bank bank.json
      reid inpaint cap/ -o gen/ --prompts bank:bank.json -k 10
      reid inpaint masked/ -o gen/ --prompts fixed:"generate a new cloth for the person"
      reid discriminator train/ --fake gen/ -o disc/
      reid inpaint cap/ -o gen2/ --prompts bank:bank.json --discriminator disc/ --dg-weight 1
    """
    from reidtools.generate.inpaint.run import InpaintRun, run_inpaint

    index, count = resolve_task(shard_index, num_shards)
    run_inpaint(InpaintRun(size=parse_size(size, "--size", multiple=8), shard_index=index, num_shards=count,
                           **options), progress=progress_enabled())
