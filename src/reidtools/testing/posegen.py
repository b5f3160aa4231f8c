"""Tiny random-weight models for `reid posegen` tests, the demo and benchmarks.

`write_tiny_posegen(folder)` saves, with `save_pretrained`, an SD-1.x-shaped base (unet, vae with SD's
1/8 downsampling, scheduler) and a CLIP vision model with projection + its image processor, which
`reid posegen fit --base FOLDER/base --image-encoder FOLDER/image_encoder` loads through the same
code path as the real weights.
"""

from __future__ import annotations

import os

TINY_GUIDER_CHANNELS = (4, 8, 8, 16)   # three stride-2 stages: 1/8, like SD's VAE


def write_tiny_posegen(folder: str, *, seed: int = 0, projection_dim: int = 16, image_size: int = 32) -> dict:
    """Write FOLDER/base and FOLDER/image_encoder; return their paths. `projection_dim` != the U-Net's
    cross_attention_dim (32) exercises the learned projection."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from reidtools.testing.models import TINY_UNET
    from reidtools.testing.tryoff import tiny_vae

    base, enc = os.path.join(folder, "base"), os.path.join(folder, "image_encoder")
    torch.manual_seed(seed)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, **TINY_UNET).save_pretrained(
        os.path.join(base, "unet"), safe_serialization=True)
    tiny_vae(seed).save_pretrained(os.path.join(base, "vae"), safe_serialization=True)
    DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  clip_sample=False, steps_offset=1).save_pretrained(os.path.join(base, "scheduler"))
    torch.manual_seed(seed + 1)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8, projection_dim=projection_dim)
    CLIPVisionModelWithProjection(cfg).save_pretrained(enc, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(enc)
    return {"base": base, "image_encoder": enc}
