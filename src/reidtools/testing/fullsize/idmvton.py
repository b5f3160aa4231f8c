"""IDM-VTON (`yisol/IDM-VTON`) at published size with random weights, in the hub's folder layout.

The whole pipeline is ~7.1 B parameters (two SDXL U-Nets, CLIP-L + OpenCLIP bigG text encoders,
CLIP ViT-H/14 image encoder, VAE): ~28 GB in fp32, more than the build machines' shared 24 GB. So
each component is built directly in the config's `save_dtype` (random init runs in that dtype,
no fp32 copy), saved, and freed before the next; the largest step (try-on U-Net + its serialised
copy) peaks at about twice that U-Net's size.

What is written is what `TryOnPipeline.from_pretrained` reads for the real checkpoint: unet
(13-channel try-on U-Net, `encoder_hid_dim_type: ip_image_proj`, IP processor keys
`...attn2.processor.to_k_ip.weight` and the Resampler under IDM-VTON's `encoder_hid_proj.*` names),
unet_encoder (SDXL base weights incl. add_embedding under a config without addition_embed_type, as
published), text_encoder(_2), image_encoder, vae, scheduler, tokenizer(_2) (the real CLIP BPE).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os

PLAIN_UNET_DROP = ("encoder_hid_dim", "encoder_hid_dim_type")


@contextlib.contextmanager
def _default_dtype(dtype):
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _write_config(folder: str, cfg: dict) -> None:
    from diffusers import __version__

    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as fh:
        json.dump({"_class_name": "UNet2DConditionModel", "_diffusers_version": __version__, **cfg}, fh, indent=2)


def _transformers_part(cfg: dict):
    import transformers

    spec = dict(cfg)
    arch = getattr(transformers, spec.pop("architecture"))
    return arch(arch.config_class(**spec))


def _save_tokenizers(cfg: dict, folder: str) -> None:
    from reidtools.testing.clip_bpe import write_clip_bpe_tokenizer

    for sub in ("tokenizer", "tokenizer_2"):
        tok = cfg[sub]
        write_clip_bpe_tokenizer(os.path.join(folder, sub), pad_token=tok["pad_token"], max_length=tok["model_max_length"])


def _tryon_state(cfg: dict) -> dict:
    """The try-on U-Net's published state dict: SDXL U-Net (13 channels) + IP processors + Resampler."""
    from diffusers import UNet2DConditionModel

    from reidtools.generate.tryon.ipadapter import install_ip_attention, resampler
    from reidtools.testing.idmvton import resampler_to_idm

    rs = dict(cfg["resampler"])
    unet = UNet2DConditionModel.from_config({k: v for k, v in cfg["unet"].items() if k not in PLAIN_UNET_DROP})
    install_ip_attention(unet, num_tokens=rs["num_queries"])
    state = dict(unet.state_dict())
    del unet
    proj = resampler(rs.pop("embedding_dim"), rs.pop("output_dim"), **rs)
    state.update({"encoder_hid_proj." + k: v for k, v in resampler_to_idm(proj.state_dict()).items()})
    return {k: v.contiguous() for k, v in state.items()}


def build_idmvton(cfg: dict, folder: str, *, seed: int = 0, dtype=None) -> str:
    """Write every component of `cfg` (the idm-vton.json data file) to `folder`, one at a time, in
    `dtype` (default: the config's `save_dtype`)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    dtype = dtype or getattr(torch, cfg["save_dtype"])
    os.makedirs(folder, exist_ok=True)
    _save_tokenizers(cfg, folder)
    sched = dict(cfg["scheduler"])
    getattr(diffusers, sched.pop("_class_name")).from_config(sched).save_pretrained(os.path.join(folder, "scheduler"))
    steps = [
        ("text_encoder", lambda: _transformers_part(cfg["text_encoder"])),
        ("text_encoder_2", lambda: _transformers_part(cfg["text_encoder_2"])),
        ("image_encoder", lambda: _transformers_part(cfg["image_encoder"])),
        ("vae", lambda: AutoencoderKL.from_config(cfg["vae"])),
        # the published weights are SDXL base's (with add_embedding), the published config omits it
        ("unet_encoder", lambda: UNet2DConditionModel.from_config({**cfg["unet_encoder"],
                                                                    "addition_embed_type": "text_time"})),
    ]
    for i, (sub, make) in enumerate(steps):
        torch.manual_seed(seed + i)
        with _default_dtype(dtype):
            model = make()
        model.save_pretrained(os.path.join(folder, sub), safe_serialization=True)
        del model
        gc.collect()
    _write_config(os.path.join(folder, "unet_encoder"), cfg["unet_encoder"])

    torch.manual_seed(seed + len(steps))
    with _default_dtype(dtype):
        state = _tryon_state(cfg)
    sub = os.path.join(folder, "unet")
    os.makedirs(sub, exist_ok=True)
    save_file(state, os.path.join(sub, "diffusion_pytorch_model.safetensors"))
    del state
    gc.collect()
    _write_config(sub, cfg["unet"])
    return folder


def idmvton_shapes(cfg: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    """{component: {key: shape}} of the published weight files, built on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from reidtools.generate.tryon.ipadapter import install_ip_attention, resampler_shapes

    rs = dict(cfg["resampler"])
    out = {}
    with init_empty_weights():
        mods = {k: _transformers_part(cfg[k]) for k in ("text_encoder", "text_encoder_2", "image_encoder")}
        mods["vae"] = AutoencoderKL.from_config(cfg["vae"])
        mods["unet_encoder"] = UNet2DConditionModel.from_config({**cfg["unet_encoder"], "addition_embed_type": "text_time"})
        unet = UNet2DConditionModel.from_config({k: v for k, v in cfg["unet"].items() if k not in PLAIN_UNET_DROP})
        install_ip_attention(unet, num_tokens=rs["num_queries"])
        mods["unet"] = unet
    for k, m in mods.items():
        out[k] = {n: tuple(t.shape) for n, t in m.state_dict().items()}
    proj = resampler_shapes(rs.pop("embedding_dim"), rs.pop("output_dim"), **rs)
    out["unet"].update({"encoder_hid_proj." + k: s for k, s in proj.items()})
    return out
