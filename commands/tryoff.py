"""`reid tryoff`: TryOffAnyone garment extraction (library: reidtools.generate.tryoff.run)."""

from __future__ import annotations

import click

from reidtools.commands._options import (SD_INPAINT, command, device_option, dtype_option, empty_mask_option,
                                         inputs_argument, output_option, overwrite_option, parse_size,
                                         progress_enabled, resolve_task, seed_option, task_options)


@command("tryoff", short_help="Extract flat garment images from people (a garment catalogue).")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--model", default=SD_INPAINT, metavar="ID|DIR",
              help="SD-1.5 inpainting base (folder with unet/ and scheduler/), as TryOffAnyone.")
@click.option("--vae", default="stabilityai/sd-vae-ft-mse", metavar="ID|DIR", help="VAE (TryOffAnyone's choice).")
@click.option("--weights", default="ixarchakos/tryOffAnyone", metavar="ID|DIR|FILE",
              help="TryOffAnyone's fine-tuned attention weights (safetensors, published key layout).")
@click.option("--garment", type=click.Choice(["tops", "bottoms"]), default="tops",
              help="Garment region: tops = LIP upper-clothes/dress/coat, bottoms = pants/skirt "
                   "(the published model is trained on tops only).")
@click.option("--steps", type=click.IntRange(1), default=50, help="DDIM steps (TryOffAnyone).")
@click.option("--scale", type=float, default=2.5, help="Classifier-free guidance scale (TryOffAnyone).")
@click.option("--eta", type=float, default=1.0, help="DDIM eta (TryOffAnyone).")
@click.option("--size", default="512x384", metavar="HxW", help="Generation size (TryOffAnyone).")
@click.option("--batch-size", type=click.IntRange(1), default=1, help="Images per forward pass (output does not depend on it).")
@empty_mask_option
@device_option
@dtype_option("bf16", "TryOffAnyone")
@task_options
@seed_option
def cli(size: str, shard_index, num_shards, **options) -> None:
    """Extract flat garment images from people (a garment catalogue).

    Re-implements TryOffAnyone inference (HSGL uses it for its clothing database): an SD-1.5
    inpainting U-Net without text cross-attention, the masked person and the person concatenated
    along the height in latent space, classifier-free guidance against a zeroed person latent,
    DDIM. The garment region comes from `parse.png` (LIP labels, from `reid mask` or `reid synth`)
    or else from `mask.png`. Pick the inputs first, e.g. HSGL's top-5 by quality with
    `reid filter --rule quality --top-n 5`.

    Each input sample gives one catalogue sample: key and json `garment` = a garment id `gNNNN`
    (shard position x 10000 + index in the shard, so ids do not depend on --num-shards), field
    `garment.png` (HxW of --size), `source` and `history`. The person's metadata is kept.
    """
    from reidtools.generate.tryoff.run import TryOffRun, run_tryoff

    index, count = resolve_task(shard_index, num_shards)
    run_tryoff(TryOffRun(size=parse_size(size, "--size", multiple=8), shard_index=index, num_shards=count, **options),
               progress=progress_enabled())
