"""A random-weight text-to-image StableDiffusionPipeline for tests, the demo and benchmarks of
`reid invert` (saved with `save_pretrained`, loaded back through `--base FOLDER` like real weights)."""

from __future__ import annotations

import tempfile


def build_txt2img_pipeline(folder: str, *, seed: int = 0, unet: dict | None = None,
                           vae_channels: tuple[int, ...] = (16, 32)):
    """Save a tiny SD-1.x-shaped pipeline (4-channel U-Net, char-level CLIP tokenizer) to `folder`."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from reidtools.testing.models import TINY_UNET, write_clip_tokenizer

    torch.manual_seed(seed)
    ucfg = dict(TINY_UNET if unet is None else unet)
    text_dim = ucfg["cross_attention_dim"]
    unet_model = UNet2DConditionModel(sample_size=32, in_channels=4, out_channels=4, **ucfg)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vae_channels,
                        layers_per_block=1, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
                        up_block_types=("UpDecoderBlock2D",) * len(vae_channels))
    with tempfile.TemporaryDirectory() as tok_dir:
        tokenizer = write_clip_tokenizer(tok_dir)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=text_dim, intermediate_size=2 * text_dim,
                                        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet_model,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe
