"""The Pose-dIVE network (seed 004 §B): a denoising U-Net and a reference U-Net of the same
architecture, both from the same SD weights; at every self-attention layer the denoising U-Net attends
over its own and the reference tokens (`reidtools.generate.attention`, shared with `reid tryon`);
cross-attention gets the reference's CLIP image embedding (`ImageEncoder`, through a linear projection
when widths differ); spatial conditions enter through one zero-initialised pose guider each, added
after conv_in (`reidtools.generate.posegen.guider`).

This module imports torch at the top; it is only imported when a command runs.
"""

from __future__ import annotations

import numpy as np
import torch

from reidtools.errors import ReidError


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
        p = self.model.parameters().__next__()
        x = self.processor(images=list(images), return_tensors="pt").pixel_values.to(p.device, p.dtype)
        with torch.no_grad():
            return self.model(pixel_values=x).image_embeds.unsqueeze(1)


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
    from reidtools.generate.posegen.guider import GuiderSet

    if vae is not None and 2 ** (len(guider_channels) - 1) != vae_factor(vae):
        raise ReidError(f"--guider-channels {','.join(map(str, guider_channels))}: {len(guider_channels) - 1} "
                        f"downsamplings, but the VAE downsamples by {vae_factor(vae)} "
                        f"(give {int(np.log2(vae_factor(vae))) + 1} widths)")
    out = unet.config.block_out_channels[0] if inject == "conv_in" else unet.config.in_channels
    guiders = GuiderSet(list(conditions), out, tuple(guider_channels))
    cad = unet.config.cross_attention_dim
    proj = None if embed_dim == cad else torch.nn.Linear(embed_dim, cad)
    return PoseDiveNet(unet, reference_unet, guiders, proj, inject, train_reference)
