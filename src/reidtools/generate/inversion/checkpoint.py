"""The `reid invert fit` checkpoint folder (DiVE, seed 002).

Checkpoint folder (usable outside reid with diffusers' own loaders):
- `learned_embeds.safetensors`: one key per identity token (`<id_17>`), value (1, D): diffusers'
  textual-inversion layout (a single-key file of this kind loads with `pipe.load_textual_inversion`).
- `pytorch_lora_weights.safetensors`: the U-Net LoRA in diffusers' format (`pipe.load_lora_weights`).
- `manifest.json`: id -> token, camera -> code, base model, training options, step.
- `train_state.safetensors` + `train_state.json`: optimizer moments and step, for `--resume`.
"""

from __future__ import annotations

import json
import os

from reidtools.errors import ReidError
from reidtools.fileio import atomic_write, write_json_atomic
from reidtools.generate.training import optimizer_state_tensors

EMBEDS = "learned_embeds.safetensors"
LORA = "pytorch_lora_weights.safetensors"
MANIFEST = "manifest.json"
STATE = "train_state.safetensors"
STATE_JSON = "train_state.json"


def read_manifest(ckpt_dir: str) -> dict:
    path = os.path.join(ckpt_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ReidError(f"{ckpt_dir}: no {MANIFEST} (not a `reid invert fit` checkpoint)") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None


def save(ckpt_dir, manifest, step, loss, unet, rows, token_list, optimizer) -> None:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    lora = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    w = rows.weight.detach().float().cpu()
    embeds = {tok: w[i:i + 1].clone() for i, tok in enumerate(token_list)}
    atomic_write(os.path.join(ckpt_dir, EMBEDS), lambda p: save_file(embeds, p))
    tmp_dir = os.path.join(ckpt_dir, ".lora.tmp")
    StableDiffusionPipeline.save_lora_weights(tmp_dir, unet_lora_layers=convert_state_dict_to_diffusers(lora),
                                              safe_serialization=True)
    os.replace(os.path.join(tmp_dir, LORA), os.path.join(ckpt_dir, LORA))
    os.rmdir(tmp_dir)
    opt_t, opt_meta = optimizer_state_tensors(optimizer)
    state = {**{f"lora.{k}": v for k, v in lora.items()}, "rows": w.contiguous(),
             **{k: v.detach().cpu().contiguous() for k, v in opt_t.items()}}
    atomic_write(os.path.join(ckpt_dir, STATE), lambda p: save_file(state, p))
    write_json_atomic(os.path.join(ckpt_dir, STATE_JSON), {"step": step, **opt_meta})
    write_json_atomic(os.path.join(ckpt_dir, MANIFEST), {**manifest, "step": step, "last_loss": loss})


def load_into_pipeline(pipe, ckpt_dir: str, manifest: dict | None = None) -> None:
    """Add the identity tokens and the LoRA of a checkpoint to a diffusers SD pipeline, through
    diffusers' own loaders."""
    from safetensors.torch import load_file

    manifest = manifest or read_manifest(ckpt_dir)
    path = os.path.join(ckpt_dir, EMBEDS)
    if not os.path.exists(path) or not os.path.exists(os.path.join(ckpt_dir, LORA)):
        raise ReidError(f"{ckpt_dir}: the checkpoint lacks {EMBEDS} or {LORA} (fit not finished?)")
    embeds = load_file(path)
    tokens = list(embeds)
    pipe.load_textual_inversion([{t: embeds[t]} for t in tokens], token=tokens)
    pipe.load_lora_weights(ckpt_dir, weight_name=LORA)


def load_pipeline(ckpt_dir: str, *, base: str | None = None, scheduler: str = "dpm++", device=None,
                  dtype: str = "fp16"):
    """The base StableDiffusionPipeline with the checkpoint loaded and the chosen scheduler."""
    from diffusers import StableDiffusionPipeline

    from reidtools.generate.schedulers import set_scheduler

    from reidtools.hub import resolve_model
    from reidtools.runtime import best_device, torch_dtype

    manifest = read_manifest(ckpt_dir)
    base = base or manifest["base"]
    dev = best_device(device)
    tdtype = torch_dtype(dtype, dev)
    path = resolve_model(base, subfolder="unet")
    try:
        # The safety checker blanks many ordinary pedestrian crops; research data generation turns it off.
        pipe = StableDiffusionPipeline.from_pretrained(path, torch_dtype=tdtype, safety_checker=None,
                                                       requires_safety_checker=False)
    except (OSError, ValueError) as exc:
        raise ReidError(f"base model {base}: cannot load a StableDiffusionPipeline ({str(exc).splitlines()[0]})") from None
    if scheduler == "default":   # DiVE samples with DPM-Solver++ (§4.1), not the base's own
        scheduler = "dpm++"
    set_scheduler(pipe, scheduler)
    load_into_pipeline(pipe, ckpt_dir, manifest)
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe, manifest
