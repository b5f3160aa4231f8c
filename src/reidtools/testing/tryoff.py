"""Tiny random-weight models in the published folder layouts of TryOffAnyone (and its SD-1.5 base).

Tests and the demo save them with `save_pretrained` and load them through the very code path used
for the real weights. The configs mirror the real ones (same block types and their order, same
input channels, cross-attention present, published checkpoint layout) at small widths.
"""

from __future__ import annotations

import os


def tiny_tryoff_unet(seed: int = 0):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=(16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)


def tiny_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=0.18215)


def write_tiny_tryoff(folder: str, seed: int = 0) -> dict[str, str]:
    """FOLDER/base ({unet, scheduler} like the SD inpainting repo), FOLDER/vae, FOLDER/weights
    (model.safetensors in TryOffAnyone's published key layout). Returns the three paths."""
    from diffusers import PNDMScheduler
    from safetensors.torch import save_file

    from reidtools.generate.tryoff.pipeline import published_keys

    base, vae_dir, weights = (os.path.join(folder, n) for n in ("base", "vae", "weights"))
    unet = tiny_tryoff_unet(seed)
    unet.save_pretrained(os.path.join(base, "unet"))
    # the SD inpainting repo ships a PNDM config; TryOffAnyone loads it as DDIM
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  skip_prk_steps=True, steps_offset=1).save_pretrained(os.path.join(base, "scheduler"))
    tiny_vae(seed).save_pretrained(vae_dir)
    # "fine-tuned" attentions: other random values than the base, so loading them is observable
    tuned = tiny_tryoff_unet(seed + 1).state_dict()
    os.makedirs(weights, exist_ok=True)
    save_file({pk: tuned[uk].contiguous() for pk, uk in published_keys(unet).items()},
              os.path.join(weights, "model.safetensors"))
    return {"model": base, "vae": vae_dir, "weights": weights}
