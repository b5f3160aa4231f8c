"""DCAC (seed 003): diffusion-assisted ReID training with a correlation-aware condition.

Three pieces, each usable on its own and composed by the trainer (`reid train --method dcac`):

- `PrototypeMemory`: the prototypical contrastive loss (eq. 6) over a memory bank M of identity
  centroids, re-initialised from feature centroids every epoch and updated with momentum gamma by the
  hardest sample of each identity in the batch (eq. 7).
- `IdCondition`: the diffusion condition built from the ReID model (eq. 12), with the ablation
  switches of Table 7 (`correlation`, `class`, `instance`, and the released code's `class-released`).
- `DiffusionBranch`: a frozen Stable Diffusion VAE + U-Net with trainable LoRA adapters on the
  attention q/k/v/out and feed-forward projections (eq. 9), giving the eps-MSE loss L_dif (eqs. 10-11).

The condition is the only path from L_dif to the ReID encoder: gradients flow through the U-Net's
cross-attention into c, through the softmax into the identity logits and so into the encoder.

Paper text vs released code (RikoLi/DCAC), as checked for each piece:
- features: PCL, the memory bank and the instance condition use L2-normalised BNNeck features, the ID
  loss and eq. 12 the classifier logits of the (unnormalised) BNNeck feature; as the released code.
- class-wise condition: the paper keeps p_y e_y (other probabilities zeroed); the released code divides
  by p_y again (so c = e_y and no gradient reaches the encoder). `class` is the paper's, `class-released`
  the code's.
- LoRA scale: eq. 9 uses 1/r; the released code's loralib alpha = 1 gives the same alpha/r = 1/r.
- ID prompts: N(0, 1) initialisation (released CONDITION_BOTTLENECK_INIT_STD 1.0).
- diffusion input: the un-augmented image resized to 128x128 (bicubic), scaled to [-1, 1]; latents
  are a VAE posterior sample x scaling factor (0.18215); t uniform over the training timesteps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidtools.errors import ReidError

CONDITIONS = ("correlation", "class", "class-released", "instance")
DEFAULT_DIFFUSION_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# eq. 9 is applied to these nn.Linear layers of every transformer block of the U-Net. paper (§4.2):
# attention query/key/value/output (self- and cross-attention) and "the linear transformation matrices
# in feedforward networks" (GEGLU in-projection and out-projection). released: loralib replaces only
# the GEGLU projection of SD's feed-forward, not its output Linear; that is 0.5 M fewer parameters on
# SD-1.5 and what Table 6's 89.01 M trainable parameters count.
LORA_TARGETS = {"paper": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
                "released": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj")}


# ----------------------------------------------------------------------------- eqs. 6-7
class PrototypeMemory:
    """Memory bank M (N x d, rows L2-normalised) and the prototypical contrastive loss.

    Eq. 6: L_pcl = -log( exp(z.M[y]/tau) / sum_k exp(z.M[k]/tau) ), z L2-normalised.
    Eq. 7: M[y] <- gamma M[y] + (1 - gamma) z_hard, z_hard the sample of identity y in the batch least
    similar to M[y] (Cluster Contrast's hard update), then M[y] renormalised (released code).
    """

    def __init__(self, centroids: torch.Tensor, *, momentum: float = 0.2, temperature: float = 0.01):
        if not 0.0 <= momentum <= 1.0:
            raise ReidError(f"--pcl-momentum {momentum}: must be in [0, 1]")
        if temperature <= 0:
            raise ReidError(f"--pcl-temperature {temperature}: must be positive")
        self.features = F.normalize(centroids.detach().float(), dim=1)
        self.momentum, self.temperature = momentum, temperature

    @classmethod
    def from_features(cls, features: torch.Tensor, labels: torch.Tensor, n_ids: int, **kw) -> "PrototypeMemory":
        """Centroid of each identity's L2-normalised features (re-initialisation at each epoch)."""
        sums, counts = centroid_sums(features, labels, n_ids)
        return cls.from_sums(sums, counts, **kw)

    @classmethod
    def from_sums(cls, sums: torch.Tensor, counts: torch.Tensor, **kw) -> "PrototypeMemory":
        """From per-identity feature sums and counts (summed over processes by the caller)."""
        missing = (counts == 0).nonzero().flatten()
        if len(missing):
            raise ReidError(f"PCL memory: identity label {int(missing[0])} has no training image")
        return cls(sums / counts.unsqueeze(1).to(sums.dtype), **kw)

    def to(self, device) -> "PrototypeMemory":
        self.features = self.features.to(device)
        return self

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z.float(), dim=1) @ self.features.t() / self.temperature

    def loss(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(z), labels)

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        z = F.normalize(z.detach().float(), dim=1)
        # a new tensor: a loss computed from the old one may not have been back-propagated yet
        features = self.features.clone()
        sim = (z * features[labels]).sum(dim=1)
        for y in labels.unique().tolist():
            idx = (labels == y).nonzero().flatten()
            hard = z[idx[sim[idx].argmin()]]
            row = self.momentum * features[y] + (1.0 - self.momentum) * hard
            features[y] = row / row.norm().clamp_min(1e-12)
        self.features = features


def centroid_sums(features: torch.Tensor, labels: torch.Tensor, n_ids: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-identity sums of L2-normalised features and counts (to reduce across processes)."""
    f = F.normalize(features.detach().float(), dim=1)
    sums = torch.zeros(n_ids, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=n_ids).to(f.device)
    return sums, counts


# ----------------------------------------------------------------------------- eq. 12 and Table 7
class IdCondition(nn.Module):
    """The cross-attention condition c (B x 1 x D, one token) from the ReID model's outputs.

    correlation (eq. 12): c = sum_j softmax(z.w_j / tau_c)_j e_j = softmax(logits / tau_c) @ E
    class (Table 7, paper): c = p_y e_y, the other probabilities set to 0
    class-released: c = p_y e_y / p_y = e_y (the released code's rescaled one-hot)
    instance (Table 7): c = normalize(z) @ E_f, E_f a learnable d x D map of the instance feature
    """

    def __init__(self, n_ids: int, feat_dim: int, dim: int = 768, *, mode: str = "correlation",
                 tau: float = 1.0, init_std: float = 1.0):
        super().__init__()
        if mode not in CONDITIONS:
            raise ReidError(f"--condition {mode!r} is not one of {', '.join(CONDITIONS)}")
        if tau <= 0:
            raise ReidError(f"--condition-tau {tau}: must be positive")
        self.mode, self.tau = mode, tau
        rows = feat_dim if mode == "instance" else n_ids
        self.prompts = nn.Parameter(init_std * torch.randn(rows, dim))

    def forward(self, logits: torch.Tensor, feat: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        prompts = self.prompts
        if self.mode == "instance":
            c = F.normalize(feat.float(), dim=1).to(prompts.dtype) @ prompts
        else:
            p = torch.softmax(logits.float() / self.tau, dim=1).to(prompts.dtype)
            if self.mode == "correlation":
                c = p @ prompts
            else:
                if labels is None:
                    raise ValueError("the class-wise condition needs the identity labels")
                p_y = p.gather(1, labels.unsqueeze(1))
                c = p_y * prompts[labels]
                if self.mode == "class-released":
                    c = c / p_y
        return c.unsqueeze(1)


# ----------------------------------------------------------------------------- eqs. 9-11
class DiffusionBranch(nn.Module):
    """Frozen VAE + U-Net with LoRA adapters; `forward(x, c)` is L_dif (eq. 11) for images x in [-1, 1]."""

    def __init__(self, vae, unet, scheduler, *, lora_rank: int = 8, lora_alpha: float = 1.0,
                 lora_targets: str = "paper"):
        super().__init__()
        from peft import LoraConfig

        if lora_rank < 1:
            raise ReidError(f"--lora-rank {lora_rank}: must be at least 1")
        if lora_targets not in LORA_TARGETS:
            raise ReidError(f"--lora-targets {lora_targets!r} is not one of {', '.join(LORA_TARGETS)}")
        self.vae, self.unet, self.scheduler = vae, unet, scheduler
        vae.requires_grad_(False)
        unet.requires_grad_(False)
        vae.eval()
        unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_alpha, init_lora_weights=True,
                                    target_modules=list(LORA_TARGETS[lora_targets])))
        self.scaling = float(getattr(vae.config, "scaling_factor", None) or 0.18215)
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ReidError(f"diffusion scheduler prediction type {self.prediction_type!r} is not supported")
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.detach().float().clone(), persistent=False)
        self.num_timesteps = int(scheduler.config.num_train_timesteps)

    @property
    def cross_attention_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()   # frozen: no dropout / norm statistics change
        return self

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.unet.named_parameters() if "lora_" in n]

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()

    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        return self.vae.encode(x.to(dtype)).latent_dist.sample() * self.scaling

    def forward(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        f0 = self.latents(x)
        noise = torch.randn(f0.shape, generator=generator, device=f0.device, dtype=f0.dtype)
        t = torch.randint(0, self.num_timesteps, (f0.shape[0],), generator=generator, device=f0.device)
        abar = self.alphas_cumprod.to(f0.device)[t].view(-1, 1, 1, 1).to(f0.dtype)
        ft = abar.sqrt() * f0 + (1.0 - abar).sqrt() * noise           # eq. 10
        target = noise if self.prediction_type == "epsilon" else abar.sqrt() * noise - (1.0 - abar).sqrt() * f0
        unet_dtype = next(self.unet.parameters()).dtype
        pred = self.unet(ft.to(unet_dtype), t, encoder_hidden_states=cond.to(unet_dtype)).sample
        return F.mse_loss(pred.float(), target.float())                 # eq. 11


def load_diffusion_branch(model: str = DEFAULT_DIFFUSION_MODEL, *, lora_rank: int = 8,
                          lora_alpha: float = 1.0, lora_targets: str = "paper") -> DiffusionBranch:
    """SD VAE, U-Net and noise schedule from a hub id or folder (diffusers layout), through resolve_model."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from reidtools.hub import resolve_model

    path = resolve_model(model)
    try:
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError, KeyError) as exc:
        raise ReidError(f"--diffusion-model {model}: cannot load a Stable Diffusion VAE/U-Net/scheduler "
                        f"from {path} ({str(exc).splitlines()[0]})") from None
    return DiffusionBranch(vae, unet, scheduler, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets)


class DcacHead(nn.Module):
    """The training-only half of DCAC: condition + diffusion branch (never saved into model.safetensors)."""

    def __init__(self, branch: DiffusionBranch, n_ids: int, feat_dim: int, *, condition: str = "correlation",
                 tau: float = 1.0):
        super().__init__()
        self.branch = branch
        self.condition = IdCondition(n_ids, feat_dim, branch.cross_attention_dim, mode=condition, tau=tau)

    def forward(self, x_dif: torch.Tensor, logits: torch.Tensor, feat: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.branch(x_dif, self.condition(logits, feat, labels), generator=generator)

    def trainable_state(self) -> dict:
        """LoRA weights and ID prompts: what a checkpoint must keep to resume."""
        return {k: v for k, v in self.state_dict().items() if "lora_" in k or k.startswith("condition.")}


def freeze_patch_projection(backbone) -> None:
    """Freeze a CLIP ViT's patch embedding convolution (DCAC / CLIP-ReID, after Chen et al. 2021)."""
    convs = [m for n, m in backbone.net.named_modules() if n.endswith("embeddings.patch_embedding")]
    if not convs:
        raise ReidError(f"--backbone {backbone.name}: DCAC needs a CLIP ViT backbone (no patch embedding to freeze)")
    for conv in convs:
        conv.requires_grad_(False)


def diffusion_input(batch_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1] (the VAE's input range; released mean/std 0.5)."""
    return batch_uint8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
