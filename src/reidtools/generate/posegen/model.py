"""Pose-dIVE (seed 004 §B): re-render a person in a new pose/viewpoint, with training.

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
`train_reference`). With probability `uncond_prob` a step drops the reference (zero CLIP embedding,
no reference features) so sampling can use classifier-free guidance; the paper states neither, the
value 0.1 is AnimateAnyone's released code, on which Pose-dIVE's architecture is modelled.

Checkpoint folder: `denoising_unet/` (diffusers layout, safetensors), `reference_unet/` (only when
trained), `pose_guiders.safetensors`, `image_proj.safetensors` (when a projection exists),
`manifest.json`, and `train_state.safetensors` + `train_state.json` (optimizer, step) for --resume.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from reidtools.errors import ReidError, SampleError
from reidtools.fileio import atomic_write, write_json_atomic
from reidtools.seeding import derive_seed, rng

log = logging.getLogger("reidtools")

FORMAT = "reid-posegen/1"
MANIFEST = "manifest.json"
GUIDERS = "pose_guiders.safetensors"
PROJ = "image_proj.safetensors"
STATE = "train_state.safetensors"
STATE_JSON = "train_state.json"
DENOISING = "denoising_unet"
REFERENCE = "reference_unet"
DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_IMAGE_ENCODER = "openai/clip-vit-large-patch14"
# metadata that describes the reference image's content, not the generated one's
CONTENT_KEYS = ("pose", "view", "quality", "parse_labels", "frontal")


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
    uncond_prob: float = 0.1
    mixed_precision: str = "auto"
    save_every: int = 1000
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
        if self.steps < 1 or self.batch_size < 1 or self.save_every < 1:
            raise ReidError("--steps, --batch-size and --save-every must be positive")


# ----------------------------------------------------------------------------- conditions
def condition_tensors(pose: dict, extras: dict, conditions, size, threshold: float, where=("<memory>", "?")):
    """{name: float tensor (C, H, W) in [0, 1]} for one target: the rendered skeleton and the
    depth/normal images (resized to `size`)."""
    import torch
    from PIL import Image

    from reidtools.generate.posegen.guider import CONDITION_FIELDS
    from reidtools.vision.skeleton import render_skeleton

    h, w = size
    out = {}
    for name in conditions:
        if name == "skeleton":
            try:
                img = render_skeleton(pose, size, threshold=threshold)
            except (ValueError, KeyError, TypeError) as exc:
                raise SampleError(*where, f"cannot render the pose skeleton ({exc})") from None
        else:
            data = extras.get(name)
            if data is None:
                raise SampleError(*where, f"--conditions {name} needs the field {CONDITION_FIELDS[name]!r}")
            try:
                img = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
                img = img.convert("L" if name == "depth" else "RGB")
            except OSError as exc:
                raise SampleError(*where, f"field {CONDITION_FIELDS[name]!r} is not a readable image ({exc})") from None
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out[name] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def pixels(img, size):
    """PIL image -> (3, H, W) tensor in [-1, 1] at `size`."""
    import torch
    from PIL import Image

    h, w = size
    img = img.convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0


def extras_of(sample: dict, conditions) -> dict:
    from reidtools.generate.posegen.guider import CONDITION_FIELDS

    return {c: sample[CONDITION_FIELDS[c]] for c in conditions if c in CONDITION_FIELDS and CONDITION_FIELDS[c] in sample}


# ----------------------------------------------------------------------------- training pairs
@dataclass
class PairSet:
    images: list = field(default_factory=list)     # encoded image bytes
    pids: list = field(default_factory=list)       # identity(meta): (dataset, pid)
    poses: list = field(default_factory=list)
    extras: list = field(default_factory=list)     # {condition: bytes}
    where: list = field(default_factory=list)      # (shard, key)
    refs: dict = field(default_factory=dict)       # pid -> indices passing pose-ref
    targets: list = field(default_factory=list)    # indices passing pose-target with another ref of their pid
    dataset: str | None = None
    counts: dict = field(default_factory=dict)


def identity(m: dict) -> tuple[str, int]:
    """(dataset, pid): equal pids of different datasets are different people."""
    return (str(m.get("dataset") or ""), int(m["pid"]))


def _bytes_of(sample: dict, name: str) -> bytes:
    data = sample[name]
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    buf = io.BytesIO()
    (data if data.mode in ("L", "RGB") else data.convert("RGB")).save(buf, format="PNG")
    return buf.getvalue()


def read_pairs(shards: list[str], opts: FitOptions) -> PairSet:
    """Every image of the input, its pid and pose; which may serve as a reference (eq. 3) and which as a
    target (eq. 4, and at least one OTHER reference image of its pid exists)."""
    from reidtools.shards import image_field, iter_samples, require
    from reidtools.vision.rules import PoseRef, PoseTarget

    keypoints = list(opts.keypoints) if opts.keypoints else None
    ref_rule, tar_rule = PoseRef(opts.tau_ref, keypoints), PoseTarget(opts.tau_tar, keypoints)
    ps = PairSet()
    is_target = []
    datasets: set[str] = set()
    for sample in iter_samples(shards):
        m = require(sample, "pid", "pose", hint="`reid posegen fit` pairs images of one pid; run `reid pose` for poses")
        fld = image_field(sample)
        if fld is None:
            raise SampleError(sample["__shard__"], sample["__key__"], "no image field")
        if int(m["pid"]) < 0:          # junk/distractor labels (Market's -1)
            continue
        pid = identity(m)
        i = len(ps.images)
        if ref_rule(sample).passed:
            ps.refs.setdefault(pid, []).append(i)
        is_target.append(tar_rule(sample).passed)
        if is_target[-1]:
            # conditions of a target must be present (checked now, not at step 10,000)
            condition_tensors(m["pose"], extras_of(sample, opts.conditions), opts.conditions, (8, 8),
                              opts.skeleton_threshold, (sample["__shard__"], sample["__key__"]))
        ps.images.append(_bytes_of(sample, fld))
        ps.pids.append(pid)
        ps.poses.append(m["pose"])
        ps.extras.append({k: _bytes_of(sample, f) for k, f in _condition_fields(sample, opts.conditions).items()})
        ps.where.append((sample["__shard__"], sample["__key__"]))
        if m.get("dataset"):
            datasets.add(str(m["dataset"]))
    for i, ok in enumerate(is_target):
        if ok and any(j != i for j in ps.refs.get(ps.pids[i], [])):
            ps.targets.append(i)
    ps.dataset = next(iter(datasets)) if len(datasets) == 1 else None
    ps.counts = {"images": len(ps.images), "references": sum(len(v) for v in ps.refs.values()),
                 "targets": len(ps.targets), "ids": len({ps.pids[i] for i in ps.targets})}
    if not ps.targets:
        raise ReidError(f"no training pair: {ps.counts['images']} images, {ps.counts['references']} pass pose-ref "
                        f"(--tau-ref {opts.tau_ref}), none is a pose-target (--tau-tar {opts.tau_tar}) with another "
                        "reference image of the same pid")
    log.info("%d images: %d references, %d targets over %d ids", *(ps.counts[k] for k in ("images", "references", "targets", "ids")))
    return ps


def _condition_fields(sample: dict, conditions) -> dict:
    from reidtools.generate.posegen.guider import CONDITION_FIELDS

    return {c: CONDITION_FIELDS[c] for c in conditions if c in CONDITION_FIELDS and CONDITION_FIELDS[c] in sample}


def pick_reference(ps: PairSet, target: int, step: int, slot: int, seed: int) -> int:
    """A reference image of the target's pid other than the target, drawn from (seed, step, slot)."""
    cands = [j for j in ps.refs[ps.pids[target]] if j != target]
    return cands[int(rng(seed, "reference", step, slot).integers(len(cands)))]


# ----------------------------------------------------------------------------- models
class ImageEncoder:
    """CLIP image embeddings (B, 1, D) of PIL images: CLIPVisionModelWithProjection's image_embeds."""

    def __init__(self, name: str):
        import transformers
        from transformers import CLIPVisionModelWithProjection

        from reidtools.hub import resolve_model

        # the PIL processor: the default one wants torchvision, which this project does not use
        processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        path = resolve_model(name)
        try:
            self.processor = processor_cls.from_pretrained(path)
            self.model = CLIPVisionModelWithProjection.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ReidError(f"--image-encoder {name}: not a CLIP vision model ({str(exc).splitlines()[0]})") from None
        self.model.requires_grad_(False).eval()
        self.dim = int(self.model.config.projection_dim)

    def to(self, device, dtype=None):
        self.model.to(device, dtype=dtype)
        return self

    def __call__(self, images):
        import torch

        p = self.model.parameters().__next__()
        x = self.processor(images=list(images), return_tensors="pt").pixel_values.to(p.device, p.dtype)
        with torch.no_grad():
            return self.model(pixel_values=x).image_embeds.unsqueeze(1)


def _module_base():
    import torch

    class PoseDiveNet(torch.nn.Module):
        """Denoising U-Net + reference U-Net + pose guiders (+ image projection); see the module doc."""

        def __init__(self, denoising_unet, reference_unet, guiders, image_proj, inject: str, train_reference: bool):
            super().__init__()
            from reidtools.generate.posegen.guider import ConvInInjection
            from reidtools.generate.attention import ReferenceAttentionControl

            self.denoising_unet, self.reference_unet, self.guiders = denoising_unet, reference_unet, guiders
            self.image_proj = image_proj
            self.inject = inject
            self.control = ReferenceAttentionControl(denoising_unet, reference_unet, detach=not train_reference)
            self.injection = ConvInInjection(denoising_unet) if inject == "conv_in" else None

        def project(self, embeds):
            return embeds if self.image_proj is None else self.image_proj(embeds)

        def encode_reference(self, ref_latents, context) -> None:
            """Run the reference U-Net (timestep 0) and keep its self-attention inputs for `denoise`."""
            import torch

            self.control.clear()
            t0 = torch.zeros(ref_latents.shape[0], dtype=torch.long, device=ref_latents.device)
            with self.control.write():
                self.reference_unet(ref_latents, t0, encoder_hidden_states=context)

        def denoise(self, noisy, t, context, guide):
            """Noise prediction given the stored reference features and the guiders' output `guide`."""
            if self.inject == "latent":
                if guide.shape[0] != noisy.shape[0]:
                    guide = guide.repeat(noisy.shape[0] // guide.shape[0], 1, 1, 1)
                noisy = noisy + guide.to(noisy.dtype)
            else:
                self.injection.feature = guide
            try:
                with self.control.read():
                    return self.denoising_unet(noisy, t, encoder_hidden_states=context).sample
            finally:
                if self.injection is not None:
                    self.injection.feature = None

        def forward(self, noisy, t, embeds, conds, ref_latents=None):
            """Training forward pass; `ref_latents=None` drops the reference (unconditional step)."""
            context = self.project(embeds)
            if ref_latents is None:
                self.control.clear()
            else:
                self.encode_reference(ref_latents, context)
            try:
                return self.denoise(noisy, t, context, self.guiders(conds))
            finally:
                self.control.clear()

    return PoseDiveNet


def vae_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def load_base(base: str, with_unet: bool = True):
    """VAE, U-Net (None unless `with_unet`), training noise scheduler and local path of a SD-1.x
    folder or hub id."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from reidtools.hub import resolve_model

    path = resolve_model(base, subfolder="unet")
    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet") if with_unet else None
        noise = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ReidError(f"--base {base}: not a Stable Diffusion folder ({str(exc).splitlines()[0]})") from None
    return vae, unet, noise, path


def build_net(unet, reference_unet, conditions, guider_channels, inject: str, embed_dim: int, train_reference: bool,
              vae=None):
    """A PoseDiveNet around two U-Nets; guiders sized for the U-Net (conv_in width or latent channels)."""
    import torch

    from reidtools.generate.posegen.guider import GuiderSet

    if vae is not None and 2 ** (len(guider_channels) - 1) != vae_factor(vae):
        raise ReidError(f"--guider-channels {','.join(map(str, guider_channels))}: {len(guider_channels) - 1} "
                        f"downsamplings, but the VAE downsamples by {vae_factor(vae)} "
                        f"(give {int(np.log2(vae_factor(vae))) + 1} widths)")
    out = unet.config.block_out_channels[0] if inject == "conv_in" else unet.config.in_channels
    guiders = GuiderSet(list(conditions), out, tuple(guider_channels))
    cad = unet.config.cross_attention_dim
    proj = None if embed_dim == cad else torch.nn.Linear(embed_dim, cad)
    return _module_base()(unet, reference_unet, guiders, proj, inject, train_reference)


# ----------------------------------------------------------------------------- checkpoint files
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


def _save_unet(unet, folder: str) -> None:
    """save_pretrained into FOLDER.tmp, then swap it in (a killed save leaves the old folder)."""
    tmp, old = folder + ".tmp", folder + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    unet.save_pretrained(tmp, safe_serialization=True)
    if os.path.isdir(folder):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _prefixed(module, prefix: str) -> dict:
    return {f"{prefix}{k}": v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(ckpt_dir: str, net, manifest: dict, step: int, loss: float, optimizer, train_reference: bool) -> None:
    from safetensors.torch import save_file

    from reidtools.generate.inversion.model import _optimizer_state_tensors

    _save_unet(net.denoising_unet, os.path.join(ckpt_dir, DENOISING))
    if train_reference:
        _save_unet(net.reference_unet, os.path.join(ckpt_dir, REFERENCE))
    atomic_write(os.path.join(ckpt_dir, GUIDERS), lambda p: save_file(_prefixed(net.guiders.guiders, ""), p))
    if net.image_proj is not None:
        atomic_write(os.path.join(ckpt_dir, PROJ), lambda p: save_file(_prefixed(net.image_proj, ""), p))
    opt_t, opt_meta = _optimizer_state_tensors(optimizer)
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


# ----------------------------------------------------------------------------- training
RESUME_KEYS = ("base", "image_encoder", "conditions", "guider_channels", "inject", "train_reference")


def fit(shards: list[str], ckpt_dir: str, opts: FitOptions, *, resume: bool = False, progress: bool = True,
        device: str | None = None) -> dict:
    """Train; write the checkpoint every `save_every` steps and at the end. Returns the manifest."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from PIL import Image
    from safetensors.torch import load_file
    from tqdm import tqdm

    from reidtools.generate.inversion.model import _mixed_precision, _optimizer_state_from, batch_indices

    opts.check()
    old = None
    if os.path.exists(os.path.join(ckpt_dir, MANIFEST)):
        if not resume:
            raise ReidError(f"{ckpt_dir} already holds a checkpoint; pass --resume to continue it or choose a new -o")
        old = read_manifest(ckpt_dir)
        if not os.path.exists(os.path.join(ckpt_dir, STATE)):
            raise ReidError(f"{ckpt_dir}: no {STATE} to resume from")
        o = old["options"]
        for k in RESUME_KEYS:
            mine = getattr(opts, k)
            mine = list(mine) if isinstance(mine, tuple) else mine
            if o.get(k) != mine:
                raise ReidError(f"--resume: --{k.replace('_', '-')} {mine!r} differs from the checkpoint's {o.get(k)!r}")
    ps = read_pairs(shards, opts)

    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(mixed_precision=_mixed_precision(opts.mixed_precision), cpu=cpu,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
    vae, unet, noise_sched, base_path = load_base(opts.base, with_unet=old is None)
    if old and opts.train_reference:
        reference = load_unet_folder(os.path.join(ckpt_dir, REFERENCE))
    else:   # the same weights as the denoising U-Net's start, a separate module
        reference = load_unet_folder(os.path.join(base_path, "unet"))
    if old is not None:
        unet = load_unet_folder(os.path.join(ckpt_dir, DENOISING))
    encoder = ImageEncoder(opts.image_encoder)
    torch.manual_seed(derive_seed(opts.seed, "posegen-init") % 2**63)
    net = build_net(unet, reference, opts.conditions, opts.guider_channels, opts.inject, encoder.dim,
                    opts.train_reference, vae)
    if old is not None:
        load_parts(net, ckpt_dir, old)
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
        with open(os.path.join(ckpt_dir, STATE_JSON), encoding="utf-8") as fh:
            meta = json.load(fh)
        optimizer.load_state_dict(_optimizer_state_from(load_file(os.path.join(ckpt_dir, STATE)), meta))
        start = int(meta["step"])
        log.info("resuming %s at step %d", ckpt_dir, start)
    net, optimizer = acc.prepare(net, optimizer)
    inner = acc.unwrap_model(net)

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
            tgt_px.append(pixels(Image.open(io.BytesIO(ps.images[i])), opts.size))
            ref_img = Image.open(io.BytesIO(ps.images[j])).convert("RGB")
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
        if acc.is_main_process and (done % opts.save_every == 0 or done == opts.steps):
            save_checkpoint(ckpt_dir, inner, manifest, done, loss_val, optimizer, opts.train_reference)
        acc.wait_for_everyone()
    bar.close()
    if start >= opts.steps and acc.is_main_process:
        log.info("%s is already at step %d (--steps %d): nothing to do", ckpt_dir, start, opts.steps)
    inner.control.remove()
    if inner.injection is not None:
        inner.injection.remove()
    return read_manifest(ckpt_dir)
