"""Stable Diffusion inpainting of the clothing region (DLCR stage 1; HSGL §3.2.2 coarse generation).

The pipeline is diffusers' StableDiffusionInpaintPipeline loaded from a hub id or folder via
`resolve_model`. Prompts, images and masks are expanded here, one row per output, and each row gets
its own torch.Generator seeded from (global seed, key, variant): diffusers' own
`num_images_per_prompt` expansion pairs prompts and images wrongly when several prompts are batched,
and shared generators would make outputs depend on the batch. The generated picture is resized back
to the source's size and composited in uint8: mask*gen + (1-mask)*orig, so pixels outside the mask are
the source's exactly.

Host work is split so the thread that feeds the GPU does little besides the pipeline call
(bench/host_overhead.py): `Inpainter.prepare` (resize to the generation size, the float arrays
diffusers' preprocessing would make from PIL images) runs on the stage's reader thread, once per
source for its K jobs; `Inpainter.generate` passes them as tensors, so the pipeline skips its PIL
round trip, and returns uint8 pixels converted on the device; `Inpainter.finish` (resize back,
composite) runs on the stage's finisher thread. The outputs are the same bytes as one
`Inpainter.run` call with PIL images (tests/test_inpaint.py).
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
class Prepared:
    """A source's picture and mask at the generation size, as float32 HxWxC arrays in [0, 1]: the
    values diffusers' own preprocessing makes from PIL images (uint8 / 255)."""
    image: np.ndarray     # HxWx3
    mask: np.ndarray      # HxW


@dataclass
class Job:
    """One output: its source picture and mask (original size), prompt and seed; `prepared`, when
    given (`Inpainter.prepare`, shared by a source's jobs), spares the pipeline call the resizing."""
    image: Image.Image
    mask: Image.Image
    prompt: str
    seed: int
    negative_prompt: str | None = None
    prepared: Prepared | None = None


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


_PINNED: dict = {}


def pin_execution_device(pipe) -> None:
    """Look diffusers' `_execution_device` up once instead of on every call.

    diffusers finds it by walking every sub-module of every component in search of offloading hooks
    (10.5 ms of host CPU per call at SD-1.5 size, 1103 modules); the answer cannot change while
    nothing moves the pipeline, and `.to()` looks it up again. Done by giving this pipeline object a
    subclass of its own class that returns the looked-up device. (Offloading, which moves modules
    behind the pipeline's back, is not used with an Inpainter.)"""
    cls = type(pipe)
    if getattr(cls, "_reid_pinned", False):
        return
    if cls not in _PINNED:
        lookup = cls._execution_device.fget

        def to(self, *args, **kwargs):
            out = cls.to(self, *args, **kwargs)
            out._reid_device = lookup(out)
            return out

        _PINNED[cls] = type(cls.__name__, (cls,), {"__module__": cls.__module__, "_reid_pinned": True, "to": to,
                                                   "_execution_device": property(lambda self: self._reid_device)})
    device = pipe._execution_device
    pipe.__class__ = _PINNED[cls]
    pipe._reid_device = device


def _inputs_at_generation_size(pipe) -> None:
    """The Inpainter hands diffusers inputs already at the generation size (`Inpainter.prepare`), which
    its tensor path would resize again anyway (an interpolation copy of every image and mask)."""
    from diffusers.image_processor import VaeImageProcessor

    for name in ("image_processor", "mask_processor"):
        proc = getattr(pipe, name, None)
        if isinstance(proc, VaeImageProcessor) and proc.config.do_resize:
            setattr(pipe, name, type(proc).from_config(proc.config, do_resize=False))


def composite(orig: Image.Image, gen: Image.Image | np.ndarray, mask: Image.Image) -> Image.Image:
    """mask*gen + (1-mask)*orig in uint8 at the original size; mask is L-mode 0..255 (255 = repaint);
    `gen` is a PIL image or HxWx3 uint8 pixels."""
    if isinstance(gen, np.ndarray):
        gen = Image.fromarray(gen, "RGB")
    if gen.size != orig.size:
        gen = gen.resize(orig.size, Image.BICUBIC)
    if mask.size != orig.size:
        raise ReidError(f"mask size {mask.size} differs from image size {orig.size}")
    # uint16 is exact here (at most 255 * 255 + 127) and twice as fast as int32
    o = np.asarray(orig if orig.mode == "RGB" else orig.convert("RGB")).astype(np.uint16)
    g = np.asarray(gen if gen.mode == "RGB" else gen.convert("RGB")).astype(np.uint16)
    m = np.asarray(mask if mask.mode == "L" else mask.convert("L")).astype(np.uint16)[..., None]
    out = (m * g + (255 - m) * o + 127) // 255      # exact: m == 0 gives o, m == 255 gives g
    return Image.fromarray(out.astype(np.uint8), "RGB")


class Inpainter:
    """Batched inpainting with per-row seeds; optional discriminator guidance."""

    def __init__(self, pipe, settings: InpaintSettings, *, guidance_hook=None):
        from reidtools.generate.prompt_length import PromptBudget

        pin_execution_device(pipe)
        _inputs_at_generation_size(pipe)
        self.pipe, self.settings, self.hook = pipe, settings, guidance_hook
        self.budget = PromptBudget(pipe.tokenizer)     # > 77 tokens: truncated with a warning, not silently
        self._embedded: dict[tuple, object] = {}

    @property
    def scheduler_name(self) -> str:
        return type(self.pipe.scheduler).__name__

    def prepare(self, image: Image.Image, mask: Image.Image) -> Prepared:
        """The generation-size inputs of one source (thread-safe: no pipeline state)."""
        h, w = self.settings.size
        img = image.convert("RGB").resize((w, h), Image.BICUBIC)
        msk = mask.convert("L").resize((w, h), Image.NEAREST)
        # diffusers' VaeImageProcessor.pil_to_numpy, to the bit
        return Prepared(np.asarray(img).astype(np.float32) / 255.0, np.asarray(msk).astype(np.float32) / 255.0)

    def finish(self, job: Job, pixels: np.ndarray) -> Image.Image:
        """One generated picture (HxWx3 uint8 at the generation size) composited into its source."""
        return composite(job.image, pixels, job.mask)

    def run(self, jobs: list[Job]) -> list[Image.Image]:
        """One pipeline call for all `jobs` (the caller chooses the batch); composited results."""
        return [self.finish(j, a) for j, a in zip(jobs, self.generate(jobs))]

    def generate(self, jobs: list[Job]) -> np.ndarray:
        """One pipeline call for all `jobs`: B x H x W x 3 uint8 pixels at the generation size."""
        import torch

        h, w = self.settings.size
        if not jobs:
            return np.zeros((0, h, w, 3), np.uint8)
        device = self.pipe._execution_device
        ready = [j.prepared or self.prepare(j.image, j.mask) for j in jobs]
        # on the device, laid out as diffusers' PIL path lays them out (NHWC strides under an NCHW
        # shape), so its normalising and masking run there, on the same data in the same memory order
        images = torch.from_numpy(np.stack([r.image for r in ready])).to(device).permute(0, 3, 1, 2)
        masks = torch.from_numpy(np.stack([r.mask for r in ready])[..., None]).to(device).permute(0, 3, 1, 2)
        # CPU generators: the same noise whatever the device, one per row (not per batch)
        generators = [torch.Generator("cpu").manual_seed(j.seed) for j in jobs]
        prompts = tuple(j.prompt for j in jobs)
        negatives = tuple(j.negative_prompt or "" for j in jobs)    # "": diffusers' own unconditional prompt
        self.budget.check(list(prompts) + [n for n in negatives if n])
        guided = self.settings.guidance > 1 and self.pipe.unet.config.time_cond_proj_dim is None
        handle = None
        if self.hook is not None:
            handle = self.pipe.unet.register_forward_hook(self.hook, with_kwargs=True)
        try:
            out = self.pipe(prompt_embeds=self._embed(prompts, device),
                            negative_prompt_embeds=self._embed(negatives, device) if guided else None,
                            image=images, mask_image=masks,
                            height=h, width=w, num_inference_steps=self.settings.steps,
                            guidance_scale=self.settings.guidance, strength=self.settings.strength,
                            num_images_per_prompt=1, generator=generators, output_type="pt")
        finally:
            if handle is not None:
                handle.remove()
        # diffusers' output_type="np" then rint(x * 255) in float32, on the device: a quarter of the bytes
        # cross to the host
        pixels = (out.images.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def _embed(self, prompts: tuple, device):
        """The text encoder's states for one batch's prompts, kept while the same batch of prompts recurs
        (a fixed prompt; the blank unconditional prompt of every guided batch). `encode_prompt` is the
        pipeline's own call on the same input, so the states are the same bits as when it encodes them."""
        states = self._embedded.get(prompts)
        if states is None:
            states, _ = self.pipe.encode_prompt(list(prompts), device, 1, False)
            if len(self._embedded) >= 4:      # bank prompts rarely recur as a whole batch: keep a few
                self._embedded.pop(next(iter(self._embedded)))
            self._embedded[prompts] = states
        return states
