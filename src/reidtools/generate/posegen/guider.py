"""Pose guiders: one small conv net per spatially aligned condition (Pose-dIVE §B, seed 004).

Each condition image (skeleton 3 ch, depth 1 ch, surface normals 3 ch) goes through its own guider:
a 3x3 conv, then per stage a 3x3 conv and a stride-2 3x3 conv (SiLU between), down to the latent
resolution (1/8 for SD's VAE: three stride-2 stages), and a LAST layer initialised to zero, so at the
start of fine-tuning the guiders add exactly nothing and the pre-trained U-Net is unchanged.

The paper concatenates the guiders' outputs along channels and adds them to the projected noise
(the output of the U-Net's conv_in). Concatenation followed by the linear map that brings the channels
to the U-Net's width equals a sum of per-condition linear maps; each guider's zero-initialised last
conv IS that map, so `GuiderSet` sums the outputs, which is the same function class with the same
zero start. `inject="conv_in"` (default; the paper's "projected noise", as in AnimateAnyone) adds the
sum to the output of conv_in; `inject="latent"` adds it (latent channels) to the noisy latent itself.
"""

from __future__ import annotations

import torch
from torch import nn

CONDITION_CHANNELS = {"skeleton": 3, "depth": 1, "normal": 3}
CONDITION_FIELDS = {"depth": "depth.png", "normal": "normal.png"}
SD_GUIDER_CHANNELS = (16, 32, 96, 256)   # ControlNet's / AnimateAnyone's conditioning embedding


class PoseGuider(nn.Module):
    """Condition (B, in_channels, H, W) in [0, 1] -> (B, out_channels, H / 2**(len(channels)-1), ...)."""

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, ...] = SD_GUIDER_CHANNELS):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1:
            raise ValueError("a pose guider needs at least one stage")
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        # PyTorch's default conv init (small weights, uniform biases) leaves the features after seven
        # layers dominated by the biases: two different skeletons differ by ~0.5%, so the zero
        # last layer starts with almost no pose signal to learn from. He init with zero biases keeps
        # the condition's variation (~100%); the zero last layer still makes the start a no-op.
        for conv in (self.conv_in, *blocks):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.silu(self.conv_in(x))
        for block in self.blocks:
            x = nn.functional.silu(block(x))
        return self.conv_out(x)


class GuiderSet(nn.Module):
    """One PoseGuider per condition name; forward sums their outputs."""

    def __init__(self, conditions: list[str], out_channels: int, channels: tuple[int, ...] = SD_GUIDER_CHANNELS):
        super().__init__()
        unknown = [c for c in conditions if c not in CONDITION_CHANNELS]
        if unknown or not conditions:
            raise ValueError(f"conditions must be among {', '.join(CONDITION_CHANNELS)}, got {conditions}")
        self.conditions = list(conditions)
        self.guiders = nn.ModuleDict({c: PoseGuider(CONDITION_CHANNELS[c], out_channels, channels) for c in conditions})

    def forward(self, conds: dict[str, torch.Tensor]) -> torch.Tensor:
        out = None
        for name in self.conditions:
            y = self.guiders[name](conds[name])
            out = y if out is None else out + y
        return out


class ConvInInjection:
    """Adds `feature` to the output of `unet.conv_in` while set (a forward hook; `None` = no-op).

    The feature's batch may divide the U-Net batch (classifier-free guidance doubles it): it is
    repeated along the batch like the reference features.
    """

    def __init__(self, unet):
        self.feature: torch.Tensor | None = None
        self.handle = unet.conv_in.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        f = self.feature
        if f is None:
            return output
        if f.shape[0] != output.shape[0]:
            if output.shape[0] % f.shape[0]:
                raise ValueError(f"condition batch {f.shape[0]} does not divide the U-Net batch {output.shape[0]}")
            f = f.repeat(output.shape[0] // f.shape[0], 1, 1, 1)
        if f.shape[1:] != output.shape[1:]:
            raise ValueError(f"pose-guider output {tuple(f.shape[1:])} does not fit conv_in's {tuple(output.shape[1:])}")
        return output + f.to(output.dtype)

    def remove(self) -> None:
        self.handle.remove()
