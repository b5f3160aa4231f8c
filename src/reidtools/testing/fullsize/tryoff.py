"""TryOffAnyone at published size: the three folders the released code (and `reid tryoff`) loads.

FOLDER/stable-diffusion-inpainting/{unet, scheduler} (`--model`: the SD-1.5 inpainting repo's two
sub-folders TryOffAnyone reads; the repo's text encoder, tokenizer and VAE are never loaded, so they
are not written), FOLDER/sd-vae-ft-mse (`--vae`) and FOLDER/tryOffAnyone/model.safetensors
(`--weights`: every fine-tuned attention tensor under its published key, `<list>.<attention>.<name>`).
"""

from __future__ import annotations

import os


def paths(cfg: dict, folder: str) -> dict[str, str]:
    """{"model": ..., "vae": ..., "weights": ...}: the folders to pass as --model/--vae/--weights."""
    return {part: os.path.join(folder, name) for part, name in cfg["folders"].items()}


def components(cfg: dict) -> dict:
    """The U-Net (9-channel SD-1.5 inpainting) and the VAE; under init_empty_weights() for shapes only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from reidtools.testing.fullsize import load_config

    base = load_config(cfg["base"])
    return {"unet": UNet2DConditionModel.from_config(base["unet"]), "vae": AutoencoderKL.from_config(cfg["vae"])}


def build_tryoffanyone(cfg: dict, folder: str) -> dict[str, str]:
    import diffusers
    import torch
    from safetensors.torch import save_file

    from reidtools.generate.tryoff.pipeline import published_keys
    from reidtools.testing.fullsize import load_config

    where = paths(cfg, folder)
    parts = components(cfg)
    unet = parts["unet"]
    unet.save_pretrained(os.path.join(where["model"], "unet"), safe_serialization=True)
    sched_cfg = dict(load_config(cfg["base"])["scheduler"])
    sched = getattr(diffusers, sched_cfg.pop("_class_name")).from_config(sched_cfg)
    sched.save_pretrained(os.path.join(where["model"], "scheduler"))
    parts["vae"].save_pretrained(where["vae"], safe_serialization=True)
    del parts
    # "fine-tuned" attentions: the base values moved by noise, so that keeping the base attentions
    # and loading these give different outputs
    own = unet.state_dict()
    tuned = {pk: (own[uk] + 0.01 * torch.randn_like(own[uk])).contiguous() for pk, uk in published_keys(unet).items()}
    del own, unet
    os.makedirs(where["weights"], exist_ok=True)
    save_file(tuned, os.path.join(where["weights"], cfg["weights_file"]))
    return where
