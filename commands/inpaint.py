"""`reid inpaint`: K repaintings of each clothing region (CLI glue; library: reidtools.generate)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, progress_enabled,
                                         resolve_task, seed_option, task_options)

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SCHEDULER_NAMES = ("default", "pndm", "ddim", "ddpm", "euler", "euler-a", "dpm++", "unipc")


@command("inpaint", short_help="Repaint the clothing region K times with a diffusion inpainting model.")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--model", default=DEFAULT_MODEL,
              help="Inpainting pipeline: hub id (local cache) or folder. HSGL used stabilityai/stable-diffusion-2-inpainting.")
@click.option("--prompts", "prompt_spec", metavar="POLICY", default=None,
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
@click.option("--scheduler", type=click.Choice(SCHEDULER_NAMES), default="default",
              help="Sampler; default = the one saved with the model (PNDM for SD 1.5 inpainting).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Outputs per pipeline call.")
@click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32"]), default="fp16",
              help="Weights/activations dtype (fp16 falls back to fp32 on CPU).")
@click.option("--device", default=None, help="Device [default: best available].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the U-Net (regional: its repeated blocks).")
@click.option("--channels-last/--no-channels-last", default=True, help="channels-last memory format for the U-Net.")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png",
              help="Image field of the outputs; png keeps pixels outside the mask bit-exact, jpg does not.")
@click.option("--keep-source", is_flag=True, help="Also pass each input sample through, before its variants.")
@click.option("--mask-field", default="mask.png", help="The L-mode mask field (255 = repaint).")
@click.option("--discriminator", "disc_dir", metavar="DISC_DIR", default=None,
              help="Discriminator guidance (DLCR §12) with a folder made by --train-discriminator.")
@click.option("--dg-weight", type=float, default=1.0, help="Discriminator guidance weight w (eq. 8).")
@click.option("--dg-min-t", type=float, default=200.0,
              help="Apply discriminator guidance only at timesteps t > this (DLCR released code: 200).")
@click.option("--train-discriminator", is_flag=True,
              help="Instead of inpainting: train a discriminator on INPUTS (real) vs --fake (generated); -o is its folder.")
@click.option("--fake", "fake", multiple=True, metavar="SHARDS", help="Generated shards for --train-discriminator (repeatable).")
@click.option("--disc-steps", type=click.IntRange(min=1), default=2000, help="--train-discriminator: optimiser steps.")
@click.option("--disc-batch-size", type=click.IntRange(min=2), default=64, help="--train-discriminator: batch (half real, half fake).")
@click.option("--disc-lr", type=float, default=1e-4, help="--train-discriminator: AdamW learning rate.")
@click.option("--disc-width", type=click.IntRange(min=8), default=64, help="--train-discriminator: base channel width.")
@click.option("--max-images", type=click.IntRange(min=1), default=None,
              help="--train-discriminator: at most this many images from each side.")
@task_options
@seed_option
def cli(inputs, output, model, prompt_spec, negative_prompt, variants, steps, size, guidance, strength, scheduler,
        batch_size, dtype, device, compile_, channels_last, fmt, keep_source, mask_field, disc_dir, dg_weight, dg_min_t,
        train_discriminator, fake, disc_steps, disc_batch_size, disc_lr, disc_width, max_images,
        shard_index, num_shards, seed, overwrite):
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
      reid inpaint train/ --train-discriminator --fake gen/ -o disc/
      reid inpaint cap/ -o gen2/ --prompts bank:bank.json --discriminator disc/ --dg-weight 1
    """
    from reidtools.commands._options import parse_size

    h, w = parse_size(size, "--size", multiple=8)
    if train_discriminator:
        if not fake:
            raise click.UsageError("--train-discriminator needs --fake GENERATED_SHARDS (INPUTS are the real ones)")
        if output == "-":
            raise click.UsageError("--train-discriminator writes a folder; -o - is not possible")
        return _train_discriminator(inputs, fake, output, model, (h, w), dtype, device, disc_steps, disc_batch_size,
                                    disc_lr, disc_width, max_images, batch_size, seed)
    if fake:
        raise click.UsageError("--fake is only for --train-discriminator")
    if not prompt_spec:
        raise click.UsageError("--prompts is required (bank:FILE.json, fixed:TEXT or field:NAME)")
    _inpaint(**locals())


def _inpaint(inputs, output, model, prompt_spec, negative_prompt, variants, steps, guidance, strength, scheduler,
             batch_size, dtype, device, compile_, channels_last, fmt, keep_source, mask_field, disc_dir, dg_weight,
             dg_min_t, shard_index, num_shards, seed, h, w, **_):
    import logging

    from reidtools.errors import SampleError
    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, Job, load_pipeline
    from reidtools.generate.prompts import PromptPolicy
    from reidtools.runtime import best_device
    from reidtools.runtime import torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import derive, expand_inputs, history_entry, image, map_shards, mask, meta

    log = logging.getLogger("reidtools")
    try:
        policy = PromptPolicy(prompt_spec, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prompts") from None
    shards = expand_inputs(list(inputs))
    index, count = resolve_task(shard_index, num_shards)
    dev = best_device(device)
    tdtype = torch_dtype(dtype, dev)
    pipe = load_pipeline(model, device=dev, dtype=tdtype, scheduler=scheduler, channels_last=channels_last,
                         compile=compile_)
    hook = None
    if disc_dir:
        from reidtools.generate.inpaint.discriminator import GuidanceHook, LatentDiscriminator

        disc = LatentDiscriminator.load(disc_dir).to(dev)
        if disc.config.in_channels != pipe.vae.config.latent_channels:
            raise click.BadParameter(f"{disc_dir!r} was trained on {disc.config.in_channels}-channel latents, the model "
                                     f"has {pipe.vae.config.latent_channels}", param_hint="--discriminator")
        hook = GuidanceHook(disc, pipe.scheduler.alphas_cumprod, dg_weight, dg_min_t)
    settings = InpaintSettings(size=(h, w), steps=steps, guidance=guidance, strength=strength)
    inpainter = Inpainter(pipe, settings, guidance_hook=hook)
    params = {"scheduler": inpainter.scheduler_name, "steps": steps, "guidance": guidance, "size": [h, w],
              "strength": strength, "variants": variants, "global_seed": seed, "dtype": str(tdtype).replace("torch.", ""),
              "policy": policy.kind}
    if negative_prompt:
        params["negative_prompt"] = negative_prompt
    if disc_dir:
        params.update(discriminator=disc_dir, dg_weight=dg_weight, dg_min_t=dg_min_t)
    skipped = {"empty_mask": 0}

    def variants_of(sample, m):
        """(jobs, output builders) for one sample."""
        shard, key = sample.get("__shard__", "<memory>"), sample["__key__"]
        img, msk = image(sample), mask(sample, mask_field)
        if msk.size != img.size:
            raise SampleError(shard, key, f"{mask_field} is {msk.size[0]}x{msk.size[1]} but the image is "
                                          f"{img.size[0]}x{img.size[1]}")
        if msk.getextrema()[1] == 0:
            skipped["empty_mask"] += 1
            return []
        out = []
        for k, target in enumerate(policy.targets(sample, m, variants)):
            s = derive_seed(seed, key, k)
            out.append((Job(img, msk, target.prompt, s, negative_prompt), k, target))
        return out

    def build(sample, k, target, job, picture):
        extra = {"variant": k}
        if target.target is not None:
            extra["target_clothes"] = target.target
        entry = history_entry("inpaint", model=model, seed=job.seed, prompt=target.prompt, **params, **extra)
        fields = {fmt: picture, "json": {"clothes": target.clothes, "clothes_prompt": target.prompt}}
        if mask_field in sample:
            fields[mask_field] = sample[mask_field]
        new = derive(sample, f"{sample['__key__']}-inpaint{k:02d}", entry, **fields)
        for stale in ("caption", "garments"):   # described the source's clothes, not these
            new["json"].pop(stale, None)
        return new

    def process(samples):
        pending: list[tuple[dict, list]] = []
        njobs = 0

        def flush():
            rows = [(sample, item) for sample, items in pending for item in items]
            pictures = []
            for i in range(0, len(rows), batch_size):
                pictures += inpainter.run([item[0] for _, item in rows[i:i + batch_size]])
            done = iter(zip(rows, pictures))
            for sample, items in pending:
                if keep_source:
                    yield sample
                for _ in items:
                    (src, (job, k, target)), picture = next(done)
                    yield build(src, k, target, job, picture)

        for sample in samples:
            items = variants_of(sample, meta(sample))
            pending.append((sample, items))
            njobs += len(items)
            if njobs >= batch_size:
                yield from flush()
                pending, njobs = [], 0
        yield from flush()

    report = map_shards(shards, output, process, shard_index=index, num_shards=count, desc="inpaint",
                        progress=progress_enabled(), overwrite=overwrite)
    if skipped["empty_mask"]:
        log.warning("%d samples had an empty mask and were not inpainted", skipped["empty_mask"])
    log.info("%d samples in, %d out (%d shards done, %d skipped as complete)", report.samples_in, report.samples_out,
             len(report.shards_done), len(report.shards_skipped))


def _train_discriminator(real_inputs, fake_inputs, output, model, size, dtype, device, steps, batch_size, lr, width,
                         max_images, encode_batch, seed):
    import json
    import logging
    import os

    from reidtools.errors import ReidError
    from reidtools.generate.inpaint.discriminator import DiscriminatorConfig, encode_images, train_discriminator
    from reidtools.generate.inpaint.pipeline import quiet_loading
    from reidtools.hub import resolve_model
    from reidtools.runtime import best_device
    from reidtools.runtime import torch_dtype
    from reidtools.shards import expand_inputs, image, iter_samples

    log = logging.getLogger("reidtools")
    quiet_loading()
    path = resolve_model(model)
    dev = best_device(device)
    tdtype = torch_dtype(dtype, dev)
    from diffusers import AutoencoderKL, DDPMScheduler

    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", dtype=tdtype).to(dev).eval()
        sched = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ReidError(f"--model {model!r}: cannot load its vae/scheduler ({exc})") from None

    def pictures(inputs):
        out = []
        for sample in iter_samples(expand_inputs(list(inputs))):
            out.append(image(sample))
            if max_images and len(out) >= max_images:
                break
        return out

    real_imgs, fake_imgs = pictures(real_inputs), pictures(fake_inputs)
    log.info("encoding %d real and %d generated images", len(real_imgs), len(fake_imgs))
    real = encode_images(vae, real_imgs, size, batch_size=encode_batch, device=dev, dtype=tdtype)
    fake = encode_images(vae, fake_imgs, size, batch_size=encode_batch, device=dev, dtype=tdtype)
    cfg = DiscriminatorConfig(in_channels=real.shape[1] if len(real) else 4, width=width,
                              num_train_timesteps=sched.config.num_train_timesteps, vae=model, size=list(size))
    disc, rows = train_discriminator(real, fake, sched.alphas_cumprod, config=cfg, steps=steps, batch_size=batch_size,
                                     lr=lr, seed=seed, device=dev, progress=progress_enabled())
    disc.save(output)
    with open(os.path.join(output, "train_log.jsonl"), "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    log.info("discriminator saved to %s (final loss %.4f, accuracy %.3f)", output, rows[-1]["loss"], rows[-1]["accuracy"])
