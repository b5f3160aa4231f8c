"""The `reid posegen fit` checkpoint folder.

`denoising_unet/` (diffusers layout, safetensors), `reference_unet/` (only when trained),
`pose_guiders.safetensors`, `image_proj.safetensors` (when a projection exists), `manifest.json`, and
`train_state.safetensors` + `train_state.json` (optimizer, step) for --resume.
"""

from __future__ import annotations

import json
import os
import shutil

from reidtools.errors import ReidError
from reidtools.fileio import atomic_write, write_json_atomic
from reidtools.generate.training import optimizer_state_tensors

FORMAT = "reid-posegen/1"
MANIFEST = "manifest.json"
GUIDERS = "pose_guiders.safetensors"
PROJ = "image_proj.safetensors"
STATE = "train_state.safetensors"
STATE_JSON = "train_state.json"
DENOISING = "denoising_unet"
REFERENCE = "reference_unet"


def read_manifest(ckpt_dir: str) -> dict:
    path = os.path.join(ckpt_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
    except FileNotFoundError:
        raise ReidError(f"{ckpt_dir}: no {MANIFEST} (not a `reid posegen fit` checkpoint)") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None
    if m.get("format") != FORMAT:
        raise ReidError(f"{path}: format {m.get('format')!r} is not {FORMAT} (not a `reid posegen fit` checkpoint)")
    return m


def save_unet(unet, folder: str) -> None:
    """save_pretrained into FOLDER.tmp, then swap it in (a killed save leaves the old folder)."""
    tmp, old = folder + ".tmp", folder + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    unet.save_pretrained(tmp, safe_serialization=True)
    if os.path.isdir(folder):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def prefixed(module, prefix: str) -> dict:
    return {f"{prefix}{k}": v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(ckpt_dir: str, net, manifest: dict, step: int, loss: float, optimizer, train_reference: bool) -> None:
    from safetensors.torch import save_file

    save_unet(net.denoising_unet, os.path.join(ckpt_dir, DENOISING))
    if train_reference:
        save_unet(net.reference_unet, os.path.join(ckpt_dir, REFERENCE))
    atomic_write(os.path.join(ckpt_dir, GUIDERS), lambda p: save_file(prefixed(net.guiders.guiders, ""), p))
    if net.image_proj is not None:
        atomic_write(os.path.join(ckpt_dir, PROJ), lambda p: save_file(prefixed(net.image_proj, ""), p))
    opt_t, opt_meta = optimizer_state_tensors(optimizer)
    atomic_write(os.path.join(ckpt_dir, STATE),
            lambda p: save_file({k: v.detach().cpu().contiguous() for k, v in opt_t.items()}, p))
    write_json_atomic(os.path.join(ckpt_dir, STATE_JSON), {"step": step, **opt_meta})
    write_json_atomic(os.path.join(ckpt_dir, MANIFEST), {**manifest, "step": step, "last_loss": loss})


def load_parts(net, ckpt_dir: str, manifest: dict) -> None:
    """Guider (and projection) weights of a checkpoint into `net` (strict)."""
    from safetensors.torch import load_file

    net.guiders.guiders.load_state_dict(load_file(os.path.join(ckpt_dir, GUIDERS)))
    if net.image_proj is not None:
        path = os.path.join(ckpt_dir, PROJ)
        if not os.path.exists(path):
            raise ReidError(f"{ckpt_dir}: no {PROJ}, but the image encoder's width differs from the U-Net's")
        net.image_proj.load_state_dict(load_file(path))


def load_unet_folder(folder: str):
    from diffusers import UNet2DConditionModel

    try:
        return UNet2DConditionModel.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ReidError(f"{folder}: cannot load the U-Net ({str(exc).splitlines()[0]})") from None
