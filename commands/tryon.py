"""`reid tryon`: IDM-VTON-compatible virtual try-on (library: reidtools.generate.tryon.run)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, device_option, dtype_option, empty_mask_option, inputs_argument,
                                         output_option, overwrite_option, parse_size, progress_enabled, resolve_task,
                                         seed_option, task_options)


@command("tryon", short_help="Dress people in catalogue garments (shared clothes ids across identities).")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--garments", multiple=True, required=True, metavar="SHARDS",
              help="Catalogue shards from `reid tryoff` (garment.png + json garment id); repeatable, globs ok.")
@click.option("--model", default="yisol/IDM-VTON", metavar="ID|DIR",
              help="IDM-VTON in its published layout (unet, unet_encoder, vae, text_encoder(_2), tokenizer(_2), "
                   "image_encoder, scheduler).")
@click.option("--pairs", type=click.Choice(["all"]), default=None,
              help="Every person x every garment (the default when --per-id/--garments-per are not given).")
@click.option("--per-id", type=click.IntRange(1), default=None, metavar="N",
              help="HSGL's n: each identity's N best images by json quality (`reid filter --rule quality`).")
@click.option("--garments-per", type=click.IntRange(1), default=None, metavar="M",
              help="HSGL's m: the first M catalogue garments, worn by every selected image.")
@click.option("--steps", type=click.IntRange(1), default=30, help="Denoising steps (IDM-VTON demo).")
@click.option("--guidance", type=float, default=2.0, help="Classifier-free guidance scale (IDM-VTON demo).")
@click.option("--size", default="1024x768", metavar="HxW", help="Generation size (IDM-VTON).")
@click.option("--prompt", default="model is wearing {desc}", show_default=True,
              help="Try-on U-Net prompt; {desc} is the garment's json garment_desc (`reid caption --garments`).")
@click.option("--garment-prompt", default="a photo of {desc}", show_default=True,
              help="Garment U-Net prompt (IDM-VTON's convention around the garment description).")
@click.option("--desc", default="casual garment", show_default=True,
              help="The description for catalogue garments without garment_desc.")
@click.option("--region", type=click.Choice(["upper", "mask"]), default="upper",
              help="upper: IDM-VTON's upper-body region from a LIP parse.png (+ arms), as the catalogue holds tops; "
                   "mask: the sample's mask.png (DLCR's whole clothing).")
@click.option("--rank-by", type=click.Choice(["resolution", "released", "sharpness", "product"]), default="resolution",
              help="--per-id: an identity's N best images by json quality, ranked as `reid filter --rank-by`.")
@click.option("--negative-prompt", default="monochrome, lowres, bad anatomy, worst quality, low quality",
              show_default=True, help="Negative prompt (IDM-VTON).")
@click.option("--arms/--no-arms", default=True,
              help="Add IDM-VTON's arm regions (from `pose` keypoints) to the clothing mask.")
@click.option("--ip-adapter/--no-ip-adapter", default=True,
              help="Condition on the garment through the IP-Adapter too (IDM-VTON: on).")
@empty_mask_option
@device_option
@dtype_option("fp16", "IDM-VTON")
@click.option("--offload", is_flag=True,
              help="Keep models on the CPU and move each to the GPU only while it runs (accelerate hooks): "
                   "peak GPU memory ~ one U-Net, at the price of moving both U-Nets every step.")
@task_options
@seed_option
def cli(size: str, shard_index, num_shards, **options) -> None:
    """Dress people in catalogue garments (shared clothes ids across identities).

    HSGL's semantic-preserving hard samples (SHSG): person images wear garments of the catalogue
    made by `reid tryoff`, so that different identities wear the same garment (hard negatives) and
    one identity wears several (hard positives). An IDM-VTON-compatible pipeline on diffusers
    components: a garment U-Net whose self-attention features enter the try-on U-Net's
    self-attention (reference attention), an IP-Adapter projection of the garment, both SDXL text
    encoders, and a 13-channel inpainting U-Net (latent, mask, masked person, pose).

    The repaint region is `mask.png` (`reid mask`) or the LIP upper clothes of `parse.png`, plus the
    arms drawn from `pose` keypoints (--arms, as IDM-VTON's mask). The pose image is a `densepose.png`
    field when the sample has one (user-computed DensePose, what IDM-VTON was trained on), else a
    skeleton rendered from `pose` keypoints (a deviation: expect lower fidelity).

    Output: one sample per (person, garment) pair, key PERSONKEY_GARMENTID, field `png` (the
    try-on at the person's size, composited: pixels outside the mask are the person's), `mask.png`
    (the region repainted), json `clothes` = `garment` = the garment id (shared across identities),
    `source` (the person key) and `history`. Seeds derive from (--seed, person key, garment id).
    --per-id/--garments-per read the person shards twice (not from stdin).
    """
    from reidtools.generate.tryon.run import TryOnRun, run_tryon

    if options["pairs"] == "all" and (options["per_id"] or options["garments_per"]):
        raise click.UsageError("--pairs all excludes --per-id/--garments-per")
    if (options["per_id"] or options["garments_per"]) and "-" in options["inputs"]:
        raise click.UsageError("--per-id/--garments-per read the inputs twice; pass shard files, not -")
    if options["offload"] and options["device"] == "cpu":
        raise click.UsageError("--offload moves models between the CPU and a GPU; the device here is cpu")
    index, count = resolve_task(shard_index, num_shards)
    run_tryon(TryOnRun(size=parse_size(size, "--size", multiple=8), shard_index=index, num_shards=count, **options),
              progress=progress_enabled())
