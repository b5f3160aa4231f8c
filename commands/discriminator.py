"""`reid discriminator`: train DLCR's latent discriminator for guided inpainting
(library: reidtools.generate.inpaint.discriminator.run_discriminator)."""

from __future__ import annotations

import click

from reidtools.commands._options import (SD_INPAINT, command, device_option, dtype_option, inputs_argument,
                                         parse_size, progress_enabled, seed_option)


@command("discriminator", short_help="Train DLCR's latent discriminator for guided inpainting.")
@inputs_argument
@click.option("-o", "--output", required=True, metavar="DISC_DIR", help="Folder for the discriminator.")
@click.option("--fake", multiple=True, required=True, metavar="SHARDS",
              help="Generated shards (label 0), e.g. `reid inpaint` output; repeatable, globs ok.")
@click.option("--model", default=SD_INPAINT,
              help="The inpainting model whose VAE makes the latents (the one `reid inpaint` will guide).")
@click.option("--size", default="768x256", help="Encoding size HxW, multiples of 8 (the inpainting size).")
@click.option("--steps", type=click.IntRange(min=1), default=2000, help="Optimiser steps.")
@click.option("--batch-size", type=click.IntRange(min=2), default=64, help="Batch (half real, half generated).")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=1e-4, help="AdamW learning rate.")
@click.option("--width", type=click.IntRange(min=8), default=64, help="Base channel width of the CNN.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="At most this many images per side.")
@click.option("--encode-batch", type=click.IntRange(min=1), default=8, help="Images per VAE call.")
@dtype_option()
@device_option
@seed_option
def cli(inputs, size: str, **options) -> None:
    """Train DLCR's latent discriminator for guided inpainting.

    DLCR supplementary §12 (Kim et al. 2023): a time-conditioned classifier d_phi(x_t, t) on the
    inpainting model's VAE latents tells real training images (INPUTS, label 1) from generated ones
    (--fake, label 0) at every noise level (BCE, eq. 5). `reid inpaint --discriminator DISC_DIR`
    then adds its log-odds gradient to the noise estimate (eqs. 6-8). DISC_DIR holds config.json
    (with each weight file's SHA-256), model.safetensors and train_log.jsonl.

    \b
    Example:
      reid inpaint cap/ -o gen/ --prompts bank:bank.json -k 10
      reid discriminator real/ --fake gen/ -o disc/
      reid inpaint cap/ -o gen2/ --prompts bank:bank.json --discriminator disc/
    """
    from reidtools.generate.inpaint.discriminator import DiscriminatorRun, run_discriminator

    run_discriminator(DiscriminatorRun(real=inputs, size=parse_size(size, "--size", multiple=8), **options),
                      progress=progress_enabled())
