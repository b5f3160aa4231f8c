"""Stable Diffusion inpainting of the clothing region (DLCR stage 1; HSGL §3.2.2 coarse generation).

The pipeline is diffusers' StableDiffusionInpaintPipeline loaded from a hub id or folder via
`resolve_model`. Prompts, images and masks are expanded here, one row per output, and each row gets
its own torch.Generator seeded from (global seed, key, variant): diffusers' own
`num_images_per_prompt` expansion pairs prompts and images wrongly when several prompts are batched,
and shared generators would make outputs depend on the batch. The generated picture is resized back
to the source's size and composited in uint8: mask*gen + (1-mask)*orig, so pixels outside the mask are
the source's exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from reidtools.errors import ReidError
from reidtools.generate.schedulers import set_scheduler

log = logging.getLogger("reidtools")

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"


@dataclass
class Job:
    """One output: its source picture and mask (original size), prompt and seed."""
    image: Image.Image
    mask: Image.Image
    prompt: str
    seed: int
    negative_prompt: str | None = None


@dataclass
class InpaintSettings:
    size: tuple[int, int] = (768, 256)     # (H, W), DLCR
    steps: int = 50
    guidance: float = 7.5                  # diffusers' default; DLCR passes none, so this is theirs too
    strength: float = 1.0
    extra: dict = field(default_factory=dict)


def load_pipeline(model: str, *, device, dtype, scheduler: str = "default", channels_last: bool = True,
                  compile: bool = False):
    """StableDiffusionInpaintPipeline from a hub id (local cache) or folder, on `device` in `dtype`.

    A `reid finetune` output folder (it holds finetune.json) loads too: a full save as it is, a LoRA
    save as its base with the adapter fused in; either after checking its files' SHA-256."""
    from diffusers import StableDiffusionInpaintPipeline

    from reidtools.hub import resolve_model

    from reidtools.generate.inpaint.training import load_finetuned, read_config

    quiet_loading()
    path = resolve_model(model)
    try:
        tuned = read_config(path)      # a `reid finetune` output: a full pipeline or a base + LoRA adapter
        if tuned is not None:
            pipe = load_finetuned(path, tuned, dtype)
        else:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                path, dtype=dtype, safety_checker=None, requires_safety_checker=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ReidError(f"--model {model!r}: not a Stable Diffusion inpainting pipeline ({exc})") from None
    if pipe.unet.config.in_channels not in (4, 9):
        raise ReidError(f"--model {model!r}: U-Net has {pipe.unet.config.in_channels} input channels, expected 9 (inpainting) or 4")
    set_scheduler(pipe, scheduler)
    return optimize_pipeline(pipe, device, channels_last=channels_last, compile=compile)


def optimize_pipeline(pipe, device, *, channels_last: bool = True, compile: bool = False):
    """Move to `device`; SDPA attention, channels-last U-Net, optional regional torch.compile."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    pipe.unet.set_attn_processor(AttnProcessor2_0())     # PyTorch SDPA (flash / memory-efficient kernels)
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if compile:
        if getattr(pipe.unet, "_repeated_blocks", None):
            pipe.unet.compile_repeated_blocks(fullgraph=True)   # regional: compiles one block, reuses it
        else:
            pipe.unet = torch.compile(pipe.unet)
    return pipe


def quiet_loading() -> None:
    """No per-component loading bars from diffusers/transformers (reid draws its own)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def composite(orig: Image.Image, gen: Image.Image, mask: Image.Image) -> Image.Image:
    """mask*gen + (1-mask)*orig in uint8 at the original size; mask is L-mode 0..255 (255 = repaint)."""
    if gen.size != orig.size:
        gen = gen.resize(orig.size, Image.BICUBIC)
    if mask.size != orig.size:
        raise ReidError(f"mask size {mask.size} differs from image size {orig.size}")
    o = np.asarray(orig.convert("RGB"), dtype=np.int32)
    g = np.asarray(gen.convert("RGB"), dtype=np.int32)
    m = np.asarray(mask.convert("L"), dtype=np.int32)[..., None]
    out = (m * g + (255 - m) * o + 127) // 255      # exact: m == 0 gives o, m == 255 gives g
    return Image.fromarray(out.astype(np.uint8), "RGB")


class Inpainter:
    """Batched inpainting with per-row seeds; optional discriminator guidance."""

    def __init__(self, pipe, settings: InpaintSettings, *, guidance_hook=None):
        from reidtools.generate.prompt_length import PromptBudget

        self.pipe, self.settings, self.hook = pipe, settings, guidance_hook
        self.budget = PromptBudget(pipe.tokenizer)     # > 77 tokens: truncated with a warning, not silently

    @property
    def scheduler_name(self) -> str:
        return type(self.pipe.scheduler).__name__

    def run(self, jobs: list[Job]) -> list[Image.Image]:
        """One pipeline call for all `jobs` (the caller chooses the batch); composited results."""
        import torch

        if not jobs:
            return []
        h, w = self.settings.size
        images = [j.image.convert("RGB").resize((w, h), Image.BICUBIC) for j in jobs]
        masks = [j.mask.convert("L").resize((w, h), Image.NEAREST) for j in jobs]
        # CPU generators: the same noise whatever the device, one per row (not per batch)
        generators = [torch.Generator("cpu").manual_seed(j.seed) for j in jobs]
        negatives = [j.negative_prompt or "" for j in jobs]
        self.budget.check([j.prompt for j in jobs] + [n for n in negatives if n])
        handle = None
        if self.hook is not None:
            handle = self.pipe.unet.register_forward_hook(self.hook, with_kwargs=True)
        try:
            out = self.pipe(prompt=[j.prompt for j in jobs], image=images, mask_image=masks,
                            negative_prompt=negatives if any(negatives) else None,
                            height=h, width=w, num_inference_steps=self.settings.steps,
                            guidance_scale=self.settings.guidance, strength=self.settings.strength,
                            num_images_per_prompt=1, generator=generators, output_type="np")
        finally:
            if handle is not None:
                handle.remove()
        arrays = np.clip(np.rint(np.asarray(out.images) * 255.0), 0, 255).astype(np.uint8)
        return [composite(j.image, Image.fromarray(a, "RGB"), j.mask) for j, a in zip(jobs, arrays)]
