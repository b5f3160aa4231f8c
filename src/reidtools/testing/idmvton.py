"""Tiny random-weight IDM-VTON in the published folder layout (`yisol/IDM-VTON`), for tests and demos.

Mirrors the real components at small widths: SDXL-style U-Nets (DownBlock2D then cross-attention
blocks, linear projections, `addition_embed_type="text_time"`), the try-on U-Net with 13 input
channels, `encoder_hid_dim_type: "ip_image_proj"`, IP attention processors and a Resampler saved under
IDM-VTON's key names; the garment U-Net as an SDXL base U-Net (4 channels, text_time, which the loader
switches off as train_xl.py does); CLIPTextModel + CLIPTextModelWithProjection; a
CLIPVisionModelWithProjection; an 8x-downsampling VAE; a DDPM scheduler with SDXL's schedule.
Everything goes through `TryOnPipeline.from_pretrained(folder)`, the loader of the real weights.
"""

from __future__ import annotations

import json
import os
import re

TEXT_WIDTH = 16     # each text encoder; cross-attention width = 2 * TEXT_WIDTH (as 768 + 1280 in SDXL)
IMAGE_WIDTH = 24    # CLIP vision hidden size = encoder_hid_dim (1280 for ViT-H)
TIME_DIM = 8        # addition_time_embed_dim (256 in SDXL)

TINY_UNET = dict(
    sample_size=8, out_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 1, 2), attention_head_dim=(2, 4, 4), use_linear_projection=True,
    cross_attention_dim=2 * TEXT_WIDTH, norm_num_groups=8, addition_embed_type="text_time",
    addition_time_embed_dim=TIME_DIM, projection_class_embeddings_input_dim=6 * TIME_DIM + TEXT_WIDTH,
)
# Resampler sizes (IDM-VTON: dim 1280, depth 4, 20 heads of 64, 16 queries, ff x4); dim_head stays 64
TINY_RESAMPLER = dict(dim=32, depth=2, dim_head=64, heads=1, num_queries=16, ff_mult=4)

_BACK = [
    (re.compile(r"^layers\.(\d+)\.ln0\."), r"layers.\1.0.norm1."),
    (re.compile(r"^layers\.(\d+)\.ln1\."), r"layers.\1.0.norm2."),
    (re.compile(r"^layers\.(\d+)\.attn\.to_q\."), r"layers.\1.0.to_q."),
    (re.compile(r"^layers\.(\d+)\.attn\.to_out\.0\."), r"layers.\1.0.to_out."),
    (re.compile(r"^layers\.(\d+)\.ff\.0\."), r"layers.\1.1.0."),
    (re.compile(r"^layers\.(\d+)\.ff\.1\.net\.0\.proj\."), r"layers.\1.1.1."),
    (re.compile(r"^layers\.(\d+)\.ff\.1\.net\.2\."), r"layers.\1.1.3."),
]


def resampler_to_idm(state: dict) -> dict:
    """diffusers IPAdapterPlusImageProjection state -> IDM-VTON Resampler names (to_k/to_v -> to_kv)."""
    import torch

    out, kv = {}, {}
    for key, value in state.items():
        m = re.match(r"^layers\.(\d+)\.attn\.to_([kv])\.weight$", key)
        if m:
            kv.setdefault(m.group(1), {})[m.group(2)] = value
            continue
        for pattern, repl in _BACK:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            out[key] = value
    for i, d in kv.items():
        out[f"layers.{i}.0.to_kv.weight"] = torch.cat([d["k"], d["v"]])
    return out


def _unet(in_channels: int, seed: int):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(in_channels=in_channels, **TINY_UNET)


def write_tiny_idmvton(folder: str, seed: int = 0, ip_adapter: bool = True) -> str:
    """Write the tiny model to `folder` in the published layout; returns `folder`."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler
    from safetensors.torch import save_file
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    from reidtools.generate.tryon.ipadapter import install_ip_attention, resampler
    from reidtools.testing.models import write_clip_tokenizer

    os.makedirs(folder, exist_ok=True)
    tok = None
    for sub in ("tokenizer", "tokenizer_2"):
        tok = write_clip_tokenizer(os.path.join(folder, sub), max_length=16)
    text = dict(vocab_size=len(tok), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(seed)
    CLIPTextModel(CLIPTextConfig(**text)).save_pretrained(os.path.join(folder, "text_encoder"))
    CLIPTextModelWithProjection(CLIPTextConfig(projection_dim=TEXT_WIDTH, **text)).save_pretrained(
        os.path.join(folder, "text_encoder_2"))
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=IMAGE_WIDTH, intermediate_size=2 * IMAGE_WIDTH, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=IMAGE_WIDTH)).save_pretrained(os.path.join(folder, "image_encoder"))
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=4, sample_size=64,
                  scaling_factor=0.13025).save_pretrained(os.path.join(folder, "vae"))
    DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  steps_offset=1, timestep_spacing="leading", clip_sample=False).save_pretrained(
        os.path.join(folder, "scheduler"))
    _unet(4, seed + 1).save_pretrained(os.path.join(folder, "unet_encoder"))

    unet = _unet(13, seed + 2)
    sub = os.path.join(folder, "unet")
    unet.save_config(sub)
    state = {}
    if ip_adapter:
        install_ip_attention(unet, num_tokens=TINY_RESAMPLER["num_queries"])
        # IP key/value weights are random too; give them weight so the adapter visibly matters
        proj = resampler(IMAGE_WIDTH, TINY_UNET["cross_attention_dim"], **TINY_RESAMPLER)
        state.update({"encoder_hid_proj." + k: v for k, v in resampler_to_idm(proj.state_dict()).items()})
        with open(os.path.join(sub, "config.json"), encoding="utf-8") as fh:
            cfg = json.load(fh)
        cfg.update(encoder_hid_dim_type="ip_image_proj", encoder_hid_dim=IMAGE_WIDTH)
        with open(os.path.join(sub, "config.json"), "w", encoding="utf-8") as fh:
            json.dump(cfg, fh, indent=2)
    state.update(unet.state_dict())
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(sub, "diffusion_pytorch_model.safetensors"))
    return folder
