"""The `reid posegen fit` checkpoint folder.

`denoising_unet/` (diffusers layout, safetensors), `reference_unet/` (only when trained),
`pose_guiders.safetensors`, `image_proj.safetensors` (when a projection exists), and `manifest.json`
with `files`: the SHA-256 of every weight file, checked on load (`reidtools.pretrained`).
`checkpoint-N/` holds the same at step N plus `train_state.safetensors` + `train_state.json`
(optimizer, step), from which --resume continues; the newest --keep-checkpoints are kept. The final
artefact's weight files are hard links to the last checkpoint's (`pretrained.publish_checkpoint`).
"""

from __future__ import annotations

import os
import shutil

from reidtools.errors import ReidError

FORMAT = "reid-posegen/1"
MANIFEST = "manifest.json"
GUIDERS = "pose_guiders.safetensors"
PROJ = "image_proj.safetensors"
DENOISING = "denoising_unet"
REFERENCE = "reference_unet"


def read_manifest(ckpt_dir: str) -> dict:
    from reidtools.pretrained import read_config

    return read_config(ckpt_dir, name=MANIFEST, fmt=FORMAT, what="a `reid posegen fit` checkpoint")


def save_unet(unet, folder: str) -> None:
    """save_pretrained into FOLDER.tmp, then swap it in (a killed save leaves the old folder)."""
    from reidtools.pretrained import swap_folder

    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    unet.save_pretrained(tmp, safe_serialization=True)
    swap_folder(tmp, folder)


def prefixed(module, prefix: str) -> dict:
    return {f"{prefix}{k}": v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}


def save_artifact(folder: str, net, manifest: dict, train_reference: bool) -> dict:
    """U-Net folder(s), guiders, projection and the manifest (with every file's SHA-256, written last)."""
    from reidtools.pretrained import write_artifact

    tensors = {GUIDERS: prefixed(net.guiders.guiders, "")}
    if net.image_proj is not None:
        tensors[PROJ] = prefixed(net.image_proj, "")
    writers = {DENOISING: lambda path: save_unet(net.denoising_unet, path)}
    if train_reference:
        writers[REFERENCE] = lambda path: save_unet(net.reference_unet, path)
    return write_artifact(folder, manifest, tensors, writers, name=MANIFEST)


def save_checkpoint(ckpt_dir: str, net, manifest: dict, step: int, loss: float, optimizer, train_reference: bool, *,
                    keep: int = 1, final: bool = False) -> None:
    """`ckpt_dir/checkpoint-STEP/` (artefact + optimizer state); with `final`, the artefact in ckpt_dir too."""
    from reidtools.pretrained import checkpoint_path, prune_checkpoints, publish_checkpoint, save_train_state

    manifest = {**manifest, "step": step, "last_loss": loss}
    path = checkpoint_path(ckpt_dir, step)
    save_artifact(path, net, manifest, train_reference)
    save_train_state(path, step, optimizer)
    prune_checkpoints(ckpt_dir, keep, name=MANIFEST)
    if final:   # the same bytes as checkpoint-STEP's: hard links, not a second 3.4 GB U-Net
        publish_checkpoint(path, ckpt_dir, name=MANIFEST)


def load_parts(net, ckpt_dir: str, manifest: dict) -> None:
    """Guider (and projection) weights of a checkpoint into `net` (strict), after checking every weight
    file against the manifest's SHA-256 (the U-Net folders included)."""
    from reidtools.pretrained import load_tensors, verify_all

    verify_all(ckpt_dir, manifest)
    net.guiders.guiders.load_state_dict(load_tensors(ckpt_dir, GUIDERS, manifest))
    if net.image_proj is not None:
        if not os.path.exists(os.path.join(ckpt_dir, PROJ)):
            raise ReidError(f"{ckpt_dir}: no {PROJ}, but the image encoder's width differs from the U-Net's")
        net.image_proj.load_state_dict(load_tensors(ckpt_dir, PROJ, manifest))


def load_unet_folder(folder: str):
    from diffusers import UNet2DConditionModel

    try:
        return UNet2DConditionModel.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ReidError(f"{folder}: cannot load the U-Net ({str(exc).splitlines()[0]})") from None
