"""OSNet (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019), with
torchreid's module names, so its published checkpoints load unchanged (`reid eval --model
osnet_x1_0_market.pth`). Widths come from the checkpoint: x1.0 is channels (64, 256, 384, 512).
`instance_norm` gives torchreid's osnet_ibn_x1_0 (InstanceNorm in conv1, and after the residual sum of
conv2's blocks). Test-time feature: the 512-d `fc` output (Linear, BatchNorm1d, ReLU), as torchreid's
OSNet.forward returns in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    """conv + norm + ReLU; the norm is an affine InstanceNorm in the IBN variant's stem."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1,
                 instance_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False, groups=groups)
        self.bn = nn.InstanceNorm2d(cout, affine=True) if instance_norm else nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Conv1x1(ConvLayer):
    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 1)


class Conv1x1Linear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class LightConv3x3(nn.Module):
    """1x1 linear conv, then a depth-wise 3x3, BN and ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """The unified aggregation gate: one mini-network shared by the four streams."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=True)

    def forward(self, x):
        g = self.fc2(self.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(g)


class OSBlock(nn.Module):
    """Four streams of 1-4 lite 3x3 convolutions (receptive fields 3, 5, 7, 9), gated and summed."""

    def __init__(self, cin: int, cout: int, instance_norm: bool = False, bottleneck_reduction: int = 4):
        super().__init__()
        mid = cout // bottleneck_reduction
        self.conv1 = Conv1x1(cin, mid)
        self.conv2a = LightConv3x3(mid, mid)
        self.conv2b = nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(2)])
        self.conv2c = nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(3)])
        self.conv2d = nn.Sequential(*[LightConv3x3(mid, mid) for _ in range(4)])
        self.gate = ChannelGate(mid)
        self.conv3 = Conv1x1Linear(mid, cout)
        self.downsample = Conv1x1Linear(cin, cout) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if instance_norm else None

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = sum(self.gate(branch(x1)) for branch in (self.conv2a, self.conv2b, self.conv2c, self.conv2d))
        out = self.conv3(x2) + (self.downsample(x) if self.downsample is not None else x)
        if self.IN is not None:
            out = self.IN(out)
        return F.relu(out)


class OSNet(nn.Module):
    """forward(x) -> the `fc` feature (N, feature_dim) (the pooled map when feature_dim is 0)."""

    def __init__(self, channels=(64, 256, 384, 512), layers=(2, 2, 2), feature_dim: int = 512,
                 instance_norm: bool = False):
        super().__init__()
        c = channels
        self.conv1 = ConvLayer(3, c[0], 7, stride=2, padding=3, instance_norm=instance_norm)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = self._stage(layers[0], c[0], c[1], reduce=True, instance_norm=instance_norm)
        self.conv3 = self._stage(layers[1], c[1], c[2], reduce=True)
        self.conv4 = self._stage(layers[2], c[2], c[3], reduce=False)
        self.conv5 = Conv1x1(c[3], c[3])
        self.fc = (nn.Sequential(nn.Linear(c[3], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
                   if feature_dim > 0 else None)
        self.dim = feature_dim if feature_dim > 0 else c[3]

    @staticmethod
    def _stage(n: int, cin: int, cout: int, *, reduce: bool, instance_norm: bool = False) -> nn.Sequential:
        blocks = [OSBlock(cin, cout, instance_norm=instance_norm)]
        blocks += [OSBlock(cout, cout, instance_norm=instance_norm) for _ in range(1, n)]
        if reduce:   # a transition: 1x1 conv then 2x2 average pooling
            blocks.append(nn.Sequential(Conv1x1(cout, cout), nn.AvgPool2d(2, stride=2)))
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))
        v = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(v) if self.fc is not None else v


def osnet_from_state_dict(state: dict) -> OSNet:
    """An OSNet shaped like `state` (torchreid key names): widths, blocks per stage, fc size, IBN."""
    def blocks(stage: str) -> int:
        return len({k.split(".")[1] for k in state if k.startswith(stage + ".") and ".conv1.conv." in k})

    channels = (state["conv1.conv.weight"].shape[0], state["conv2.0.conv3.conv.weight"].shape[0],
                state["conv3.0.conv3.conv.weight"].shape[0], state["conv4.0.conv3.conv.weight"].shape[0])
    fc = state["fc.0.weight"].shape[0] if "fc.0.weight" in state else 0
    instance_norm = "conv1.bn.running_mean" not in state
    return OSNet(channels, (blocks("conv2"), blocks("conv3"), blocks("conv4")), fc, instance_norm)
