"""Fine-tuning a Stable Diffusion inpainting pipeline on shards of masked images and their clothing
prompts (`reid finetune`).

The objective is diffusers' standard inpainting one: the image is VAE-encoded and noised at a random
timestep, and the 9-channel U-Net sees concat(noisy latents, the mask downsampled to the latent grid,
the latents of the image with the mask region blanked), conditioned on the prompt's text embedding;
the loss is the MSE against the noise (epsilon) or the velocity (v), whichever the scheduler's
`prediction_type` says. It is weighted towards the mask: weight 1 inside, `outside_weight` outside
(default 0.1). At inference (`reid inpaint`) every pixel outside the mask is composited back from the
source, so the model's output there is never seen except through the decoder's receptive field at the
mask's border; a small weight keeps the whole latent a consistent denoising target without spending
the model's capacity on reproducing what is given.

Two methods:
- `lora`: the pipeline is frozen and LoRA adapters (peft) are trained on the U-Net's attention
  projections. Only the adapter is saved, with the base's id; `reid inpaint --model DIR` loads the
  base, then the adapter, and fuses it.
- `full`: every weight of the U-Net is trained, the text encoder too (`train_text_encoder`), and first,
  for `vae_steps` steps, the VAE as an autoencoder (reconstruction MSE + a small KL term), after which
  its latent scaling factor is re-estimated as 1/std of the latents (SD's own recipe). That is what a
  tiny random-weight pipeline needs to become a working generator; a real SD model keeps its VAE
  (`vae_steps` 0). The whole pipeline folder is saved. `zero_snr` retrains it on a zero-terminal-SNR
  noise schedule and saves a DDIM scheduler on that schedule (`zero_snr_schedulers`): what a tiny
  pipeline needs to follow its prompts' colours at all.

Determinism: the data order depends on (seed, step) only; each sample's noise, timestep, flip and
caption dropout on (seed, step, key): neither depends on the batch composition or on the number of
processes. Checkpoints `checkpoint-N/` hold the trainable weights and the optimizer state
(safetensors, nothing pickled) and are written to a temporary folder then renamed; `resume` continues
from the newest one with exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from reidtools.errors import ReidError, SampleError
from reidtools.fileio import write_json_atomic
from reidtools.generate.training import batch_indices, mixed_precision, optimizer_state_from, optimizer_state_tensors
from reidtools.seeding import derive_seed, rng

log = logging.getLogger("reidtools")

FORMAT = "reid-finetune/1"
CONFIG = "finetune.json"         # the training config; written last, so its presence marks a complete save
LOSS_LOG = "loss.jsonl"
LORA_FILE = "pytorch_lora_weights.safetensors"   # diffusers' name: load_lora_weights finds it
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
METHODS = ("lora", "full")


@dataclass
class FinetuneOptions:
    model: str
    method: str = "lora"
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    rank: int = 8
    lora_targets: tuple = LORA_TARGETS
    size: tuple = (768, 256)                # (H, W), DLCR's generation size
    prompt_field: str = "clothes_prompt"
    mask_field: str = "mask.png"
    outside_weight: float = 0.1
    caption_dropout: float = 0.1            # empty prompts, so classifier-free guidance has an unconditional model
    prediction_type: str | None = None      # None: the scheduler's own (epsilon for SD 1.5, v for SD 2)
    zero_snr: bool = False                  # full only: Lin et al. 2024's zero-terminal-SNR schedule
    train_text_encoder: bool = True         # full only
    vae_steps: int = 0                      # full only
    vae_lr: float = 1e-3
    flip: bool = True
    weight_decay: float = 1e-2
    mixed_precision: str = "auto"
    save_every: int = 0                     # 0: only the final save
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.method not in METHODS:
            raise ReidError(f"--method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.method == "lora" and self.vae_steps:
            raise ReidError("--vae-steps trains the VAE, which only --method full does")
        if self.method == "lora" and self.zero_snr:
            raise ReidError("--zero-snr changes the noise schedule the whole U-Net was trained on, which only "
                            "--method full retrains")
        if not 0.0 <= self.outside_weight <= 1.0:
            raise ReidError(f"--outside-weight {self.outside_weight} is not in [0, 1]")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ReidError(f"--caption-dropout {self.caption_dropout} is not in [0, 1)")
        if self.prediction_type not in (None, "epsilon", "v_prediction"):
            raise ReidError(f"--prediction-type {self.prediction_type!r} is not epsilon or v_prediction")
        h, w = self.size
        if h % 8 or w % 8:
            raise ReidError(f"--size {h}x{w}: both sides must be multiples of 8")


# ----------------------------------------------------------------------------- data
@dataclass
class Example:
    key: str
    image: bytes
    mask: bytes
    prompt: str


def read_examples(shards: list[str], opts: FinetuneOptions) -> list[Example]:
    """Every sample with an image, a mask and a prompt; a sample lacking one is an error naming it."""
    from reidtools.shards import iter_samples, meta

    out, seen = [], set()
    for sample in iter_samples(shards):
        shard, key = sample.get("__shard__", "<memory>"), sample["__key__"]
        img = sample.get("png", sample.get("jpg"))
        if img is None:
            raise SampleError(shard, key, "no image (png or jpg)")
        m = sample.get(opts.mask_field)
        if m is None:
            raise SampleError(shard, key, f"no {opts.mask_field} (run `reid mask` first)")
        prompt = meta(sample).get(opts.prompt_field)
        if isinstance(prompt, list):
            from reidtools.generate.prompts import normalize_items

            prompt = normalize_items(prompt)
        if not isinstance(prompt, str) or not prompt.strip():
            raise SampleError(shard, key, f"metadata lacks a prompt in {opts.prompt_field!r} "
                                          "(run `reid caption` first, or pass --prompt-field)")
        if key in seen:
            raise SampleError(shard, key, "duplicate key (every training sample must have its own)")
        seen.add(key)
        out.append(Example(key, _raw(img), _raw(m), prompt))
    if not out:
        raise ReidError("no training samples in the input shards")
    return out


def _raw(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    buf = io.BytesIO()
    value.save(buf, format="PNG")
    return buf.getvalue()


def load_pair(ex: Example, size, flip: bool):
    """(image in [-1, 1] 3xHxW, mask in {0, 1} 1xHxW) at `size`; the mask thresholded at 128."""
    import torch
    from PIL import Image

    h, w = size
    img = Image.open(io.BytesIO(ex.image)).convert("RGB")
    msk = Image.open(io.BytesIO(ex.mask)).convert("L")
    if msk.size != img.size:
        raise ReidError(f"sample {ex.key}: mask is {msk.size[0]}x{msk.size[1]}, image {img.size[0]}x{img.size[1]}")
    img, msk = img.resize((w, h), Image.BICUBIC), msk.resize((w, h), Image.NEAREST)
    if flip:
        img, msk = img.transpose(Image.FLIP_LEFT_RIGHT), msk.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
    m = torch.from_numpy((np.asarray(msk) >= 128).astype(np.float32))[None]
    return x, m


# ----------------------------------------------------------------------------- the objective
def inpaint_loss(unet, vae, text_encoder, tokenizer, scheduler, pixels, masks, prompts, generators, *,
                 outside_weight: float, scaling_factor: float):
    """Diffusers' inpainting objective for one batch (see the module docstring); returns the loss.

    `generators` holds one CPU torch.Generator per row: its noise and timestep come from it alone."""
    import torch
    import torch.nn.functional as F

    dev, dtype = pixels.device, pixels.dtype
    masked = pixels * (masks < 0.5)          # as StableDiffusionInpaintPipeline blanks the mask region
    with torch.no_grad():
        both = vae.encode(torch.cat([pixels, masked])).latent_dist
        n = len(pixels)
        eps = torch.stack([torch.randn(both.mean.shape[1:], generator=g) for g in generators]).to(dev, dtype)
        latents = (both.mean[:n] + both.std[:n] * eps) * scaling_factor
        masked_latents = both.mean[n:] * scaling_factor
    lat_mask = F.interpolate(masks, size=latents.shape[-2:])      # the pipeline's own (nearest) resize
    noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in generators]).to(dev, dtype)
    T = scheduler.config.num_train_timesteps
    t = torch.cat([torch.randint(0, T, (1,), generator=g) for g in generators]).to(dev)
    noisy = scheduler.add_noise(latents, noise, t)
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(dev)
    cond = text_encoder(ids)[0]
    pred = unet(torch.cat([noisy, lat_mask.to(dtype), masked_latents], dim=1), t, cond).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    weight = lat_mask + outside_weight * (1.0 - lat_mask)
    err = (pred.float() - target.float()) ** 2 * weight.float()
    return err.sum() / (weight.float().sum() * err.shape[1]).clamp_min(1e-8)


def vae_loss(vae, pixels, generators, kl_weight: float = 1e-6):
    """Autoencoder loss of the VAE phase: reconstruction MSE + a small KL to N(0, 1)."""
    import torch
    import torch.nn.functional as F

    dist = vae.encode(pixels).latent_dist
    eps = torch.stack([torch.randn(dist.mean.shape[1:], generator=g) for g in generators]).to(pixels.device, pixels.dtype)
    z = dist.mean + dist.std * eps
    recon = vae.decode(z).sample
    kl = 0.5 * (dist.mean ** 2 + dist.var - 1.0 - dist.logvar).mean()
    return F.mse_loss(recon.float(), pixels.float()) + kl_weight * kl


def zero_snr_schedulers(config):
    """(training DDPM, saved DDIM) schedulers on the zero-terminal-SNR schedule.

    Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (WACV 2024): SD's
    schedule leaves a little signal at the last timestep (SNR 0.0047 for scaled_linear), so a model
    learns to read the image's mean colour out of the "noise"; sampling starts from pure noise, which
    holds none, and the colours come out random and blotchy. Their fix, all of which is applied: betas
    rescaled so that SNR(T) = 0 (§3.1), v-prediction (§3.2, epsilon is undefined at SNR 0), sampling
    from the last timestep, "trailing" (§3.3). A tiny pipeline's 16x8 latents make the leak large: a
    garment's mean over ~30 latent pixels survives at SNR ~0.14. The saved scheduler is DDIM (PNDM has
    no rescaling), with x0 clipping off."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if config.get("prediction_type") != "v_prediction":
        raise ReidError("--zero-snr needs --prediction-type v_prediction (epsilon is undefined at zero SNR, "
                        "Lin et al. 2024 §3.2)")
    common = dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")
    return DDPMScheduler.from_config(config, **common), DDIMScheduler.from_config(config, clip_sample=False, **common)


# ----------------------------------------------------------------------------- helpers
def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weight_files(folder: str) -> dict[str, str]:
    """relative path -> SHA-256 of every safetensors file under `folder` (checkpoints excluded)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("checkpoint-", ".")))
        for name in sorted(files):
            if name.endswith(".safetensors"):
                p = os.path.join(root, name)
                out[os.path.relpath(p, folder).replace(os.sep, "/")] = sha256(p)
    return out


def read_config(folder: str) -> dict | None:
    """The folder's finetune.json, or None when it is not a `reid finetune` output."""
    path = os.path.join(folder, CONFIG)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ReidError(f"{path}: unreadable ({exc})") from None
    if cfg.get("format") != FORMAT:
        raise ReidError(f"{path}: format {cfg.get('format')!r} is not {FORMAT}")
    return cfg


def verify(folder: str, cfg: dict) -> None:
    """Every weight file finetune.json lists exists and has its recorded SHA-256."""
    for rel, digest in cfg.get("files", {}).items():
        p = os.path.join(folder, rel)
        if not os.path.exists(p):
            raise ReidError(f"{folder}: {rel} is missing (an incomplete copy of a `reid finetune` output?)")
        if sha256(p) != digest:
            raise ReidError(f"{folder}: {rel} does not match the SHA-256 in {CONFIG} (modified or truncated)")


def _checkpoints(folder: str) -> list[tuple[int, str]]:
    out = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith("checkpoint-") and name[11:].isdigit():
                out.append((int(name[11:]), os.path.join(folder, name)))
    return sorted(out)


# ----------------------------------------------------------------------------- training
def finetune(shards: list[str], output: str, opts: FinetuneOptions, *, resume: bool = False,
             progress: bool = True, device: str | None = None) -> dict:
    """Train, write checkpoints and the final pipeline folder (or adapter) into `output`; returns the
    config written to finetune.json."""
    import torch
    from accelerate import Accelerator
    from diffusers import StableDiffusionInpaintPipeline
    from safetensors.torch import load_file
    from tqdm import tqdm

    from reidtools.generate.inpaint.pipeline import quiet_loading
    from reidtools.hub import resolve_model

    opts.check()
    ckpts = _checkpoints(output)
    if os.path.exists(os.path.join(output, CONFIG)) or ckpts:
        if not resume:
            raise ReidError(f"{output} already holds a `reid finetune` output; pass --resume to continue it "
                            "or choose a new -o")
    examples = read_examples(shards, opts)
    quiet_loading()
    path = resolve_model(opts.model)
    try:
        pipe = StableDiffusionInpaintPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ReidError(f"--model {opts.model!r}: not a Stable Diffusion inpainting pipeline ({exc})") from None
    if pipe.unet.config.in_channels != 9:
        raise ReidError(f"--model {opts.model!r}: U-Net has {pipe.unet.config.in_channels} input channels; "
                        "fine-tuning needs an inpainting (9-channel) U-Net")
    if read_config(path) is not None and read_config(path).get("method") == "lora":
        raise ReidError(f"--model {opts.model!r} is a LoRA adapter folder; fine-tune its base instead")
    unet, vae, text_encoder, tokenizer, scheduler = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler.from_config(scheduler.config)
    if opts.prediction_type:
        noise_sched.register_to_config(prediction_type=opts.prediction_type)
        scheduler.register_to_config(prediction_type=opts.prediction_type)   # saved: inference agrees
    if opts.zero_snr:
        noise_sched, pipe.scheduler = zero_snr_schedulers(scheduler.config)

    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(mixed_precision=mixed_precision(opts.mixed_precision, cpu=cpu), cpu=cpu)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    full = opts.method == "full"
    if full:
        unet.requires_grad_(True)
        if opts.train_text_encoder:
            text_encoder.requires_grad_(True)
        if opts.vae_steps:
            vae.requires_grad_(True)
    else:
        from peft import LoraConfig

        torch.manual_seed(derive_seed(opts.seed, "lora-init") % 2**63)   # LoRA A is drawn at random
        unet.add_adapter(LoraConfig(r=opts.rank, lora_alpha=opts.rank, init_lora_weights="gaussian",
                                    target_modules=list(opts.lora_targets)))
    trainable = {"unet": unet, "text_encoder": text_encoder, "vae": vae}
    for m in trainable.values():       # frozen weights may be half precision; trained ones stay fp32
        frozen = not any(p.requires_grad for p in m.parameters())
        m.to(acc.device, dtype=weight_dtype if frozen and not (full and m is vae and opts.vae_steps) else torch.float32)
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()

    start, phase_scale = 0, None
    config = {"format": FORMAT, "method": opts.method, "base": _base_id(opts.model),
              "options": {**asdict(opts), "size": list(opts.size), "lora_targets": list(opts.lora_targets)},
              "samples": len(examples), "prediction_type": noise_sched.config.prediction_type}
    if resume and ckpts:
        step0, ck = ckpts[-1]
        with open(os.path.join(ck, "state.json"), encoding="utf-8") as fh:
            state = json.load(fh)
        _check_resume(state.get("options", {}), config["options"])
        weights = load_file(os.path.join(ck, "weights.safetensors"))
        _load_trainable(trainable, weights, lora=not full)
        if state.get("scaling_factor") is not None:
            vae.register_to_config(scaling_factor=state["scaling_factor"])
        start, phase_scale = int(state["step"]), state.get("scaling_factor")
        log.info("resuming %s at step %d", output, start)
    else:
        state = None

    n, world, rank = len(examples), acc.num_processes, acc.process_index
    total = opts.vae_steps + opts.steps if full else opts.steps
    os.makedirs(output, exist_ok=True)
    log_path = os.path.join(output, LOSS_LOG)
    if acc.is_main_process:
        _truncate_log(log_path, start)
    started = time.perf_counter()     # `seconds` in loss.jsonl: wall time since this process started training
    bar = tqdm(total=total, initial=start, desc="finetune", unit="step", leave=False, dynamic_ncols=True,
               disable=not (progress and acc.is_main_process))

    def batch(step, phase):
        idx = batch_indices(n, step, opts.batch_size * world, derive_seed(opts.seed, phase))
        idx = idx[rank * opts.batch_size:(rank + 1) * opts.batch_size]
        pix, masks, prompts, gens = [], [], [], []
        for i in idx:
            ex = examples[i]
            r = rng(opts.seed, "finetune-sample", phase, step, ex.key)
            x, m = load_pair(ex, opts.size, opts.flip and r.random() < 0.5)
            pix.append(x)
            masks.append(m)
            prompts.append("" if r.random() < opts.caption_dropout else ex.prompt)
            gens.append(torch.Generator().manual_seed(derive_seed(opts.seed, "finetune-noise", phase, step, ex.key)))
        return (torch.stack(pix).to(acc.device, weight_dtype), torch.stack(masks).to(acc.device, weight_dtype),
                prompts, gens)

    def run_phase(phase, first, last, params, lr, step_fn, models):
        if first >= last:
            return
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=opts.weight_decay)
        prepared = acc.prepare(*models, optimizer)
        wrapped, optimizer = prepared[:-1], prepared[-1]
        if state is not None and state.get("phase") == phase and os.path.exists(os.path.join(ckpts[-1][1], "optimizer.safetensors")):
            optimizer.load_state_dict(optimizer_state_from(load_file(os.path.join(ckpts[-1][1], "optimizer.safetensors")),
                                                      state["optimizer"]))
            for g in optimizer.param_groups:
                g["lr"] = lr
        for m in wrapped:
            m.train()
        for step in range(first, last):
            pix, masks, prompts, gens = batch(step, phase)
            with acc.autocast():
                loss = step_fn(wrapped, pix, masks, prompts, gens)
            acc.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(acc.reduce(loss.detach(), reduction="mean"))
            bar.update(1)
            bar.set_postfix(phase=phase, loss=f"{value:.4f}")
            done = step + 1
            if acc.is_main_process:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": done, "phase": phase, "loss": round(value, 6), "lr": lr,
                                         "seconds": round(time.perf_counter() - started, 3)}) + "\n")
                if opts.save_every and done % opts.save_every == 0 and done < total:
                    _save_checkpoint(output, done, phase, trainable, acc, optimizer, config["options"],
                                     vae.config.scaling_factor if full and opts.vae_steps else None, lora=not full)
            acc.wait_for_everyone()
        for m in wrapped:
            m.eval()

    if full and opts.vae_steps:
        def vae_step(models, pix, masks, prompts, gens):
            return vae_loss(models[0], pix, gens)

        run_phase("vae", start, opts.vae_steps, [p for p in vae.parameters()], opts.vae_lr, vae_step, [vae])
        vae.requires_grad_(False)
        if phase_scale is None or start < opts.vae_steps:
            scale = _latent_scale(vae, examples, opts, acc.device)
            vae.register_to_config(scaling_factor=scale)
            log.info("VAE trained for %d steps; latent scaling factor %.4f", opts.vae_steps, scale)
    if full and opts.train_text_encoder:
        text_encoder.train()

    def unet_step(models, pix, masks, prompts, gens):
        return inpaint_loss(models[0], vae, models[1] if len(models) > 1 else text_encoder, tokenizer, noise_sched,
                            pix, masks, prompts, gens, outside_weight=opts.outside_weight,
                            scaling_factor=vae.config.scaling_factor)

    models = [unet] + ([text_encoder] if full and opts.train_text_encoder else [])
    params = [p for m in models for p in m.parameters() if p.requires_grad]
    offset = opts.vae_steps if full else 0
    # the U-Net phase's steps are numbered after the VAE phase's, so one counter names checkpoints
    run_phase("unet", max(start, offset), offset + opts.steps, params, opts.lr, unet_step, models)
    bar.close()

    if acc.is_main_process:
        config.update(steps=total, final_loss=_last_loss(log_path))
        pipe_unet = acc.unwrap_model(unet)
        _save_final(output, pipe, pipe_unet, config, lora=not full)
    acc.wait_for_everyone()
    return read_config(output)


def _base_id(model: str) -> str:
    """A local base folder is recorded as an absolute path, so the adapter folder loads from anywhere."""
    return os.path.abspath(model) if os.path.isdir(model) else model


def _latent_scale(vae, examples, opts, device) -> float:
    """1 / std of the trained VAE's latents over (at most) 64 training images: SD's recipe for the
    scaling factor that makes latents unit-variance, as the noise schedule assumes."""
    import torch

    xs = [load_pair(ex, opts.size, False)[0] for ex in examples[:64]]
    with torch.no_grad():
        z = vae.encode(torch.stack(xs).to(device, next(vae.parameters()).dtype)).latent_dist.mean
    return float(1.0 / z.float().std().clamp_min(1e-6))


def _trainable_state(trainable: dict, lora: bool) -> dict:
    from peft.utils import get_peft_model_state_dict

    if lora:
        return {f"unet.{k}": v for k, v in get_peft_model_state_dict(trainable["unet"]).items()}
    out = {}
    for name, m in trainable.items():
        if any(p.requires_grad for p in m.parameters()) or name == "vae":
            out.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    return out


def _load_trainable(trainable: dict, weights: dict, lora: bool) -> None:
    if lora:
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(trainable["unet"], {k[5:]: v for k, v in weights.items() if k.startswith("unet.")})
        return
    for name, m in trainable.items():
        part = {k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")}
        if part:
            missing, unexpected = m.load_state_dict(part, strict=False)
            if unexpected:
                raise ReidError(f"checkpoint weights do not match the model's {name} ({unexpected[0]}, ...)")


def _save_checkpoint(output, step, phase, trainable, acc, optimizer, options, scale, lora) -> None:
    from safetensors.torch import save_file

    tmp = tempfile.mkdtemp(prefix=f".checkpoint-{step}.", dir=output)
    state = {k: v.detach().float().cpu().contiguous() for k, v in _trainable_state(
        {k: acc.unwrap_model(m) for k, m in trainable.items()}, lora).items()}
    save_file(state, os.path.join(tmp, "weights.safetensors"))
    opt_t, opt_meta = optimizer_state_tensors(optimizer)
    save_file(opt_t, os.path.join(tmp, "optimizer.safetensors"))
    write_json_atomic(os.path.join(tmp, "state.json"), {"step": step, "phase": phase, "optimizer": opt_meta,
                                                        "scaling_factor": scale, "options": options})
    final = os.path.join(output, f"checkpoint-{step}")
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)


def _save_final(output, pipe, unet, config, lora: bool) -> None:
    """Build the complete save in a temporary folder inside `output`, move each part into place, and
    write finetune.json (with every weight file's SHA-256) last."""
    cfg_path = os.path.join(output, CONFIG)
    if os.path.exists(cfg_path):
        os.remove(cfg_path)            # from here until the end, the folder does not claim to be complete
    tmp = tempfile.mkdtemp(prefix=".final.", dir=output)
    try:
        if lora:
            from diffusers import StableDiffusionInpaintPipeline
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft.utils import get_peft_model_state_dict

            layers = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
            StableDiffusionInpaintPipeline.save_lora_weights(
                tmp, unet_lora_layers=convert_state_dict_to_diffusers(layers), safe_serialization=True)
            pipe.scheduler.save_pretrained(os.path.join(tmp, "scheduler"))   # carries a changed prediction_type
        else:
            pipe.unet = unet
            pipe.save_pretrained(tmp, safe_serialization=True)
        for name in sorted(os.listdir(tmp)):
            dst = os.path.join(output, name)
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            os.replace(os.path.join(tmp, name), dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    config["files"] = weight_files(output)
    write_json_atomic(cfg_path, config)


def _truncate_log(path: str, step: int) -> None:
    """Drop log rows after `step` (a resumed run rewrites them) or the whole log on a fresh start."""
    if not os.path.exists(path):
        return
    keep = []
    if step:
        with open(path, encoding="utf-8") as fh:
            keep = [ln for ln in fh if ln.strip() and json.loads(ln)["step"] <= step]
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(keep)


def _last_loss(path: str) -> float | None:
    last = None
    with open(path, encoding="utf-8") as fh:
        for ln in fh:
            if ln.strip():
                last = json.loads(ln)["loss"]
    return last


def _check_resume(old: dict, new: dict) -> None:
    for name in ("model", "method", "rank", "lora_targets", "size", "vae_steps", "train_text_encoder", "prediction_type",
                 "zero_snr"):
        if old.get(name) != new.get(name):
            raise ReidError(f"--resume: --{name.replace('_', '-')} {new.get(name)!r} differs from the checkpoint's "
                            f"{old.get(name)!r}")


# ----------------------------------------------------------------------------- loading
def load_finetuned(folder: str, cfg: dict, dtype):
    """The pipeline a `reid finetune` folder describes: the saved pipeline (full), or the base with
    the adapter loaded and fused (lora); its weight files checked against finetune.json first."""
    from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline

    from reidtools.hub import resolve_model

    verify(folder, cfg)
    if cfg["method"] == "full":
        return StableDiffusionInpaintPipeline.from_pretrained(folder, dtype=dtype, safety_checker=None,
                                                              requires_safety_checker=False)
    base = resolve_model(cfg["base"])
    pipe = StableDiffusionInpaintPipeline.from_pretrained(base, dtype=dtype, safety_checker=None,
                                                          requires_safety_checker=False)
    pipe.load_lora_weights(folder, weight_name=LORA_FILE)
    pipe.fuse_lora()
    pipe.unload_lora_weights()       # fused into the weights: no adapter layers left at inference
    sched_dir = os.path.join(folder, "scheduler")
    if os.path.isdir(sched_dir):
        sched_cfg = DDPMScheduler.load_config(sched_dir)
        pipe.scheduler = type(pipe.scheduler).from_config({**pipe.scheduler.config, **{
            k: v for k, v in sched_cfg.items() if k == "prediction_type"}})
    return pipe
