"""IDM-VTON's IP-Adapter-Plus garment projection ("Resampler") on diffusers' IPAdapterPlusImageProjection.

A building block for an IDM-VTON-compatible `reid tryon` (not a command yet). Facts read from
github.com/yisol/IDM-VTON (HEAD 0d5f3ec): `src/unet_hacked_tryon.py` builds, for the try-on U-Net's
`encoder_hid_dim_type == "ip_image_proj"`, `ip_adapter.resampler.Resampler(dim=1280, depth=4,
dim_head=64, heads=20, num_queries=16, embedding_dim=encoder_hid_dim, output_dim=cross_attention_dim,
ff_mult=4)` as `unet.encoder_hid_proj`; `src/tryon_pipeline.py` feeds it the penultimate hidden states
of the CLIP image encoder (`hidden_states[-2]`; zeros image for the unconditional branch) and
concatenates the 16 tokens after the text tokens. `ip_adapter/resampler.py` defines the names:

    latents (1, Q, D); proj_in (E -> D, bias); proj_out (D -> O, bias); norm_out (O)
    layers.{i}.0 = PerceiverAttention: norm1, norm2 (D), to_q (D -> H*d), to_kv (D -> 2*H*d), to_out (H*d -> D), no biases
    layers.{i}.1 = FeedForward: .0 LayerNorm(D), .1 Linear(D -> 4D, no bias), .2 GELU, .3 Linear(4D -> D, no bias)

diffusers' IPAdapterPlusImageProjection computes the same function (keys/values over
concat(norm1(x), norm2(latents)), scale d^-1/2) under other names; `resampler_to_diffusers` renames and
splits `to_kv` into `attn.to_k` / `attn.to_v`.
"""

from __future__ import annotations

import re

import torch

IDM_RESAMPLER = dict(dim=1280, depth=4, dim_head=64, heads=20, num_queries=16, ff_mult=4)


def resampler(embedding_dim: int, output_dim: int, *, dim: int = 1280, depth: int = 4, dim_head: int = 64,
              heads: int = 20, num_queries: int = 16, ff_mult: int = 4):
    """A diffusers IPAdapterPlusImageProjection with IDM-VTON's Resampler hyper-parameters by default."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    return IPAdapterPlusImageProjection(embed_dims=embedding_dim, output_dims=output_dim, hidden_dims=dim,
                                        depth=depth, dim_head=dim_head, heads=heads, num_queries=num_queries,
                                        ffn_ratio=ff_mult)


def resampler_shapes(embedding_dim: int, output_dim: int, *, dim: int = 1280, depth: int = 4, dim_head: int = 64,
                     heads: int = 20, num_queries: int = 16, ff_mult: int = 4) -> dict[str, tuple]:
    """Every key of IDM-VTON's Resampler (names of ip_adapter/resampler.py) with its shape."""
    inner = dim_head * heads
    out = {"latents": (1, num_queries, dim), "proj_in.weight": (dim, embedding_dim), "proj_in.bias": (dim,),
           "proj_out.weight": (output_dim, dim), "proj_out.bias": (output_dim,),
           "norm_out.weight": (output_dim,), "norm_out.bias": (output_dim,)}
    for i in range(depth):
        a, f = f"layers.{i}.0.", f"layers.{i}.1."
        out.update({a + "norm1.weight": (dim,), a + "norm1.bias": (dim,), a + "norm2.weight": (dim,),
                    a + "norm2.bias": (dim,), a + "to_q.weight": (inner, dim), a + "to_kv.weight": (2 * inner, dim),
                    a + "to_out.weight": (dim, inner), f + "0.weight": (dim,), f + "0.bias": (dim,),
                    f + "1.weight": (dim * ff_mult, dim), f + "3.weight": (dim, dim * ff_mult)})
    return out


_RENAME = [
    (re.compile(r"^layers\.(\d+)\.0\.norm1\."), r"layers.\1.ln0."),
    (re.compile(r"^layers\.(\d+)\.0\.norm2\."), r"layers.\1.ln1."),
    (re.compile(r"^layers\.(\d+)\.0\.to_q\."), r"layers.\1.attn.to_q."),
    (re.compile(r"^layers\.(\d+)\.0\.to_out\."), r"layers.\1.attn.to_out.0."),
    (re.compile(r"^layers\.(\d+)\.1\.0\."), r"layers.\1.ff.0."),
    (re.compile(r"^layers\.(\d+)\.1\.1\."), r"layers.\1.ff.1.net.0.proj."),
    (re.compile(r"^layers\.(\d+)\.1\.3\."), r"layers.\1.ff.1.net.2."),
]
_KV = re.compile(r"^layers\.(\d+)\.0\.to_kv\.weight$")
_SAME = {"latents", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias", "norm_out.weight", "norm_out.bias"}


def resampler_to_diffusers(state: dict) -> dict:
    """IDM-VTON Resampler state dict (keys without the `encoder_hid_proj.` prefix) -> diffusers names."""
    out = {}
    for key, value in state.items():
        kv = _KV.match(key)
        if kv:
            k, v = value.chunk(2, dim=0)
            out[f"layers.{kv.group(1)}.attn.to_k.weight"] = k
            out[f"layers.{kv.group(1)}.attn.to_v.weight"] = v
            continue
        if key in _SAME:
            out[key] = value
            continue
        for pattern, repl in _RENAME:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            raise KeyError(f"{key!r} is not a key of IDM-VTON's Resampler")
    return out


class DecoupledIPAttention(torch.nn.Module):
    """attn2 processor of IDM-VTON's try-on U-Net (ip_adapter/attention_processor.py `IPAttnProcessor2_0`):
    the last `num_tokens` context tokens are image tokens, attended with their own keys/values
    (`to_k_ip`, `to_v_ip`, no bias) and added: out = to_out(Attn(q, K_text, V_text) + scale * Attn(q, K_ip, V_ip)).

    A Module, so its weights appear in the U-Net state dict as `...attn2.processor.to_k_ip.weight`
    (the published key names)."""

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int = 16, scale: float = 1.0):
        super().__init__()
        self.num_tokens, self.scale = num_tokens, scale
        self.to_k_ip = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_ip = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return _decoupled_forward(self, attn, hidden_states, encoder_hidden_states, attention_mask)


def _decoupled_forward(proc, attn, hidden_states, encoder_hidden_states, attention_mask):
    F = torch.nn.functional
    if hidden_states.ndim != 3 or attn.spatial_norm is not None or attn.group_norm is not None:
        raise ValueError("DecoupledIPAttention expects (B, N, C) hidden states of a transformer block")
    if encoder_hidden_states is None or encoder_hidden_states.shape[1] <= proc.num_tokens:
        raise ValueError(f"the context must hold text tokens followed by {proc.num_tokens} image tokens")
    residual = hidden_states
    b = hidden_states.shape[0]
    end = encoder_hidden_states.shape[1] - proc.num_tokens
    text, image_tokens = encoder_hidden_states[:, :end], encoder_hidden_states[:, end:]
    if attn.norm_cross:
        text = attn.norm_encoder_hidden_states(text)
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, end, b).view(b, attn.heads, -1, end)
    q = attn.to_q(hidden_states)
    head = q.shape[-1] // attn.heads

    def split(t):
        return t.view(b, -1, attn.heads, head).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(attn.to_k(text)), split(attn.to_v(text)), attn_mask=attention_mask)
    ip = F.scaled_dot_product_attention(split(q), split(proc.to_k_ip(image_tokens)), split(proc.to_v_ip(image_tokens)))
    merged = (out + proc.scale * ip).transpose(1, 2).reshape(b, -1, attn.heads * head).to(q.dtype)
    merged = attn.to_out[1](attn.to_out[0](merged))
    if attn.residual_connection:
        merged = merged + residual
    return merged / attn.rescale_output_factor


def install_ip_attention(unet, num_tokens: int = 16, scale: float = 1.0) -> None:
    """Every cross-attention (attn2) of `unet` becomes a DecoupledIPAttention, sized as IDM-VTON's
    `UNet2DConditionModel.__init__` sizes them (hidden size from the block's out channels)."""
    cfg = unet.config
    procs = {}
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor"):
            procs[name] = proc
            continue
        if name.startswith("mid_block"):
            hidden = cfg.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(cfg.block_out_channels))[int(name.split(".")[1])]
        else:
            hidden = cfg.block_out_channels[int(name.split(".")[1])]
        procs[name] = DecoupledIPAttention(hidden, cfg.cross_attention_dim, num_tokens=num_tokens, scale=scale)
    unet.set_attn_processor(procs)
