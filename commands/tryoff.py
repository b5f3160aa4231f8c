"""`reid tryoff`: CLI glue over reidtools.generate.tryoff.pipeline (TryOffAnyone inference)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, parse_size,
                                         progress_enabled,
                                         resolve_task, seed_option, task_options)

PER_SHARD = 10000  # garment ids: g<shard position * 10000 + index in shard>


@command("tryoff", short_help="Extract flat garment images from people (a garment catalogue).")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--model", default="stable-diffusion-v1-5/stable-diffusion-inpainting", metavar="ID|DIR",
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
@click.option("--device", default=None, help="torch device [default: cuda, mps, then cpu].")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="bf16",
              help="Weights/activations precision (TryOffAnyone: bf16); fp16 falls back to fp32 on CPU.")
@task_options
@seed_option
def cli(inputs, output, model, vae, weights, garment, steps, scale, eta, size, batch_size, device, dtype,
        shard_index, num_shards, seed, overwrite):
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
    import logging

    from reidtools.errors import SampleError
    from reidtools.generate.tryoff.pipeline import TryOffPipeline, TryOffSettings, garment_mask
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import expand_inputs, map_shards
    from reidtools.shards.sample import derive, history_entry, image, meta, where

    log = logging.getLogger("reidtools")
    h, w = parse_size(size, "--size", multiple=8)
    index, count = resolve_task(shard_index, num_shards)
    shards = expand_inputs(inputs)
    position = {s: i for i, s in enumerate(shards)}
    position["<stdin>"] = position.get("-", 0)  # the reader labels stdin samples so
    dev = best_device(device)
    pipe = TryOffPipeline.from_pretrained(model, vae, weights, device=dev, dtype=torch_dtype(dtype, dev))
    settings = TryOffSettings(steps=steps, scale=scale, eta=eta, size=(h, w))
    entry_params = dict(steps=steps, scale=scale, eta=eta, size=[h, w], garment=garment, vae=vae,
                        weights=weights, dtype=dtype)

    def region(sample):
        from reidtools.shards.sample import mask as read_mask

        m = meta(sample)
        parse = None
        if "parse.png" in sample and m.get("parse_labels", "lip") == "lip":
            parse = read_mask(sample, "parse.png")
        elif "mask.png" not in sample:
            raise SampleError(*where(sample), "needs parse.png (LIP labels) or mask.png: run `reid mask` first")
        out = garment_mask(parse, None if parse is not None else read_mask(sample, "mask.png"), garment)
        if not out.getbbox():
            raise SampleError(*where(sample), f"no {garment} pixels in its {'parse.png' if parse is not None else 'mask.png'}")
        return out

    def run(batch):
        seeds = [derive_seed(seed, s["__key__"]) for s, _ in batch]
        images = pipe([image(s) for s, _ in batch], [region(s) for s, _ in batch], seeds, settings)
        for (s, gid), im, sd in zip(batch, images, seeds):
            entry = history_entry("tryoff", model=model, seed=sd, **entry_params)
            yield derive(s, gid, entry, **{"garment.png": im, "json": {"garment": gid, "garment_type": garment}})

    def fn(samples):
        batch = []
        for i, s in enumerate(samples):
            if i >= PER_SHARD:
                raise SampleError(*where(s), f"more than {PER_SHARD} samples in one catalogue shard; split it")
            batch.append((s, f"g{position[s['__shard__']] * PER_SHARD + i:04d}"))
            if len(batch) == batch_size:
                yield from run(batch)
                batch = []
        if batch:
            yield from run(batch)

    report = map_shards(shards, output, fn, shard_index=index, num_shards=count, desc="tryoff",
                        progress=progress_enabled(), overwrite=overwrite)
    log.info("%d garments from %d samples", report.samples_out, report.samples_in)
