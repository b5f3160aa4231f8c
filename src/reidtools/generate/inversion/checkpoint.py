"""The `reid invert fit` checkpoint folder (DiVE, seed 002).

Checkpoint folder (usable outside reid with diffusers' own loaders):
- `learned_embeds.safetensors`: one key per identity token (`<id_17>`), value (1, D): diffusers'
  textual-inversion layout (a single-key file of this kind loads with `pipe.load_textual_inversion`).
- `pytorch_lora_weights.safetensors`: the U-Net LoRA in diffusers' format (`pipe.load_lora_weights`).
- `manifest.json`: id -> token, camera -> code, base model, training options, step, and `files`: the
  SHA-256 of each weight file, checked when the checkpoint is loaded (`reidtools.pretrained`).
- `checkpoint-N/`: the same files at step N plus `train_state.safetensors` + `train_state.json`
  (LoRA, token rows and optimizer moments), from which `--resume` continues; the newest
  `--keep-checkpoints` are kept.
"""

from __future__ import annotations

import json
import os

from reidtools.errors import ReidError

EMBEDS = "learned_embeds.safetensors"
LORA = "pytorch_lora_weights.safetensors"
MANIFEST = "manifest.json"


def read_manifest(ckpt_dir: str) -> dict:
    path = os.path.join(ckpt_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ReidError(f"{ckpt_dir}: no {MANIFEST} (not a `reid invert fit` checkpoint)") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None


def save_artifact(folder: str, manifest: dict, unet, rows, token_list) -> dict:
    """The sampling files (identity embeddings, LoRA, manifest with their SHA-256) into `folder`."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from reidtools.pretrained import write_artifact

    lora = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    w = rows.weight.detach().float().cpu()
    embeds = {tok: w[i:i + 1].clone() for i, tok in enumerate(token_list)}

    def write_lora(path):
        tmp_dir = os.path.join(os.path.dirname(path), ".lora.tmp")
        StableDiffusionPipeline.save_lora_weights(tmp_dir, unet_lora_layers=convert_state_dict_to_diffusers(lora),
                                                  safe_serialization=True)
        os.replace(os.path.join(tmp_dir, LORA), path)
        os.rmdir(tmp_dir)

    return write_artifact(folder, manifest, {EMBEDS: embeds}, {LORA: write_lora}, name=MANIFEST)


def save_checkpoint(ckpt_dir: str, manifest: dict, step: int, loss: float, unet, rows, token_list, optimizer, *,
                    keep: int = 1, final: bool = False) -> None:
    """`ckpt_dir/checkpoint-STEP/` (artefact + train state); with `final`, the artefact in ckpt_dir too."""
    from peft.utils import get_peft_model_state_dict

    from reidtools.pretrained import checkpoint_path, prune_checkpoints, save_train_state

    manifest = {**manifest, "step": step, "last_loss": loss}
    path = checkpoint_path(ckpt_dir, step)
    save_artifact(path, manifest, unet, rows, token_list)
    lora = {f"lora.{k}": v.detach().float() for k, v in get_peft_model_state_dict(unet).items()}
    save_train_state(path, step, optimizer, extra={**lora, "rows": rows.weight.detach().float()})
    prune_checkpoints(ckpt_dir, keep, name=MANIFEST)
    if final:
        save_artifact(ckpt_dir, manifest, unet, rows, token_list)


def load_into_pipeline(pipe, ckpt_dir: str, manifest: dict | None = None) -> None:
    """Add the identity tokens and the LoRA of a checkpoint to a diffusers SD pipeline, through
    diffusers' own loaders."""
    from reidtools.pretrained import load_tensors, verify_file

    manifest = manifest or read_manifest(ckpt_dir)
    if not os.path.exists(os.path.join(ckpt_dir, EMBEDS)) or not os.path.exists(os.path.join(ckpt_dir, LORA)):
        raise ReidError(f"{ckpt_dir}: the checkpoint lacks {EMBEDS} or {LORA} (fit not finished?)")
    embeds = load_tensors(ckpt_dir, EMBEDS, manifest)
    verify_file(ckpt_dir, LORA, manifest)
    tokens = list(embeds)
    pipe.load_textual_inversion([{t: embeds[t]} for t in tokens], token=tokens)
    pipe.load_lora_weights(ckpt_dir, weight_name=LORA)


def load_pipeline(ckpt_dir: str, *, base: str | None = None, scheduler: str = "dpm++", device=None,
                  dtype: str = "fp16"):
    """(pipeline, manifest, LoRA partition or None): the base StableDiffusionPipeline with the
    checkpoint loaded and the chosen scheduler."""
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
    partition = None
    if manifest["options"].get("lora_mode") == "partition":
        from reidtools.generate.inversion.model import LoraPartition

        partition = LoraPartition(pipe.unet, list(manifest["cameras"]), int(manifest["options"]["rank"]))
        if {k: list(v) for k, v in partition.ranges.items()} != manifest.get("lora_partition"):
            raise ReidError(f"{ckpt_dir}: the manifest's LoRA partition does not match its cameras and rank")
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe, manifest, partition
