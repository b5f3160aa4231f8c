"""`reid inpaint` as one library call: K repaintings of each clothing region, per shard.

DLCR stage 1 (seed 000 §3.1, supplementary §8: K = 10, 768x256, 50 steps) and HSGL's coarse
generation (seed 001 §3.2.2: a fixed prompt). Each output is keyed `{source}-inpaint{k:02d}`, carries
`source`, the target clothes id and prompt, and a `history` entry with every parameter used; the
generated region is composited into the original at its own size, so identity pixels are exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reidtools.errors import ReidError, SampleError
from reidtools.generate.options import GeneratorOptions

log = logging.getLogger("reidtools")


@dataclass(kw_only=True)
class InpaintRun(GeneratorOptions):
    inputs: tuple
    output: str
    prompt_spec: str
    model: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"
    negative_prompt: str | None = None
    variants: int = 10                   # DLCR paper (its released code: 5)
    steps: int = 50                      # DLCR
    size: tuple[int, int] = (768, 256)   # (H, W), DLCR
    guidance: float = 7.5                # diffusers' default; DLCR passes none
    strength: float = 1.0
    scheduler: str = "default"
    compile: bool = False
    channels_last: bool = True
    fmt: str = "png"
    keep_source: bool = False
    mask_field: str = "mask.png"
    empty_mask: str = "skip"
    discriminator: str | None = None
    dg_weight: float = 1.0
    dg_min_t: float = 0.0                # DLCR §12.1: "at each denoising step" (released code: 200)
    overwrite: bool = False


def run_inpaint(run: InpaintRun, *, progress: bool = True):
    """Generate and write; returns the shards' MapReport."""
    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, Job, load_pipeline
    from reidtools.generate.prompts import PromptPolicy
    from reidtools.generate.stage import StageCounts, check_region, generate_stage
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import derive, expand_inputs, history_entry, image, map_shards, mask, meta

    try:
        policy = PromptPolicy(run.prompt_spec, seed=run.seed)
    except ValueError as exc:
        raise ReidError(f"--prompts: {exc}") from None
    shards = expand_inputs(list(run.inputs))
    dev = best_device(run.device)
    tdtype = torch_dtype(run.dtype, dev)
    pipe = load_pipeline(run.model, device=dev, dtype=tdtype, scheduler=run.scheduler,
                         channels_last=run.channels_last, compile=run.compile)
    hook = _guidance_hook(run, pipe, dev) if run.discriminator else None
    h, w = run.size
    inpainter = Inpainter(pipe, InpaintSettings(size=(h, w), steps=run.steps, guidance=run.guidance,
                                                strength=run.strength), guidance_hook=hook)
    params = {"scheduler": inpainter.scheduler_name, "steps": run.steps, "guidance": run.guidance, "size": [h, w],
              "strength": run.strength, "variants": run.variants, "global_seed": run.seed,
              "dtype": str(tdtype).replace("torch.", ""), "policy": policy.kind}
    if run.negative_prompt:
        params["negative_prompt"] = run.negative_prompt
    if run.discriminator:
        params.update(discriminator=run.discriminator, dg_weight=run.dg_weight, dg_min_t=run.dg_min_t)
    counts = StageCounts()

    def plan(sample):
        shard, key = sample.get("__shard__", "<memory>"), sample["__key__"]
        img, msk = image(sample), mask(sample, run.mask_field)
        if msk.size != img.size:
            raise SampleError(shard, key, f"{run.mask_field} is {msk.size[0]}x{msk.size[1]} but the image is "
                                          f"{img.size[0]}x{img.size[1]}")
        if not check_region(sample, msk, policy=run.empty_mask, counts=counts):
            return []
        ready = inpainter.prepare(img, msk)        # once for the K jobs of this source
        return [(Job(img, msk, t.prompt, derive_seed(run.seed, key, k), run.negative_prompt, ready), k, t)
                for k, t in enumerate(policy.targets(sample, meta(sample), run.variants))]

    def build(sample, item, pixels):
        job, k, target = item
        picture = inpainter.finish(job, pixels)
        extra = {"variant": k, "prompt_tokens": inpainter.budget.count(target.prompt)}
        if target.target is not None:
            extra["target_clothes"] = target.target
        entry = history_entry("inpaint", model=run.model, seed=job.seed, prompt=target.prompt, **params, **extra)
        fields = {run.fmt: picture, "json": {"clothes": target.clothes, "clothes_prompt": target.prompt}}
        if run.mask_field in sample:
            fields[run.mask_field] = sample[run.mask_field]
        new = derive(sample, f"{sample['__key__']}-inpaint{k:02d}", entry, **fields)
        for stale in ("caption", "garments"):   # described the source's clothes, not these
            new["json"].pop(stale, None)
        return new

    def process(samples):
        return generate_stage(samples, plan=plan, make=lambda items: list(inpainter.generate([i[0] for i in items])),
                              build=build, batch_size=run.batch_size, keep_source=run.keep_source, counts=counts)

    report = map_shards(shards, run.output, process, shard_index=run.shard_index, num_shards=run.num_shards,
                        desc="inpaint", progress=progress, overwrite=run.overwrite)
    counts.log("inpaint")
    if inpainter.budget.summary():
        log.warning("%s", inpainter.budget.summary())
    log.info("%d samples in, %d out (%d shards done, %d skipped as complete)", report.samples_in, report.samples_out,
             len(report.shards_done), len(report.shards_skipped))
    return report


def _guidance_hook(run: InpaintRun, pipe, dev):
    from reidtools.generate.inpaint.discriminator import GuidanceHook, LatentDiscriminator

    disc = LatentDiscriminator.from_pretrained(run.discriminator).to(dev)
    if disc.config.in_channels != pipe.vae.config.latent_channels:
        raise ReidError(f"--discriminator {run.discriminator!r} was trained on {disc.config.in_channels}-channel "
                        f"latents, the model has {pipe.vae.config.latent_channels}")
    return GuidanceHook(disc, pipe.scheduler.alphas_cumprod, run.dg_weight, run.dg_min_t)
