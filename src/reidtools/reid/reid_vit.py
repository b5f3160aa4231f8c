"""A ViT trunk onto which CLIP-ReID's image encoder (OpenAI CLIP ViT-B/16) and TransReID's
(timm-style ViT-B/16 with overlapping patches and the jigsaw patch module) both map key by key.

The two differ only in details, each an option here: CLIP has no patch bias, a pre-transformer
LayerNorm (`ln_pre`), QuickGELU, eps 1e-5 and a projection after the final norm; TransReID has a
patch bias, exact GELU, eps 1e-6, optional overlapping patches (stride 12) and, with JPM, two copies of
the last block (`b1` global, `b2` local) instead of running it in the trunk. The patch grid (gh, gw)
is fixed by the position embeddings a checkpoint was trained with.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.act = QuickGELU() if act == "quick_gelu" else nn.GELU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, act: str, eps: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, hidden, act)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ReidViT(nn.Module):
    """forward(x) -> tokens (N, 1 + gh*gw, dim): after the final norm, or, with `jpm`, before the last
    block (TransReID's local_feature trunk; the b1/b2 branches then finish it)."""

    def __init__(self, *, dim: int, depth: int, heads: int, hidden: int, grid: tuple[int, int], patch: int = 16,
                 stride: int = 16, patch_bias: bool = True, ln_pre: bool = False, act: str = "gelu",
                 eps: float = 1e-6, proj_dim: int = 0, jpm: bool = False):
        super().__init__()
        self.grid, self.patch, self.stride, self.jpm = tuple(grid), patch, stride, jpm
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=stride, bias=patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], dim))
        self.ln_pre = nn.LayerNorm(dim, eps=eps) if ln_pre else None
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, act, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.proj = nn.Parameter(torch.zeros(dim, proj_dim)) if proj_dim else None
        if jpm:
            self.b1 = nn.Sequential(copy.deepcopy(self.blocks[-1]), copy.deepcopy(self.norm))
            self.b2 = nn.Sequential(copy.deepcopy(self.blocks[-1]), copy.deepcopy(self.norm))

    def input_size(self) -> tuple[int, int]:
        """The image size (H, W) the model was trained at (`image_size`, set by the loader: with stride 12
        a 256x128 input leaves 4 columns uncovered), else the smallest one whose patch grid is `grid`."""
        return getattr(self, "image_size", None) or tuple((g - 1) * self.stride + self.patch for g in self.grid)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        blocks = self.blocks[:-1] if self.jpm else self.blocks
        for blk in blocks:
            x = blk(x)
        return x if self.jpm else self.norm(x)


def shuffle_tokens(tokens: torch.Tensor, shift: int, groups: int) -> torch.Tensor:
    """TransReID's shuffle_unit on the patch tokens (class token excluded): shift the sequence by
    `shift`, then interleave `groups` equal parts (repeating the second-to-last token when the
    count does not divide)."""
    b, _, d = tokens.shape
    x = torch.cat([tokens[:, shift:], tokens[:, 1:shift]], dim=1)
    if x.shape[1] % groups:
        x = torch.cat([x, x[:, -2:-1]], dim=1)
    return x.view(b, groups, -1, d).transpose(1, 2).reshape(b, -1, d)


def jpm_features(vit: ReidViT, tokens: torch.Tensor, *, shift: int = 5, groups: int = 2, parts: int = 4,
                 rearrange: bool = True) -> list[torch.Tensor]:
    """[global, local_1..local_parts] class-token features of TransReID's JPM (build_transformer_local)."""
    glob = vit.b1(tokens)[:, 0]
    token = tokens[:, :1]
    x = shuffle_tokens(tokens, shift, groups) if rearrange else tokens[:, 1:]
    n = (tokens.shape[1] - 1) // parts
    local = [vit.b2(torch.cat((token, x[:, i * n:(i + 1) * n]), dim=1))[:, 0] for i in range(parts)]
    return [glob] + local
