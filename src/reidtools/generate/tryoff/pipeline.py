"""TryOffAnyone inference (garment extraction from a dressed person) on diffusers components.

Facts taken from the public TryOffAnyone code (github.com/ixarchakos/try-off-anyone, read through
its fork seongbae15/try-off-anyone @ e00ed6b: `src/model/pipeline.py`, `src/model/attention.py`,
`src/inference.py`, `config.py`); the code below is our own:

- base: the SD-1.5 inpainting U-Net (`stable-diffusion-v1-5/stable-diffusion-inpainting`, 9 input
  channels) and its scheduler config loaded as DDIM; VAE `stabilityai/sd-vae-ft-mse`.
- "cross-attention removed": every `attn2` processor is replaced by one that returns its input. In
  diffusers' BasicTransformerBlock that input is `norm2(h)` and the block adds it back, so the block
  computes `h + norm2(h)` there. The published weights were fine-tuned that way, so we keep it
  exactly (`PassThroughCrossAttention`); no text encoder is loaded.
- fine-tuned weights: every `attentions` ModuleList of the down blocks, the mid block and the up blocks
  (Transformer2DModels), collected in that order into one ModuleList and loaded with accelerate's
  `load_checkpoint_in_model`. Published keys are therefore `<list index>.<attention index>.<key>`,
  e.g. `3.0.transformer_blocks.0.attn1.to_q.weight` is `mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight`.
- inference: image and mask at 512x384 (H x W); masked image = image * (mask < 0.5); the latent of the
  masked person and the latent of the full person are concatenated along the height (dim -2); the
  mask (latent size) is concatenated with zeros the same way; U-Net input = [noisy latent, mask,
  masked|full latent] (9 channels). Classifier-free guidance: the unconditional branch replaces the
  full-person latent by zeros; noise = unc + scale * (cond - unc). DDIM, 50 steps, eta 1.0, scale 2.5.
  The garment is the top half of the final latent, decoded by the VAE.
- VAE latents are sampled from the posterior (`latent_dist.sample()`), as the original does; we pass
  each sample's own generator so the output depends only on (seed, key).

Not reproduced: the original whitens the background with `briaai/RMBG-1.4` (remote code) after
generation; we return the raw decoded garment.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from reidtools.errors import ReidError

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"
DEFAULT_WEIGHTS = "ixarchakos/tryOffAnyone"
DEFAULT_STEPS, DEFAULT_SCALE, DEFAULT_ETA, DEFAULT_SIZE = 50, 2.5, 1.0, (512, 384)
CONCAT_DIM = -2  # height

# LIP label ids (reidtools.data.labels.LIP_LABELS) of the garment a catalogue entry is made from.
# TryOffAnyone's "Tops" takes upper-clothes + dress of its segmenter; "Bottoms" pants + skirt.
GARMENT_LABELS = {"tops": (5, 6, 7), "bottoms": (9, 12)}

# The published checkpoint's top-level index -> U-Net module (SD-1.5 layout: down blocks 0-2 have
# attentions, block 3 has none; the mid block; up block 0 has none, up blocks 1-3 have them).
# Each Transformer2DModel holds 26 tensors (norm 2, proj_in 2, one transformer block 20, proj_out 2),
# 16 of them in SD-1.5 (2+2+2 down, 1 mid, 3+3+3 up): 416 published keys.
FULL_SIZE_PUBLISHED = {
    "0": ("down_blocks.0.attentions", 2, 320), "1": ("down_blocks.1.attentions", 2, 640),
    "2": ("down_blocks.2.attentions", 2, 1280), "3": ("mid_block.attentions", 1, 1280),
    "4": ("up_blocks.1.attentions", 3, 1280), "5": ("up_blocks.2.attentions", 3, 640),
    "6": ("up_blocks.3.attentions", 3, 320),
}
FULL_SIZE_KEY_COUNT = 416
# A few published keys with their shapes, as the original code defines them (conv 1x1 projections,
# GEGLU feed-forward of 4x width, 768-wide cross-attention keys/values kept though unused).
FULL_SIZE_SAMPLE_KEYS = {
    "0.0.norm.weight": (320,),
    "0.0.proj_in.weight": (320, 320, 1, 1),
    "0.1.transformer_blocks.0.attn1.to_q.weight": (320, 320),
    "2.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
    "3.0.transformer_blocks.0.ff.net.0.proj.weight": (10240, 1280),
    "4.2.transformer_blocks.0.norm2.bias": (1280,),
    "5.0.transformer_blocks.0.attn1.to_out.0.weight": (640, 640),
    "6.2.proj_out.weight": (320, 320, 1, 1),
}
# stable-diffusion-v1-5/stable-diffusion-inpainting unet/config.json (the fields that shape weights).
FULL_SIZE_UNET_CONFIG = dict(
    sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5,
)


class PassThroughCrossAttention:
    """attn2 processor returning its input (TryOffAnyone's `Skip`): no text conditioning."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return hidden_states


def remove_cross_attention(unet) -> None:
    procs = {name: (proc if name.endswith("attn1.processor") else PassThroughCrossAttention())
             for name, proc in unet.attn_processors.items()}
    unet.set_attn_processor(procs)


def fine_tuned_prefixes(unet) -> list[str]:
    """Module paths of the fine-tuned `attentions` lists, in the published checkpoint's order."""
    out = [f"down_blocks.{i}.attentions" for i, b in enumerate(unet.down_blocks) if hasattr(b, "attentions")]
    if hasattr(unet.mid_block, "attentions"):
        out.append("mid_block.attentions")
    out += [f"up_blocks.{i}.attentions" for i, b in enumerate(unet.up_blocks) if hasattr(b, "attentions")]
    return out


def unet_key_of(published_key: str, prefixes: list[str]) -> str:
    """`3.0.transformer_blocks...` -> `mid_block.attentions.0.transformer_blocks...`."""
    head, _, rest = published_key.partition(".")
    if not head.isdigit() or int(head) >= len(prefixes) or not rest:
        raise ReidError(f"checkpoint key {published_key!r} is not in TryOffAnyone's layout "
                        f"(<0..{len(prefixes) - 1}>.<attention>.<name>)")
    return f"{prefixes[int(head)]}.{rest}"


def published_keys(unet) -> dict[str, str]:
    """Published key -> U-Net state-dict key, for every fine-tuned tensor of `unet`."""
    prefixes = fine_tuned_prefixes(unet)
    names = list(unet.state_dict().keys())
    out = {}
    for i, prefix in enumerate(prefixes):
        for name in names:
            if name.startswith(prefix + "."):
                out[f"{i}.{name[len(prefix) + 1:]}"] = name
    return out


def _checkpoint_files(path: str) -> list[str]:
    if os.path.isfile(path):
        files = [path]
    else:
        index = sorted(glob.glob(os.path.join(path, "*.safetensors.index.json")))
        if index:
            with open(index[0], encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
            files = [os.path.join(path, s) for s in shards]
        elif os.path.isfile(os.path.join(path, "model.safetensors")):
            files = [os.path.join(path, "model.safetensors")]
        else:
            files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
            if len(files) != 1:
                other = glob.glob(os.path.join(path, "*.bin")) + glob.glob(os.path.join(path, "*.pt*"))
                hint = " (only pickle files found: convert them to safetensors)" if other else ""
                raise ReidError(f"--weights {path!r}: expected one model.safetensors (or an index), "
                                f"found {len(files)} .safetensors files{hint}")
    if not all(f.endswith(".safetensors") for f in files):
        raise ReidError(f"--weights {path!r}: only safetensors checkpoints are loaded")
    return files


def load_fine_tuned(unet, path: str) -> int:
    """Load TryOffAnyone's published attention weights (file or folder) into `unet`; returns #tensors.

    Strict: every fine-tuned tensor must be present and every checkpoint key must map onto one."""
    from safetensors.torch import load_file

    state = {}
    for f in _checkpoint_files(path):
        state.update(load_file(f))
    mapping = published_keys(unet)
    own = unet.state_dict()
    renamed = {}
    for key, tensor in state.items():
        target = mapping.get(key)
        if target is None:
            raise ReidError(f"--weights {path!r}: key {key!r} has no place in this U-Net "
                            f"(expected e.g. {next(iter(mapping))!r})")
        if tuple(own[target].shape) != tuple(tensor.shape):
            raise ReidError(f"--weights {path!r}: {key!r} has shape {tuple(tensor.shape)}, "
                            f"the U-Net's {target} has {tuple(own[target].shape)}")
        renamed[target] = tensor
    missing = sorted(set(mapping) - set(state))
    if missing:
        raise ReidError(f"--weights {path!r}: {len(missing)} fine-tuned tensors missing, e.g. {missing[0]!r}")
    unet.load_state_dict(renamed, strict=False)
    return len(renamed)


def garment_mask(parse: Image.Image | None, mask: Image.Image | None, garment: str) -> Image.Image:
    """L-mode 0/255 garment region: LIP ids of `garment` from a parse map, else the clothing mask."""
    if parse is not None:
        region = np.isin(np.asarray(parse), GARMENT_LABELS[garment])
        return Image.fromarray((region * 255).astype(np.uint8), "L")
    if mask is None:
        raise ValueError("need parse.png or mask.png")
    return Image.fromarray(((np.asarray(mask) >= 128) * 255).astype(np.uint8), "L")


@dataclass
class TryOffSettings:
    steps: int = DEFAULT_STEPS
    scale: float = DEFAULT_SCALE
    eta: float = DEFAULT_ETA
    size: tuple[int, int] = DEFAULT_SIZE  # (H, W)


class TryOffPipeline:
    """U-Net (cross-attention removed, fine-tuned attentions) + VAE + DDIM; see the module doc."""

    def __init__(self, unet, vae, scheduler, device="cpu", dtype=None):
        import torch

        self.device, self.dtype = torch.device(device), dtype or torch.float32
        self.unet, self.vae, self.scheduler = unet, vae, scheduler
        remove_cross_attention(self.unet)
        for module in (self.unet, self.vae):
            module.to(self.device)
            if module.dtype != self.dtype:
                module.to(self.dtype)
            module.eval()
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, vae: str = DEFAULT_VAE, weights: str | None = DEFAULT_WEIGHTS,
                        device="cpu", dtype=None) -> "TryOffPipeline":
        """Load from hub ids or folders (resolved through the local cache; see reidtools.hub).

        `weights=None` keeps the base U-Net's attentions (only useful for tests and ablations)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        from reidtools.hub import resolve_model

        base = resolve_model(model, "unet")
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=dtype)
        if unet.config.in_channels != 9:
            raise ReidError(f"--model {model!r}: the U-Net has {unet.config.in_channels} input channels; "
                            "TryOffAnyone needs an SD inpainting U-Net (9)")
        scheduler = DDIMScheduler.from_pretrained(resolve_model(model, "scheduler"), subfolder="scheduler")
        vae_model = AutoencoderKL.from_pretrained(resolve_model(vae), torch_dtype=dtype)
        if weights is not None:
            load_fine_tuned(unet, resolve_model(weights))
        return cls(unet, vae_model, scheduler, device, dtype)

    def precision(self) -> dict:
        """`dtype` the U-Net runs in, and `dtypes` per model when they differ (runtime.dtype_record)."""
        from reidtools.runtime import dtype_record

        return dtype_record({"unet": self.unet, "vae": self.vae}, "unet")

    def _encode(self, pixels, generators):
        dist = self.vae.encode(pixels).latent_dist
        return dist.sample(generator=generators) * self.vae.config.scaling_factor

    def __call__(self, images: list[Image.Image], masks: list[Image.Image], seeds: list[int],
                 settings: TryOffSettings | None = None) -> list[Image.Image]:
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        s = settings or TryOffSettings()
        h, w = s.size
        if h % self.vae_scale or w % self.vae_scale:
            raise ReidError(f"--size {h}x{w}: height and width must be multiples of {self.vae_scale}")
        dev, dt = self.device, self.dtype
        pix = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC), np.float32))
                           for im in images]).permute(0, 3, 1, 2) / 127.5 - 1.0
        m = torch.stack([torch.from_numpy((np.asarray(mk.convert("L").resize((w, h), Image.NEAREST)) >= 128)
                                          .astype(np.float32)) for mk in masks])[:, None]
        pix, m = pix.to(dev, dt), m.to(dev, dt)
        gens = [torch.Generator().manual_seed(int(sd)) for sd in seeds]
        with torch.no_grad():
            masked_latent = self._encode(pix * (m < 0.5), gens)
            image_latent = self._encode(pix, gens)
            m_lat = torch.nn.functional.interpolate(m, size=masked_latent.shape[-2:], mode="nearest")
            cond = torch.cat([masked_latent, image_latent], dim=CONCAT_DIM)
            mask_cat = torch.cat([m_lat, torch.zeros_like(m_lat)], dim=CONCAT_DIM)
            latents = randn_tensor(cond.shape, generator=gens, device=dev, dtype=dt)
            self.scheduler.set_timesteps(s.steps, device=dev)
            latents = latents * self.scheduler.init_noise_sigma
            cfg = s.scale > 1.0
            if cfg:
                uncond = torch.cat([masked_latent, torch.zeros_like(image_latent)], dim=CONCAT_DIM)
                cond, mask_cat = torch.cat([uncond, cond]), torch.cat([mask_cat, mask_cat])
            for t in self.scheduler.timesteps:
                x = torch.cat([latents] * 2) if cfg else latents
                x = self.scheduler.scale_model_input(x, t)
                x = torch.cat([x, mask_cat, cond], dim=1)
                noise = self.unet(x, t, encoder_hidden_states=None, return_dict=False)[0]
                if cfg:
                    unc, con = noise.chunk(2)
                    noise = unc + s.scale * (con - unc)
                latents = self.scheduler.step(noise, t, latents, eta=s.eta, generator=gens).prev_sample
            garment = latents.split(latents.shape[CONCAT_DIM] // 2, dim=CONCAT_DIM)[0]
            decoded = self.vae.decode(garment / self.vae.config.scaling_factor).sample
        arr = ((decoded.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return [Image.fromarray(a, "RGB") for a in arr]
