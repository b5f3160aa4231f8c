"""IDM-VTON-compatible virtual try-on on diffusers components (HSGL SHSG, seed 001 §3.2.1).

Facts read from github.com/yisol/IDM-VTON @ 0d5f3ec (`src/tryon_pipeline.py`, `src/unet_hacked_tryon.py`,
`src/unet_hacked_garmnet.py`, `src/attentionhacked_tryon.py`, `gradio_demo/app.py`, `train_xl.py`);
the code below is our own.

Published layout (`yisol/IDM-VTON`): unet, unet_encoder, vae, text_encoder, text_encoder_2,
tokenizer, tokenizer_2, image_encoder, scheduler (DDPMScheduler, as the demo loads it).

- Try-on U-Net (`unet`): an SDXL inpainting U-Net with 13 input channels = [noisy latent (4), mask (1),
  masked-person latent (4), pose latent (4)] (that order, `tryon_pipeline.py`). Its config says
  `encoder_hid_dim_type: "ip_image_proj"`, which diffusers does not know: we drop that setting, build
  the plain `UNet2DConditionModel`, install IDM-VTON's IP-Adapter attention processors on every attn2
  (`ipadapter.install_ip_attention`, keys `...attn2.processor.to_k_ip/to_v_ip.weight`) and load the
  `encoder_hid_proj.*` Resampler weights into diffusers' IPAdapterPlusImageProjection
  (`ipadapter.resampler_to_diffusers`). The Resampler's sizes are read from the checkpoint shapes,
  with IDM-VTON's fixed `dim_head=64`.
- Garment U-Net (`unet_encoder`): `train_xl.py` loads it from the SDXL *base* U-Net (4 input channels)
  and sets `addition_embed_type = None`; it is called with the garment latent, the step's timestep and
  the embeddings of "a photo of ..." and no added conditions. We load it with diffusers and set the
  same `addition_embed_type = None`. Its self-attention inputs feed the try-on U-Net's self-attention
  (`reidtools.generate.attention`), recomputed at every step (the pipeline calls it inside the loop), and
  with zero features for the unconditional half of classifier-free guidance.
- Text: both SDXL text encoders, penultimate hidden states concatenated, pooled output of the second;
  prompt "model is wearing <garment>", negative "monochrome, lowres, bad anatomy, worst quality, low
  quality" for the try-on U-Net; "a photo of <garment>" (no guidance) for the garment U-Net.
  add_time_ids = (H, W, 0, 0, H, W) (`requires_aesthetics_score=False`).
- Garment image for the IP-Adapter: the garment at 768x1024, CLIP image processor (resize + centre
  crop to the encoder's size), penultimate hidden states of the CLIP vision encoder; unconditional
  branch = the encoder on an all-zero image; the projected 16 tokens follow the text tokens.
- Sampling: strength 1 (pure noise start), 30 steps, guidance 2.0, 1024x768; VAE latents sampled
  from the posterior with each sample's generator.

Ours, not the original's: the result is resized back to the person's size and composited with the
mask (pixels outside the mask are the person's own); seeds per (person, garment) pair.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from reidtools.errors import ReidError
from reidtools.runtime import cpu_has_bf16_kernels

DEFAULT_MODEL = "yisol/IDM-VTON"
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_SIZE = 30, 2.0, (1024, 768)
DEFAULT_PROMPT = "model is wearing casual garment"
DEFAULT_GARMENT_PROMPT = "a photo of casual garment"
DEFAULT_NEGATIVE = "monochrome, lowres, bad anatomy, worst quality, low quality"
IN_CHANNELS = 13
IDM_DIM_HEAD = 64  # ip_adapter.resampler.Resampler(dim_head=64) in unet_hacked_tryon.py
PROJ_PREFIX = "encoder_hid_proj."


# ----------------------------------------------------------------------------- loading
def unet_weight_files(folder: str) -> list[str]:
    """The safetensors file(s) of a diffusers model folder (single file or sharded with an index)."""
    index = sorted(glob.glob(os.path.join(folder, "*.safetensors.index.json")))
    if index:
        with open(index[0], encoding="utf-8") as fh:
            return [os.path.join(folder, f) for f in sorted(set(json.load(fh)["weight_map"].values()))]
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if len(files) == 1:
        return files
    pickles = glob.glob(os.path.join(folder, "*.bin"))
    hint = " (only .bin pickles found: convert them to safetensors first)" if pickles else ""
    raise ReidError(f"{folder}: expected one .safetensors file or an index, found {len(files)}{hint}")


def split_published_state(state: dict) -> tuple[dict, dict]:
    """Published try-on U-Net state -> (U-Net state incl. IP processors, Resampler state in IDM names)."""
    proj = {k[len(PROJ_PREFIX):]: v for k, v in state.items() if k.startswith(PROJ_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(PROJ_PREFIX)}
    return rest, proj


def resampler_sizes(proj_state: dict) -> dict:
    """Resampler hyper-parameters read from its IDM-named weights (dim_head fixed at IDM-VTON's 64)."""
    lat = proj_state["latents"]
    depth = 1 + max(int(m.group(1)) for k in proj_state if (m := re.match(r"layers\.(\d+)\.", k)))
    inner = proj_state["layers.0.0.to_q.weight"].shape[0]
    if inner % IDM_DIM_HEAD:
        raise ReidError(f"Resampler inner width {inner} is not a multiple of dim_head {IDM_DIM_HEAD}")
    dim = lat.shape[2]
    return dict(embedding_dim=proj_state["proj_in.weight"].shape[1], output_dim=proj_state["proj_out.weight"].shape[0],
                dim=dim, depth=depth, dim_head=IDM_DIM_HEAD, heads=inner // IDM_DIM_HEAD, num_queries=lat.shape[1],
                ff_mult=proj_state["layers.0.1.1.weight"].shape[0] // dim)


def build_tryon_unet(config: dict, proj_state: dict | None):
    """Empty (meta) try-on U-Net from a published config, with IP processors and Resampler when the
    config asks for `ip_image_proj`. Returns (unet, projection or None, num image tokens)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from reidtools.generate.tryon.ipadapter import install_ip_attention, resampler

    cfg = {k: v for k, v in config.items() if k not in ("encoder_hid_dim_type", "encoder_hid_dim")}
    kind = config.get("encoder_hid_dim_type")
    if kind not in (None, "ip_image_proj"):
        raise ReidError(f"try-on U-Net: encoder_hid_dim_type {kind!r} is not IDM-VTON's ('ip_image_proj')")
    if cfg.get("in_channels") != IN_CHANNELS:
        raise ReidError(f"try-on U-Net has {cfg.get('in_channels')} input channels; IDM-VTON's has {IN_CHANNELS} "
                        "(latent, mask, masked latent, pose latent)")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(cfg)
    if kind is None:
        return unet, None, 0
    if not proj_state:
        raise ReidError("try-on U-Net config says ip_image_proj but the weights hold no encoder_hid_proj.* keys")
    sizes = resampler_sizes(proj_state)
    if sizes["embedding_dim"] != config.get("encoder_hid_dim", sizes["embedding_dim"]):
        raise ReidError(f"Resampler input {sizes['embedding_dim']} != encoder_hid_dim {config.get('encoder_hid_dim')}")
    tokens = sizes["num_queries"]
    with init_empty_weights():
        install_ip_attention(unet, num_tokens=tokens)
        proj = resampler(sizes.pop("embedding_dim"), sizes.pop("output_dim"), **sizes)
    return unet, proj, tokens


def load_tryon_unet(folder: str, dtype=None):
    """Try-on U-Net from `folder/unet` in the published layout (see module doc)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    from reidtools.generate.tryon.ipadapter import resampler_to_diffusers

    sub = os.path.join(folder, "unet")
    config = dict(UNet2DConditionModel.load_config(sub))
    state = {}
    for f in unet_weight_files(sub):
        state.update(load_file(f))
    rest, proj_state = split_published_state(state)
    unet, proj, tokens = build_tryon_unet(config, proj_state)
    _assign(unet, rest, "unet")
    if proj is not None:
        _assign(proj, resampler_to_diffusers(proj_state), "unet encoder_hid_proj")
    for module in (unet, proj):
        if module is not None and dtype is not None and next(module.parameters()).dtype != dtype:
            module.to(dtype)
    return unet.eval(), (proj.eval() if proj is not None else None), tokens


def _assign(module, state: dict, what: str) -> None:
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ReidError(f"{what}: checkpoint does not match the architecture ({len(missing)} missing, e.g. "
                        f"{missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]})")
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ReidError(f"{what}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    module.load_state_dict(state, strict=True, assign=True)


def load_garment_unet(folder: str, dtype=None):
    """Garment U-Net (`unet_encoder`) with the addition embedding switched off, as train_xl.py does."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet_encoder", torch_dtype=dtype)
    unet.register_to_config(addition_embed_type=None)
    return unet.eval()


# ----------------------------------------------------------------------------- pipeline
@dataclass
class TryOnSettings:
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    size: tuple[int, int] = DEFAULT_SIZE  # (H, W)
    prompt: str = DEFAULT_PROMPT
    garment_prompt: str = DEFAULT_GARMENT_PROMPT
    negative_prompt: str = DEFAULT_NEGATIVE
    ip_scale: float = 1.0


def _to_tensor(img: Image.Image, size: tuple[int, int], resample=Image.BICUBIC):
    import torch

    h, w = size
    arr = np.asarray(img.convert("RGB").resize((w, h), resample), np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0


def composite(person: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """`generated` resized to the person's size where mask >= 128, the person elsewhere (exactly)."""
    gen = np.asarray(generated.convert("RGB").resize(person.size, Image.BICUBIC))
    m = np.asarray(mask.convert("L").resize(person.size, Image.NEAREST)) >= 128
    out = np.where(m[..., None], gen, np.asarray(person.convert("RGB")))
    return Image.fromarray(out.astype(np.uint8), "RGB")


class TryOnPipeline:
    """Garment U-Net -> reference attention -> 13-channel try-on U-Net, SDXL text + IP-Adapter."""

    MODELS = ("text_encoder", "text_encoder_2", "image_encoder", "unet_encoder", "unet", "image_proj", "vae")

    def __init__(self, *, unet, unet_encoder, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2,
                 image_encoder, scheduler, image_proj=None, num_image_tokens=0, device="cpu", dtype=None,
                 offload=False):
        import torch

        from reidtools.generate.attention import ReferenceAttentionControl

        self.device, self.dtype = torch.device(device), dtype or torch.float32
        self.unet, self.unet_encoder, self.vae = unet, unet_encoder, vae
        self.text_encoder, self.text_encoder_2 = text_encoder, text_encoder_2
        self.tokenizer, self.tokenizer_2, self.scheduler = tokenizer, tokenizer_2, scheduler
        self.image_encoder, self.image_proj, self.num_image_tokens = image_encoder, image_proj, num_image_tokens
        if (image_proj is None) != (image_encoder is None):
            raise ReidError("the IP-Adapter needs both the image encoder and the U-Net's encoder_hid_proj")
        # latent side must survive the U-Net's downsamplings
        self.size_multiple = 2 ** (len(vae.config.block_out_channels) - 1 + len(unet.config.block_out_channels) - 1)
        # the SDXL VAE overflows in fp16 (its config says force_upcast): run it in fp32, as diffusers does.
        # A CPU without bf16 kernels (no AVX512-BF16/AMX) runs a bf16 convolution ~1000x slower than an
        # fp32 one (measured on AVX2: 0.03 vs 29 GFLOPS); the VAE is 84 M parameters of convolutions at
        # full image size, so there it runs in fp32 too (+0.3 GB)
        upcast = (self.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)) or (
            self.dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_has_bf16_kernels())
        self.vae_dtype = torch.float32 if upcast else self.dtype
        self.hooks, self._prompts = {}, {}
        for name in self.MODELS:
            module = getattr(self, name)
            if module is None:
                continue
            module.requires_grad_(False).eval()
            want = self.vae_dtype if name == "vae" else self.dtype
            if next(module.parameters()).dtype != want:
                module.to(want)
        if offload:
            self._install_offload()
        else:
            for name in self.MODELS:
                if getattr(self, name) is not None:
                    getattr(self, name).to(self.device)
        from reidtools.generate.attention import self_attention_names

        # IDM-VTON hands the garment features over layer by layer: both U-Nets need the same layers
        main, ref = self_attention_names(unet), self_attention_names(unet_encoder)
        if set(main) != set(ref):
            odd = sorted(set(main) ^ set(ref))
            raise ReidError(f"garment U-Net (unet_encoder) and try-on U-Net differ in their self-attention layers "
                            f"({len(odd)} unmatched, e.g. {odd[0]})")
        self.refattn = ReferenceAttentionControl(unet, unet_encoder)
        self.image_processor = None
        if image_encoder is not None:
            try:   # the PIL back end: the default one wants torchvision, which reidtools does not use
                from transformers import CLIPImageProcessorPil as CLIPImageProcessor
            except ImportError:
                from transformers import CLIPImageProcessor

            s = image_encoder.config.image_size
            # IDM-VTON passes CLIPImageProcessor() (224 px): sized to the encoder, that is the same
            self.image_processor = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})

    def precision(self) -> dict:
        """`dtype` the U-Nets run in, and `dtypes` per model when they differ (runtime.dtype_record)."""
        from reidtools.runtime import dtype_record

        return dtype_record({name: getattr(self, name) for name in self.MODELS}, "unet")

    def _install_offload(self) -> None:
        """Model-level CPU offload with accelerate hooks: a model moves to the device when it runs and
        every other model goes back to the CPU first, so at most one model is on the device (the
        two U-Nets alternate at every step, so each step moves both)."""
        from accelerate import cpu_offload_with_hook

        for name in self.MODELS:
            module = getattr(self, name)
            if module is not None:
                module.to("cpu")
                _, self.hooks[name] = cpu_offload_with_hook(module, self.device)

    def _use(self, name: str):
        for other, hook in self.hooks.items():
            if other != name:
                hook.offload()
        return getattr(self, name)

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, device="cpu", dtype=None, offload=False,
                        ip_adapter: bool = True) -> "TryOnPipeline":
        """Load the published layout from a hub id (local cache) or folder, through reidtools.hub."""
        from diffusers import AutoencoderKL, DDPMScheduler
        from transformers import (AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection,
                                  CLIPVisionModelWithProjection)

        from reidtools.hub import resolve_model

        root = resolve_model(model, "unet")
        for sub in ("unet", "unet_encoder", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                    "scheduler") + (("image_encoder",) if ip_adapter else ()):
            if not os.path.isdir(os.path.join(root, sub)):
                raise ReidError(f"--model {model!r}: no {sub}/ folder (IDM-VTON layout: unet, unet_encoder, vae, "
                                "text_encoder(_2), tokenizer(_2), image_encoder, scheduler)")
        unet, proj, tokens = load_tryon_unet(root, dtype)
        image_encoder = None
        if proj is not None and ip_adapter:
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(root, subfolder="image_encoder",
                                                                          torch_dtype=dtype)
        elif proj is not None:
            from reidtools.generate.tryon.ipadapter import DecoupledIPAttention

            proj = None
            for p in unet.attn_processors.values():
                if isinstance(p, DecoupledIPAttention):
                    p.scale = 0.0   # --no-ip-adapter: the image tokens are zeros and weigh nothing
        return cls(unet=unet, unet_encoder=load_garment_unet(root, dtype),
                   vae=AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype),
                   text_encoder=CLIPTextModel.from_pretrained(root, subfolder="text_encoder", torch_dtype=dtype),
                   text_encoder_2=CLIPTextModelWithProjection.from_pretrained(root, subfolder="text_encoder_2",
                                                                              torch_dtype=dtype),
                   tokenizer=AutoTokenizer.from_pretrained(root, subfolder="tokenizer", use_fast=False),
                   tokenizer_2=AutoTokenizer.from_pretrained(root, subfolder="tokenizer_2", use_fast=False),
                   image_encoder=image_encoder, scheduler=DDPMScheduler.from_pretrained(root, subfolder="scheduler"),
                   image_proj=proj, num_image_tokens=tokens, device=device, dtype=dtype, offload=offload)

    # ---- conditioning
    def encode_prompt(self, text: str):
        """SDXL: (1, L, C1 + C2) penultimate hidden states of both encoders, (1, P) pooled of the second."""
        import torch

        if text in self._prompts:   # the same few prompts for every pair
            return self._prompts[text]
        states, pooled = [], None
        for tok, name in ((self.tokenizer, "text_encoder"), (self.tokenizer_2, "text_encoder_2")):
            ids = tok([text], padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            enc = self._use(name)
            out = enc(ids.to(self.device), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]
        self._prompts[text] = torch.cat(states, dim=-1).to(self.dtype), pooled.to(self.dtype)
        return self._prompts[text]

    def image_tokens(self, garment: Image.Image, size: tuple[int, int], cfg: bool):
        """Projected IP-Adapter tokens ([uncond;] cond), or None without the IP-Adapter."""
        import torch

        if self.image_proj is None:
            return None
        h, w = size
        pixels = self.image_processor(garment.convert("RGB").resize((w, h)), return_tensors="pt").pixel_values
        pixels = pixels.to(self.device, self.dtype)
        enc = self._use("image_encoder")
        cond = enc(pixels, output_hidden_states=True).hidden_states[-2]
        feats = torch.cat([enc(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2], cond]) if cfg else cond
        return self._use("image_proj")(feats).to(self.dtype)

    def _encode(self, pixels, generator):
        vae = self._use("vae")
        latent = vae.encode(pixels.to(self.device, self.vae_dtype)).latent_dist.sample(generator=generator)
        return (latent * vae.config.scaling_factor).to(self.dtype)

    @property
    def ip_processors(self):
        from reidtools.generate.tryon.ipadapter import DecoupledIPAttention

        return [p for p in self.unet.attn_processors.values() if isinstance(p, DecoupledIPAttention)]

    def __call__(self, person: Image.Image, mask: Image.Image, pose: Image.Image, garment: Image.Image, seed: int,
                 settings: TryOnSettings | None = None) -> Image.Image:
        """One try-on at settings.size, returned at the person's size and composited with `mask`."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        s = settings or TryOnSettings()
        h, w = s.size
        if h % self.size_multiple or w % self.size_multiple:
            raise ReidError(f"--size {h}x{w}: height and width must be multiples of {self.size_multiple}")
        dev, dt = self.device, self.dtype
        cfg = s.guidance > 1.0
        gen = torch.Generator().manual_seed(int(seed))
        for p in self.ip_processors:
            if self.image_proj is not None:
                p.scale = s.ip_scale
        with torch.no_grad():
            pe, pooled = self.encode_prompt(s.prompt)
            ge, _ = self.encode_prompt(s.garment_prompt)
            if cfg:
                ne, npooled = self.encode_prompt(s.negative_prompt)
                pe, pooled = torch.cat([ne, pe]), torch.cat([npooled, pooled])
            tokens = self.image_tokens(garment, s.size, cfg)
            context = pe if tokens is None else torch.cat([pe, tokens], dim=1)
            if tokens is None and self.num_image_tokens:   # IP processors present, adapter off
                context = torch.cat([pe, pe.new_zeros(pe.shape[0], self.num_image_tokens, pe.shape[-1])], dim=1)
            time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=dt, device=dev).repeat(pe.shape[0], 1)
            added = {"text_embeds": pooled, "time_ids": time_ids}

            pix = _to_tensor(person, s.size)
            m = torch.from_numpy((np.asarray(mask.convert("L").resize((w, h), Image.NEAREST)) >= 128)
                                 .astype(np.float32))[None, None]
            masked_latent = self._encode(pix * (m < 0.5), gen)
            pose_latent = self._encode(_to_tensor(pose, s.size), gen)
            cloth_latent = self._encode(_to_tensor(garment, s.size), gen)
            m_lat = torch.nn.functional.interpolate(m, size=masked_latent.shape[-2:]).to(dev, dt)
            cond = torch.cat([m_lat, masked_latent, pose_latent], dim=1)
            if cfg:
                cond = torch.cat([cond, cond])
            latents = randn_tensor(masked_latent.shape, generator=gen, device=dev, dtype=dt)
            self.scheduler.set_timesteps(s.steps, device=dev)
            latents = latents * self.scheduler.init_noise_sigma
            for t in self.scheduler.timesteps:
                self.refattn.clear()
                with self.refattn.write():
                    self._use("unet_encoder")(cloth_latent, t, encoder_hidden_states=ge, return_dict=False)
                if cfg:
                    self.refattn.zero_unconditional()
                x = torch.cat([latents] * 2) if cfg else latents
                x = torch.cat([self.scheduler.scale_model_input(x, t), cond], dim=1)
                with self.refattn.read():
                    noise = self._use("unet")(x, t, encoder_hidden_states=context, added_cond_kwargs=added,
                                              return_dict=False)[0]
                if cfg:
                    unc, con = noise.chunk(2)
                    noise = unc + s.guidance * (con - unc)
                latents = self.scheduler.step(noise, t, latents, generator=gen, return_dict=False)[0]
            self.refattn.clear()
            vae = self._use("vae")
            decoded = vae.decode((latents / vae.config.scaling_factor).to(self.vae_dtype)).sample
        arr = ((decoded[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        return composite(person, Image.fromarray(arr, "RGB"), mask)
