"""The toolkit's ResNet-50 (transformers' ResNetModel, reidtools.reid.backbones) with the variations
published ReID models use, so their checkpoints map onto it key by key:

- last stride 1 or 2 (BoT/CAL/fast-reid use 1; torchreid's resnet50 keeps 2);
- fast-reid's stem max-pool (kernel 3, stride 2, no padding, ceil_mode=True; torchvision pads by 1);
- IBN-a (Pan et al. 2018): in layer1-3 every bottleneck's first norm is half InstanceNorm (the first
  half of the channels), half BatchNorm, as fast-reid's `IBN` module;
- fast-reid's non-local blocks (AGW; Wang et al. 2018, embedded-Gaussian without softmax: the
  affinity is divided by the number of positions) after given blocks of a stage.
Heads (pooling, BNNeck, fc) are in reidtools.reid.published, per format.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IBN(nn.Module):
    def __init__(self, planes: int):
        super().__init__()
        self.half = planes // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x):
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], 1)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), 1)


class NonLocal(nn.Module):
    """fast-reid's Non_local: theta/phi/g 1x1 convolutions to `inter` channels (fast-reid computes it as
    reduc_ratio // reduc_ratio = 1), f = theta^T phi / N, y = f g, z = W(y) + x with W = conv + BN."""

    def __init__(self, channels: int, inter: int = 1):
        super().__init__()
        self.inter = inter
        self.g = nn.Conv2d(channels, inter, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.W = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x):
        b = x.shape[0]
        g = self.g(x).view(b, self.inter, -1).permute(0, 2, 1)
        theta = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        phi = self.phi(x).view(b, self.inter, -1)
        f = torch.matmul(theta, phi)
        y = torch.matmul(f / f.shape[-1], g).permute(0, 2, 1).contiguous().view(b, self.inter, *x.shape[2:])
        return self.W(y) + x


class ReidResNet(nn.Module):
    """forward(x) -> the last feature map (N, `dim`, H/16, W/16) at last stride 1. `config`: a
    transformers ResNetConfig (default: ResNet-50's; published_config reads one from a checkpoint)."""

    def __init__(self, *, config=None, last_stride: int = 1, ibn: bool = False, ceil_maxpool: bool = False,
                 nonlocal_blocks: dict[int, list[int]] | None = None, nonlocal_inter: int = 1):
        super().__init__()
        from reidtools.reid.backbones import resnet_model

        self.net = resnet_model(last_stride=last_stride, config=config)
        self.dim = self.net.config.hidden_sizes[-1]
        if ceil_maxpool:
            self.net.embedder.pooler = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        if ibn:
            for stage in self.net.encoder.stages[:3]:
                for layer in stage.layers:
                    first = layer.layer[0]
                    first.normalization = IBN(first.normalization.num_features)
        self.nonlocal_blocks = {int(k): sorted(v) for k, v in (nonlocal_blocks or {}).items() if v}
        widths = self.net.config.hidden_sizes
        self.nl = nn.ModuleDict({str(s): nn.ModuleList(NonLocal(widths[s], nonlocal_inter) for _ in idx)
                                 for s, idx in self.nonlocal_blocks.items()})

    def forward(self, x):
        x = self.net.embedder(x)
        for s, stage in enumerate(self.net.encoder.stages):
            after = self.nonlocal_blocks.get(s, [])
            for i, layer in enumerate(stage.layers):
                x = layer(x)
                if i in after:
                    x = self.nl[str(s)][after.index(i)](x)
        return x


def torchvision_to_hf(key: str) -> str | None:
    """A torchvision-style ResNet key (conv1, bn1, layerI.J.convK/bnK/downsample.N) as the key of
    ReidResNet; None for keys outside the convolutional trunk."""
    parts = key.split(".")
    if parts[0] == "conv1":
        return "net.embedder.embedder.convolution." + ".".join(parts[1:])
    if parts[0] == "bn1":
        return "net.embedder.embedder.normalization." + ".".join(parts[1:])
    if not (parts[0].startswith("layer") and len(parts) >= 4 and parts[0][5:].isdigit()):
        return None
    stage, block, name, rest = int(parts[0][5:]) - 1, parts[1], parts[2], parts[3:]
    base = f"net.encoder.stages.{stage}.layers.{block}."
    if name == "downsample":
        sub = {"0": "convolution", "1": "normalization"}[rest[0]]
        return base + f"shortcut.{sub}." + ".".join(rest[1:])
    if name[:-1] in ("conv", "bn") and name[-1].isdigit():
        sub = "convolution" if name.startswith("conv") else "normalization"
        return base + f"layer.{int(name[-1]) - 1}.{sub}." + ".".join(rest)
    return None


def published_config(mapped: dict, prefix: str = "trunk."):
    """The bottleneck ResNetConfig of a trunk state dict in ReidResNet names (stem width, blocks and output
    width per stage): ResNet-50 is (64, [3, 4, 6, 3], [256, 512, 1024, 2048])."""
    from transformers import ResNetConfig

    stages: dict[int, set[int]] = {}
    for k in mapped:
        if k.startswith(prefix + "net.encoder.stages."):
            s, _, l = k[len(prefix + "net.encoder.stages."):].split(".")[:3]
            stages.setdefault(int(s), set()).add(int(l))
    if sorted(stages) != [0, 1, 2, 3]:
        return None
    conv3 = prefix + "net.encoder.stages.{}.layers.0.layer.2.convolution.weight"
    if any(conv3.format(s) not in mapped for s in range(4)):
        return None   # basic-block ResNets (18/34) have no third convolution
    return ResNetConfig(embedding_size=mapped[prefix + "net.embedder.embedder.convolution.weight"].shape[0],
                        hidden_sizes=[mapped[conv3.format(s)].shape[0] for s in range(4)],
                        depths=[len(stages[s]) for s in range(4)], layer_type="bottleneck", hidden_act="relu")


def gem(x: torch.Tensor, p, eps: float = 1e-6) -> torch.Tensor:
    """Generalized-mean pooling (fast-reid's GeneralizedMeanPooling: clamp, power, mean, root)."""
    return F.adaptive_avg_pool2d(x.clamp(min=eps).pow(p), 1).pow(1.0 / p)
