"""Discriminator guidance (DLCR supplementary §12, eqs. 5-9; Kim et al. 2023).

A small time-conditioned classifier d_phi(x_t, t) on Stable Diffusion VAE latents tells real training
images (label 1) from generated ones (label 0) at every noise level (BCE, eq. 5). During sampling its
log-odds gradient becomes a noise correction (eqs. 6-8):

    eps_phi = -sqrt(1 - alphabar_t) * grad_x log(d / (1 - d)),   eps = eps_theta + w * eps_phi

and the sampler's own update turns the corrected eps into the corrected mean (eq. 9). d is clipped
to [1e-5, 1 - 1e-5] as in the released code, so a saturated discriminator contributes no gradient.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass
class DiscriminatorConfig:
    in_channels: int = 4
    width: int = 64
    depth: int = 3
    time_dim: int = 128
    num_train_timesteps: int = 1000
    # how the training latents were made (recorded so guidance uses the same space)
    vae: str | None = None
    size: tuple[int, int] | None = None


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, time_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(min(8, cout), cout)
        self.time = nn.Linear(time_dim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = h + self.time(temb)[:, :, None, None]
        return F.silu(self.norm2(self.conv2(h)))


class LatentDiscriminator(nn.Module):
    """d_phi(x_t, t): logits (B,) that x_t comes from the real data. GroupNorm only (no batch
    statistics), so each sample's logit, and hence its guidance gradient, depends on that sample alone."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        w, td = config.width, config.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(td, td), nn.SiLU(), nn.Linear(td, td))
        self.stem = nn.Conv2d(config.in_channels, w, 3, padding=1)
        chans = [w * min(2 ** i, 4) for i in range(config.depth + 1)]
        self.blocks = nn.ModuleList(_Block(chans[i], chans[i + 1], td) for i in range(config.depth))
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.config.time_dim))
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.head(h.mean(dim=(2, 3))).squeeze(1)

    # -- the toolkit's save/load convention (reidtools.pretrained): config.json + safetensors + SHA-256
    FORMAT = "reid-discriminator/1"

    def save_pretrained(self, folder: str) -> dict:
        from reidtools.pretrained import write_artifact

        return write_artifact(folder, {"format": self.FORMAT, **asdict(self.config)}, {WEIGHTS_NAME: self.state_dict()},
                              name=CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, folder: str) -> "LatentDiscriminator":
        from reidtools.pretrained import load_tensors, read_config

        raw = read_config(folder, name=CONFIG_NAME, what="a discriminator folder (made by `reid discriminator`)")
        if raw.get("format", cls.FORMAT) != cls.FORMAT:
            raise ReidError(f"{folder}: format {raw.get('format')!r} is not {cls.FORMAT}")
        known = DiscriminatorConfig.__dataclass_fields__
        model = cls(DiscriminatorConfig(**{k: v for k, v in raw.items() if k in known}))
        try:
            model.load_state_dict(load_tensors(folder, WEIGHTS_NAME, raw))
        except RuntimeError as exc:
            raise ReidError(f"{folder}: weights do not match its config ({str(exc).splitlines()[0]})") from None
        return model.eval()


# ----------------------------------------------------------------------------- guidance (eqs. 6-8)
def guidance_eps(disc: nn.Module, x_t: torch.Tensor, t: torch.Tensor | float, alphabar_t: float | torch.Tensor,
                 weight: float, clip: float = 1e-5) -> torch.Tensor:
    """w * eps_phi = -w * sqrt(1 - alphabar_t) * grad_x log(d / (1 - d)), d = clip(sigmoid(disc(x_t, t)))."""
    dtype = x_t.dtype
    with torch.enable_grad():
        x = x_t.detach().float().requires_grad_(True)
        tt = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        d = torch.sigmoid(disc(x, tt).float()).clamp(clip, 1.0 - clip)
        log_ratio = torch.log(d) - torch.log1p(-d)
        # samples are independent (no batch statistics), so the sum's gradient is per-sample
        (grad,) = torch.autograd.grad(log_ratio.sum(), x)
    sigma = torch.sqrt(1.0 - torch.as_tensor(alphabar_t, dtype=torch.float32, device=x.device))
    return (-sigma * grad * weight).to(dtype)


class GuidanceHook:
    """Adds w * eps_phi to the U-Net's noise prediction at steps with t >= t_min (DLCR §12.1: every step,
    t_min = 0; the released code skips t <= 200, i.e. t_min = 201).

    Registered as a forward hook on the U-Net, so it enters any diffusers sampler: the scheduler
    step sees eps_theta + w * eps_phi (eq. 8). With classifier-free guidance the U-Net sees [uncond;
    cond] copies of x_t; the same term added to both halves passes through
    uncond + s * (cond - uncond) unchanged. The first `in_channels` input channels are the
    (scheduler-scaled) noisy latents x_t; inpainting U-Nets append mask and masked-image channels.
    """

    def __init__(self, disc: nn.Module, alphas_cumprod: torch.Tensor, weight: float, t_min: float = 0.0,
                 clip: float = 1e-5):
        self.disc, self.weight, self.t_min, self.clip = disc, float(weight), float(t_min), clip
        self.alphas_cumprod = alphas_cumprod.detach().float().cpu()
        self.in_channels = disc.config.in_channels
        self.applied_steps = 0

    def alphabar(self, t: float) -> float:
        idx = min(max(int(round(t)), 0), len(self.alphas_cumprod) - 1)
        return float(self.alphas_cumprod[idx])

    def __call__(self, module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        t_val = float(torch.as_tensor(t).reshape(-1)[0])
        if t_val < self.t_min:
            return output
        x_t = sample[:, : self.in_channels]
        eps = guidance_eps(self.disc, x_t, t_val, self.alphabar(t_val), self.weight, self.clip)
        self.applied_steps += 1
        if isinstance(output, tuple):
            return (output[0] + eps.to(output[0].dtype),) + tuple(output[1:])
        output.sample = output.sample + eps.to(output.sample.dtype)
        return output


# ----------------------------------------------------------------------------- training (eq. 5)
def train_discriminator(real: torch.Tensor, fake: torch.Tensor, alphas_cumprod: torch.Tensor, *,
                        config: DiscriminatorConfig, steps: int = 1000, batch_size: int = 32, lr: float = 1e-4,
                        seed: int = 0, device: str | torch.device = "cpu", progress: bool = False) -> tuple[LatentDiscriminator, list[dict]]:
    """Fit d_phi on clean latents of real (label 1) and generated (label 0) images.

    Each step draws t ~ U{0..T-1} per example and noises x_t = sqrt(ab_t) x + sqrt(1-ab_t) eps, then
    minimises -[log d(x_t, t) + log(1 - d(x^_t, t))] (eq. 5) on a balanced real/fake batch.
    """
    from tqdm import tqdm

    if len(real) == 0 or len(fake) == 0:
        raise ReidError("discriminator training needs both real and generated images")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LatentDiscriminator(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    ab = alphas_cumprod.float().to(device)
    half = max(1, batch_size // 2)
    log_rows = []
    for step in tqdm(range(steps), desc="discriminator", disable=not progress, leave=False):
        ri = torch.randint(len(real), (half,), generator=g)
        fi = torch.randint(len(fake), (half,), generator=g)
        x0 = torch.cat([real[ri], fake[fi]]).to(device).float()
        labels = torch.cat([torch.ones(half), torch.zeros(half)]).to(device)
        t = torch.randint(config.num_train_timesteps, (2 * half,), generator=g).to(device)
        noise = torch.randn(x0.shape, generator=g).to(device)
        a = ab[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        logits = model(x_t, t)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            acc = ((logits > 0).float() == labels).float().mean().item()
            log_rows.append({"step": step, "loss": round(loss.item(), 6), "accuracy": round(acc, 4)})
            log.debug("discriminator step %d loss %.4f acc %.3f", step, loss.item(), acc)
    return model.eval(), log_rows


def encode_images(vae, images, size: tuple[int, int], *, batch_size: int = 16, device="cpu", dtype=None) -> torch.Tensor:
    """Scaled VAE latents (the space the U-Net denoises) of PIL images resized to size (H, W); the
    posterior mean, so the training set is deterministic."""
    import numpy as np
    from PIL import Image

    h, w = size
    dtype = dtype or next(vae.parameters()).dtype
    scale = getattr(vae.config, "scaling_factor", 0.18215)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            arr = np.stack([np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC), dtype=np.float32)
                            for im in images[i:i + batch_size]])
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).div(127.5).sub(1.0).to(device=device, dtype=dtype)
            out.append((vae.encode(x).latent_dist.mean * scale).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


# ----------------------------------------------------------------------------- `reid discriminator`
@dataclass
class DiscriminatorRun:
    real: tuple                          # shards of real training images (label 1)
    fake: tuple                          # shards of generated images (label 0)
    output: str                          # the discriminator folder
    model: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"   # whose VAE makes the latents
    size: tuple[int, int] = (768, 256)
    dtype: str = "fp16"
    device: str | None = None
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-4
    width: int = 64
    max_images: int | None = None
    encode_batch: int = 8
    seed: int = 0


def run_discriminator(run: DiscriminatorRun, *, progress: bool = True) -> LatentDiscriminator:
    """Encode both sides with the model's VAE, train d_phi (eq. 5), save it with its training log."""
    from diffusers import AutoencoderKL, DDPMScheduler

    from reidtools.fileio import atomic_write
    from reidtools.generate.inpaint.pipeline import quiet_loading
    from reidtools.hub import resolve_model
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.shards import expand_inputs, image, iter_samples

    if not run.fake:
        raise ReidError("--fake: give the generated shards (INPUTS are the real ones)")
    quiet_loading()
    path = resolve_model(run.model)
    dev = best_device(run.device)
    tdtype = torch_dtype(run.dtype, dev)
    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", dtype=tdtype).to(dev).eval()
        sched = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ReidError(f"--model {run.model!r}: cannot load its vae/scheduler ({exc})") from None

    def pictures(inputs):
        out = []
        for sample in iter_samples(expand_inputs(list(inputs))):
            out.append(image(sample))
            if run.max_images and len(out) >= run.max_images:
                break
        return out

    real_imgs, fake_imgs = pictures(run.real), pictures(run.fake)
    log.info("encoding %d real and %d generated images", len(real_imgs), len(fake_imgs))
    real = encode_images(vae, real_imgs, run.size, batch_size=run.encode_batch, device=dev, dtype=tdtype)
    fake = encode_images(vae, fake_imgs, run.size, batch_size=run.encode_batch, device=dev, dtype=tdtype)
    cfg = DiscriminatorConfig(in_channels=real.shape[1] if len(real) else 4, width=run.width,
                              num_train_timesteps=sched.config.num_train_timesteps, vae=run.model, size=list(run.size))
    disc, rows = train_discriminator(real, fake, sched.alphas_cumprod, config=cfg, steps=run.steps,
                                     batch_size=run.batch_size, lr=run.lr, seed=run.seed, device=dev, progress=progress)
    disc.save_pretrained(run.output)

    def write_log(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)

    atomic_write(os.path.join(run.output, "train_log.jsonl"), write_log)
    log.info("discriminator saved to %s (final loss %.4f, accuracy %.3f)", run.output, rows[-1]["loss"],
             rows[-1]["accuracy"])
    return disc

