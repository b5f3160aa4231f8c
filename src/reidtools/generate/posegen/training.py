"""`reid posegen fit`: training Pose-dIVE (seed 004 §B) to re-render a person in a new pose/viewpoint.

Model (`PoseDiveNet`):
- a denoising U-Net and a reference U-Net of the same architecture, both loaded from the same SD
  weights (`--base`, via resolve_model);
- the reference U-Net runs on the reference image's latent (timestep 0); at every self-attention
  layer the denoising U-Net attends over the concatenation of its own and the reference tokens and
  keeps its own outputs (`reidtools.generate.attention`, shared with `reid tryon`);
- cross-attention gets the CLIP image embedding of the reference (`--image-encoder`) instead of text,
  through a trainable linear projection when the embedding width differs from the U-Net's
  cross_attention_dim;
- spatially aligned conditions (skeleton, optional depth.png / normal.png of the target) go through
  one zero-initialised pose guider each (`reidtools.generate.posegen.guider`), added after conv_in.

Training (`fit`, eq. 1: ||eps - eps_theta(z_t, c, t)||^2): pairs (reference, target) of the same pid,
references kept by eq. 3 (pose-ref) and targets by eq. 4 (pose-target), the very rules of
`reid filter`. Trains the guiders, the projection and the denoising U-Net (+ the reference U-Net with
`train_reference`). With `render_conditions` the depth/normal maps of a target are rendered from its
own pose (`reidtools.generate.posegen.targets.own_view_maps`). With probability `uncond_prob` a step drops the reference (zero CLIP embedding,
no reference features) so sampling can use classifier-free guidance; the paper states neither, the
value 0.1 is AnimateAnyone's released code, on which Pose-dIVE's architecture is modelled.

Checkpoint folder: `denoising_unet/` (diffusers layout, safetensors), `reference_unet/` (only when
trained), `pose_guiders.safetensors`, `image_proj.safetensors` (when a projection exists),
`manifest.json`; `checkpoint-N/` holds the same plus `train_state.safetensors` + `train_state.json`
(optimizer, step) for --resume, and the final artefact's weight files are hard links to its own.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from reidtools.errors import ReidError
from reidtools.shards.images import decode
from reidtools.seeding import derive_seed, rng

log = logging.getLogger("reidtools")

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_IMAGE_ENCODER = "openai/clip-vit-large-patch14"


@dataclass
class FitOptions:
    base: str = DEFAULT_BASE
    image_encoder: str = DEFAULT_IMAGE_ENCODER
    conditions: tuple[str, ...] = ("skeleton",)
    guider_channels: tuple[int, ...] = (16, 32, 96, 256)   # ControlNet/AnimateAnyone embedding widths
    inject: str = "conv_in"              # paper: added to the projected noise
    train_reference: bool = False
    lr: float = 1e-5                     # no value in the paper; AnimateAnyone stage 1
    weight_decay: float = 1e-2
    steps: int = 30_000                  # no value in the paper; AnimateAnyone stage 1
    batch_size: int = 4
    size: tuple[int, int] = (512, 256)   # (H, W)
    tau_ref: float = 0.6                 # eq. 3 (Fig. 4: 0.6 best)
    tau_tar: float = 0.6                 # eq. 4
    keypoints: tuple[str, ...] | None = None
    skeleton_threshold: float = 0.3
    # depth/normal maps rendered by `reid posegen poses`' body renderer for each target image's own
    # lifted pose and view, instead of read from depth.png/normal.png: the maps sampling gets from
    # `reid posegen poses` then come from the same renderer
    render_conditions: bool = False
    uncond_prob: float = 0.1
    mixed_precision: str = "auto"
    save_every: int = 1000
    keep_checkpoints: int = 1            # newest checkpoint-N/ folders kept for --resume
    validation_every: int = 0            # diffusers' --validation_steps: 0 = none
    validation_images: int = 2           # training targets re-rendered from another image of their pid
    validation_steps: int = 25           # DDIM steps of a validation image
    seed: int = 0

    def check(self) -> None:
        from reidtools.generate.posegen.guider import CONDITION_CHANNELS

        bad = [c for c in self.conditions if c not in CONDITION_CHANNELS]
        if bad or not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ReidError(f"--conditions must name distinct conditions among {', '.join(CONDITION_CHANNELS)}")
        if "skeleton" not in self.conditions:
            raise ReidError("--conditions must include skeleton (the target pose is always given)")
        if self.inject not in ("conv_in", "latent"):
            raise ReidError(f"--inject {self.inject!r} is not conv_in or latent")
        if not 0.0 <= self.uncond_prob < 1.0:
            raise ReidError("--uncond-prob must be in [0, 1)")
        if self.steps < 1 or self.batch_size < 1 or self.save_every < 1 or self.keep_checkpoints < 1:
            raise ReidError("--steps, --batch-size, --save-every and --keep-checkpoints must be positive")


RESUME_KEYS = ("base", "image_encoder", "conditions", "guider_channels", "inject", "train_reference",
               "render_conditions")
# options added after checkpoints were first written: what an older manifest's absence means
RESUME_DEFAULTS = {"render_conditions": False}


def fit(shards: list[str], ckpt_dir: str, opts: FitOptions, *, resume: bool = False, progress: bool = True,
        device: str | None = None) -> dict:
    """Train; write the checkpoint every `save_every` steps and at the end. Returns the manifest."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm import tqdm

    from reidtools.generate.posegen.checkpoint import (DENOISING, MANIFEST, REFERENCE, load_parts, load_unet_folder,
                                                       read_manifest, save_checkpoint)
    from reidtools.generate.posegen.conditions import condition_tensors, pixels
    from reidtools.generate.posegen.net import ImageEncoder, build_net, load_base
    from reidtools.generate.posegen.pairs import pick_reference, read_pairs

    from reidtools.generate.training import batch_indices, mixed_precision, optimizer_state_from

    from reidtools.pretrained import load_train_state, resume_point

    opts.check()
    latest = resume_point(ckpt_dir, resume, MANIFEST)
    old = read_manifest(latest) if latest else None
    if old is not None:
        o = old["options"]
        for k in RESUME_KEYS:
            mine = getattr(opts, k)
            mine = list(mine) if isinstance(mine, tuple) else mine
            theirs = o.get(k, RESUME_DEFAULTS.get(k))
            if theirs != mine:
                raise ReidError(f"--resume: --{k.replace('_', '-')} {mine!r} differs from the checkpoint's {theirs!r}")
    ps = read_pairs(shards, opts)

    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(mixed_precision=mixed_precision(opts.mixed_precision, cpu=cpu), cpu=cpu,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
    vae, unet, noise_sched, base_path = load_base(opts.base, with_unet=old is None)
    if old and opts.train_reference:
        reference = load_unet_folder(os.path.join(latest, REFERENCE))
    else:   # the same weights as the denoising U-Net's start, a separate module
        reference = load_unet_folder(os.path.join(base_path, "unet"))
    if old is not None:
        unet = load_unet_folder(os.path.join(latest, DENOISING))
    encoder = ImageEncoder(opts.image_encoder)
    torch.manual_seed(derive_seed(opts.seed, "posegen-init") % 2**63)
    net = build_net(unet, reference, opts.conditions, opts.guider_channels, opts.inject, encoder.dim,
                    opts.train_reference, vae)
    if old is not None:
        load_parts(net, latest, old)
    vae.requires_grad_(False)
    reference.requires_grad_(opts.train_reference)
    half = weight_dtype != torch.float32
    vae.to(acc.device, dtype=weight_dtype) if half else vae.to(acc.device)
    encoder.to(acc.device, weight_dtype if half else None)
    net.to(acc.device)
    if half and not opts.train_reference:
        reference.to(dtype=weight_dtype)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    start = 0
    if old is not None:
        tensors, meta = load_train_state(latest)
        optimizer.load_state_dict(optimizer_state_from(tensors, meta))
        start = int(meta["step"])
        log.info("resuming %s at step %d", latest, start)
    net, optimizer = acc.prepare(net, optimizer)
    inner = acc.unwrap_model(net)

    from reidtools.generate.posegen.checkpoint import FORMAT

    manifest = {"format": FORMAT, "base": opts.base, "image_encoder": opts.image_encoder, "dataset": ps.dataset,
                "pairs": ps.counts, "embed_dim": encoder.dim,
                "options": {**asdict(opts), "size": list(opts.size), "conditions": list(opts.conditions),
                            "guider_channels": list(opts.guider_channels),
                            "keypoints": list(opts.keypoints) if opts.keypoints else None}}
    os.makedirs(ckpt_dir, exist_ok=True)
    sf = vae.config.scaling_factor
    world, rank_ = acc.num_processes, acc.process_index
    bar = tqdm(total=opts.steps, initial=start, desc="fit", unit="step", disable=not (progress and acc.is_main_process),
               dynamic_ncols=True, leave=False)
    net.train()
    loss_val = float("nan")
    for step in range(start, opts.steps):
        slots = batch_indices(len(ps.targets), step, opts.batch_size * world, opts.seed)
        mine = list(enumerate(slots))[rank_ * opts.batch_size:(rank_ + 1) * opts.batch_size]
        tgt_px, ref_px, ref_imgs, conds = [], [], [], defaultdict(list)
        for slot, k in mine:
            i = ps.targets[k]
            j = pick_reference(ps, i, step, slot, opts.seed)
            tgt_px.append(pixels(decode(ps.images[i], "RGB"), opts.size))
            ref_img = decode(ps.images[j], "RGB")
            ref_imgs.append(ref_img)
            ref_px.append(pixels(ref_img, opts.size))
            for name, t in condition_tensors(ps.poses[i], ps.extras[i], opts.conditions, opts.size,
                                             opts.skeleton_threshold, ps.where[i]).items():
                conds[name].append(t)
        uncond = rng(opts.seed, "uncond", step).random() < opts.uncond_prob   # same on every rank
        g = torch.Generator().manual_seed(derive_seed(opts.seed, "noise", step, rank_))
        cond_t = {k: torch.stack(v).to(acc.device, dtype=weight_dtype) for k, v in conds.items()}
        with acc.autocast():
            with torch.no_grad():
                x = torch.stack(tgt_px).to(acc.device, dtype=weight_dtype)
                dist = vae.encode(x).latent_dist
                eps = torch.randn(dist.mean.shape, generator=g).to(acc.device, dist.mean.dtype)
                latents = (dist.mean + dist.std * eps) * sf
                ref_latents = None
                if not uncond:
                    r = torch.stack(ref_px).to(acc.device, dtype=weight_dtype)
                    ref_latents = vae.encode(r).latent_dist.mean * sf
                embeds = encoder(ref_imgs)
                if uncond:
                    embeds = torch.zeros_like(embeds)
            noise = torch.randn(latents.shape, generator=g).to(acc.device, latents.dtype)
            t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(mine),), generator=g).to(acc.device)
            noisy = noise_sched.add_noise(latents, noise, t)
            pred = net(noisy, t, embeds.float(), cond_t, ref_latents)
            target = noise if noise_sched.config.prediction_type == "epsilon" else noise_sched.get_velocity(latents, noise, t)
            loss = F.mse_loss(pred.float(), target.float())   # eq. (1)
        acc.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_val = float(loss.detach())
        if not np.isfinite(loss_val):
            raise ReidError(f"the loss became {loss_val} at step {step + 1}; lower --lr or use --mixed-precision bf16/no")
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.4f}")
        done = step + 1
        if done % 10 == 0 or done == opts.steps:
            log.info("step %d/%d: loss %.4f", done, opts.steps, loss_val)
        if acc.is_main_process and opts.validation_every and done % opts.validation_every == 0:
            validate(ckpt_dir, done, opts, ps, inner, vae, encoder, noise_sched.config, acc.device, weight_dtype)
            net.train()
        if acc.is_main_process and (done % opts.save_every == 0 or done == opts.steps):
            save_checkpoint(ckpt_dir, inner, manifest, done, loss_val, optimizer, opts.train_reference,
                            keep=opts.keep_checkpoints, final=done == opts.steps)
        acc.wait_for_everyone()
    bar.close()
    if start >= opts.steps and acc.is_main_process:
        log.info("%s is already at step %d (--steps %d): nothing to do", ckpt_dir, start, opts.steps)
    inner.control.remove()
    if inner.injection is not None:
        inner.injection.remove()
    return read_manifest(ckpt_dir)


def validate(ckpt_dir, step, opts, ps, net, vae, encoder, scheduler_config, device, weight_dtype) -> None:
    """Validation images, as diffusers' training scripts write them: the first training targets
    re-rendered from another image of their pid (as `posegen sample` would), from fixed seeds, into
    ckpt_dir/validation/step-N/, each beside its reference and its real target image."""
    import torch
    from PIL import Image

    from reidtools.generate.posegen.pairs import pick_reference
    from reidtools.generate.posegen.sample import Job, PoseEntry, PoseGenerator, Reference
    from reidtools.shards.images import decode

    folder = os.path.join(ckpt_dir, "validation", f"step-{step}")
    os.makedirs(folder, exist_ok=True)
    gen = PoseGenerator.from_parts(net, vae, encoder, scheduler_config, opts.conditions, opts.skeleton_threshold,
                                   device, torch.float32)
    net.eval()
    half = weight_dtype != torch.float32
    h, w = opts.size
    for n, i in enumerate(ps.targets[:opts.validation_images]):
        j = pick_reference(ps, i, 0, n, opts.seed)
        shard, key = ps.where[i]
        job = Job(ps.pids[i], n, Reference(ps.where[j][1], ps.where[j][0], ps.images[j], {}),
                  PoseEntry(key, shard, ps.poses[i], ps.extras[i]), derive_seed(opts.seed, "validation", n))
        with torch.no_grad(), torch.autocast(device.type, dtype=weight_dtype, enabled=half):
            (img,) = gen([job], steps=opts.validation_steps, guidance=3.5, size=(h, w), scheduler="ddim")
        row = Image.new("RGB", (3 * w, h))
        for k, part in enumerate((decode(ps.images[j], "RGB"), img, decode(ps.images[i], "RGB"))):
            row.paste(part.resize((w, h)), (k * w, 0))
        row.save(os.path.join(folder, f"{key}.png"))
    net.control.clear()
    log.info("step %d: validation images in %s (reference | generated | real target)", step, folder)

