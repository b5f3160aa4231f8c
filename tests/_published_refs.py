"""Reference re-implementations of published ReID architectures, written from each project's source
(module names, shapes and test-time forward as released), to build checkpoints in their file format
with random weights and compute the features `--model` must reproduce.

- torchreid: torchreid/models/resnet.py (ResNet, Bottleneck), torchreid/models/osnet.py
- fast-reid: fastreid/modeling/backbones/resnet.py (stem pool ceil_mode, IBN, Non_local),
  heads/embedding_head.py (pool -> bottleneck BatchNorm2d; eval returns the BN output), layers/pooling.py
- Simple-CCReID: models/img_resnet.py (base = resnet50 children[:-2], MaxAvgPooling, bn)
- CLIP-ReID: model/clip/model.py VisionTransformer (MultiheadAttention, QuickGELU, ln_pre/ln_post,
  proj), model/make_model_clipreid.py build_transformer (TEST.NECK_FEAT before: cat(feat, proj))
- TransReID: model/backbones/vit_pytorch.py (PatchEmbed_overlap, Block, eps 1e-6),
  model/make_model.py build_transformer / build_transformer_local (shuffle_unit, JPM)
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- torchvision-style ResNet-50
class IBNRef(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.half = int(planes / 2)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x):
        split = torch.split(x, self.half, 1)
        return torch.cat((self.IN(split[0].contiguous()), self.BN(split[1].contiguous())), 1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, ibn=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = IBNRef(planes) if ibn else nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class NonLocalRef(nn.Module):
    """fast-reid's Non_local, inter_channels = reduc_ratio // reduc_ratio = 1."""

    def __init__(self, in_channels, reduc_ratio=2):
        super().__init__()
        self.in_channels, self.inter_channels = in_channels, reduc_ratio // reduc_ratio
        self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.W = nn.Sequential(nn.Conv2d(self.inter_channels, in_channels, 1), nn.BatchNorm2d(in_channels))
        self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)

    def forward(self, x):
        b = x.size(0)
        g_x = self.g(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(b, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        y = torch.matmul(f / f.size(-1), g_x).permute(0, 2, 1).contiguous()
        y = y.view(b, self.inter_channels, *x.size()[2:])
        return self.W(y) + x


TINY = dict(base=8, depths=(1, 1, 2, 1), non_layers=(0, 1, 2, 0))   # same code, small enough for every test run


class ResNet50Ref(nn.Module):
    """ResNet-50 by default; `base`/`depths` shrink it for the default test suite (the published shapes
    are checked by the fullsize tests). `non_layers`: fast-reid's nl_layers_per_stage (50x: 0, 2, 3, 0)."""

    def __init__(self, last_stride=2, fastreid_stem=False, ibn=False, non_local=False, base=64, depths=(3, 4, 6, 3),
                 non_layers=(0, 2, 3, 0)):
        super().__init__()
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (nn.MaxPool2d(3, stride=2, ceil_mode=True) if fastreid_stem
                        else nn.MaxPool2d(3, stride=2, padding=1))
        self.layer1 = self._make_layer(base, depths[0], 1, ibn)
        self.layer2 = self._make_layer(base * 2, depths[1], 2, ibn)
        self.layer3 = self._make_layer(base * 4, depths[2], 2, ibn)
        self.layer4 = self._make_layer(base * 8, depths[3], last_stride, False)
        self.dim = base * 32
        self.nl_idx = {}
        if non_local:   # fast-reid _build_nonlocal: NL_s after the last n blocks of stage s
            for s, n in enumerate(non_layers, 1):
                if n:
                    setattr(self, f"NL_{s}", nn.ModuleList([NonLocalRef(base * 2 ** (s - 1) * 4) for _ in range(n)]))
                    self.nl_idx[s] = sorted([depths[s - 1] - (i + 1) for i in range(n)])

    def _make_layer(self, planes, blocks, stride, ibn):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, ibn)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, ibn=ibn) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), 1):
            idx, counter = self.nl_idx.get(s, []), 0
            for i in range(len(layer)):
                x = layer[i](x)
                if idx and counter < len(idx) and i == idx[counter]:
                    x = getattr(self, f"NL_{s}")[counter](x)
                    counter += 1
        return x


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics everywhere (a checkpoint that is not an initialisation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith(("weight", "running_mean", "bias")) and t.dim() == 1:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
                else:
                    fan = max(1, t[0].numel()) if t.dim() > 1 else max(1, t.numel())
                    t.copy_(torch.randn(t.shape, generator=g) / fan ** 0.5)
    return module.eval()


class TorchreidResNet50(nn.Module):
    def __init__(self, num_classes=751, **size):
        super().__init__()
        self.base = ResNet50Ref(last_stride=2, **size)
        self.classifier = nn.Linear(self.base.dim, num_classes)

    def state_dict_published(self):
        sd = OrderedDict((k[len("base."):], v) for k, v in self.state_dict().items() if k.startswith("base."))
        sd.update((k, v) for k, v in self.state_dict().items() if k.startswith("classifier."))
        return sd

    def forward(self, x):   # eval mode: v = global_avgpool(featuremaps)
        return F.adaptive_avg_pool2d(self.base(x), 1).flatten(1)


class FastreidBaseline(nn.Module):
    def __init__(self, agw=False, ibn=False, num_classes=751, **size):
        super().__init__()
        self.backbone = ResNet50Ref(last_stride=1, fastreid_stem=True, ibn=ibn, non_local=agw, **size)
        self.agw = agw
        self.heads = nn.Module()
        self.heads.bottleneck = nn.Sequential(nn.BatchNorm2d(self.backbone.dim))
        self.heads.weight = nn.Parameter(torch.randn(num_classes, self.backbone.dim) * 0.01)

    def forward(self, x):   # x: images already (x*255 - PIXEL_MEAN) / PIXEL_STD
        f = self.backbone(x)
        if self.agw:   # GeneralizedMeanPooling(norm=3, eps=1e-6)
            pool = F.adaptive_avg_pool2d(f.clamp(min=1e-6).pow(3.0), (1, 1)).pow(1.0 / 3.0)
        else:
            pool = F.adaptive_avg_pool2d(f, 1)
        return self.heads.bottleneck(pool)[..., 0, 0]


class CalResNet50(nn.Module):
    def __init__(self, **size):
        super().__init__()
        size.pop("non_layers", None)
        r = ResNet50Ref(last_stride=1, **size)
        self.base = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)
        self.bn = nn.BatchNorm1d(2 * r.dim)   # FEATURE_DIM 4096 for ResNet-50

    def forward(self, x):
        x = self.base(x)
        x = torch.cat((F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)), 1)
        return self.bn(x.view(x.size(0), -1))


# ----------------------------------------------------------------------------- torchreid OSNet
TINY_OSNET = (16, 64, 96, 128)
class RConvLayer(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, groups=1, IN=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False, groups=groups)
        self.bn = nn.InstanceNorm2d(cout, affine=True) if IN else nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class RConv1x1Linear(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class RLight(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False, groups=cout)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class RGate(nn.Module):
    def __init__(self, c, reduction=16):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, c // reduction, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(c // reduction, c, 1, bias=True)
        self.gate_activation = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate_activation(self.fc2(self.relu(self.fc1(self.global_avgpool(x)))))


class ROSBlock(nn.Module):
    def __init__(self, cin, cout, IN=False):
        super().__init__()
        mid = cout // 4
        self.conv1 = RConvLayer(cin, mid, 1)
        self.conv2a = RLight(mid, mid)
        self.conv2b = nn.Sequential(RLight(mid, mid), RLight(mid, mid))
        self.conv2c = nn.Sequential(RLight(mid, mid), RLight(mid, mid), RLight(mid, mid))
        self.conv2d = nn.Sequential(RLight(mid, mid), RLight(mid, mid), RLight(mid, mid), RLight(mid, mid))
        self.gate = RGate(mid)
        self.conv3 = RConv1x1Linear(mid, cout)
        self.downsample = RConv1x1Linear(cin, cout) if cin != cout else None
        self.IN = nn.InstanceNorm2d(cout, affine=True) if IN else None

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.gate(self.conv2a(x1)) + self.gate(self.conv2b(x1)) + self.gate(self.conv2c(x1)) + \
            self.gate(self.conv2d(x1))
        identity = self.downsample(x) if self.downsample is not None else x
        out = self.conv3(x2) + identity
        if self.IN is not None:
            out = self.IN(out)
        return F.relu(out)


class OSNetRef(nn.Module):
    """osnet_x1_0: blocks [2, 2, 2], channels [64, 256, 384, 512], feature_dim 512 (IN=True: osnet_ibn_x1_0);
    TINY_OSNET channels keep the default suite fast."""

    def __init__(self, num_classes=751, channels=(64, 256, 384, 512), IN=False):
        super().__init__()
        c = channels
        self.conv1 = RConvLayer(3, c[0], 7, stride=2, padding=3, IN=IN)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        def layer(cin, cout, reduce, IN=False):
            ls = [ROSBlock(cin, cout, IN=IN), ROSBlock(cout, cout, IN=IN)]
            if reduce:
                ls.append(nn.Sequential(RConvLayer(cout, cout, 1), nn.AvgPool2d(2, stride=2)))
            return nn.Sequential(*ls)

        self.conv2 = layer(c[0], c[1], True, IN)
        self.conv3 = layer(c[1], c[2], True)
        self.conv4 = layer(c[2], c[3], False)
        self.conv5 = RConvLayer(c[3], c[3], 1)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c[3], 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.maxpool(self.conv1(x))))))
        return self.fc(self.global_avgpool(x).view(x.size(0), -1))


# ----------------------------------------------------------------------------- CLIP-ReID ViT
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d, d * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d * 4, d))]))
        self.ln_2 = nn.LayerNorm(d)

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ClipVisionRef(nn.Module):
    def __init__(self, h_res, w_res, stride, width, layers, heads, output_dim, patch=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=stride, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(h_res * w_res + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x11 = self.transformer.resblocks[:-1](x)
        x12 = self.transformer.resblocks[-1](x11)
        x12 = self.ln_post(x12.permute(1, 0, 2))
        return x11.permute(1, 0, 2), x12, x12 @ self.proj


class ClipReidRef(nn.Module):
    def __init__(self, width=768, layers=12, num_classes=751, size=(256, 128), stride=16):
        super().__init__()
        h, w = (size[0] - 16) // stride + 1, (size[1] - 16) // stride + 1
        self.classifier = nn.Linear(width, num_classes, bias=False)
        self.classifier_proj = nn.Linear(512, num_classes, bias=False)
        self.bottleneck = nn.BatchNorm1d(width)
        self.bottleneck_proj = nn.BatchNorm1d(512)
        self.image_encoder = ClipVisionRef(h, w, stride, width, layers, width // 64, 512)
        # a stand-in for the prompt learner's buffers and the text tower (left out by --model)
        self.prompt_learner = nn.Module()
        self.prompt_learner.register_buffer("token_prefix", torch.randn(num_classes, 1, 512))
        self.text_encoder = nn.Module()
        self.text_encoder.positional_embedding = nn.Parameter(torch.randn(77, 512))

    def forward(self, x, neck_feat="before"):
        _, feats, proj = self.image_encoder(x)
        f, p = feats[:, 0], proj[:, 0]
        if neck_feat == "after":
            return torch.cat([self.bottleneck(f), self.bottleneck_proj(p)], dim=1)
        return torch.cat([f, p], dim=1)


# ----------------------------------------------------------------------------- TransReID ViT
class TAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class TMlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TMlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransReIDBase(nn.Module):
    def __init__(self, size=(256, 128), stride=16, dim=768, depth=12, local_feature=False):
        super().__init__()
        self.local_feature = local_feature
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, 16, stride=stride)
        n = ((size[0] - 16) // stride + 1) * ((size[1] - 16) // stride + 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.ModuleList([TBlock(dim, dim // 64) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(dim, 1000)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        if self.local_feature:
            for blk in self.blocks[:-1]:
                x = blk(x)
            return x
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


def shuffle_unit(features, shift, group, begin=1):
    batchsize, dim = features.size(0), features.size(-1)
    x = torch.cat([features[:, begin - 1 + shift:], features[:, begin:begin - 1 + shift]], dim=1)
    try:
        x = x.view(batchsize, group, -1, dim)
    except RuntimeError:
        x = torch.cat([x, x[:, -2:-1, :]], dim=1)
        x = x.view(batchsize, group, -1, dim)
    return torch.transpose(x, 1, 2).contiguous().view(batchsize, -1, dim)


class TransReIDRef(nn.Module):
    def __init__(self, size=(256, 128), stride=16, dim=768, depth=12, jpm=False, num_classes=751):
        super().__init__()
        self.jpm = jpm
        self.base = TransReIDBase(size, stride, dim, depth, local_feature=jpm)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.bottleneck = nn.BatchNorm1d(dim)
        if jpm:
            self.b1 = nn.Sequential(copy.deepcopy(self.base.blocks[-1]), copy.deepcopy(self.base.norm))
            self.b2 = nn.Sequential(copy.deepcopy(self.base.blocks[-1]), copy.deepcopy(self.base.norm))
            for i in range(1, 5):
                setattr(self, f"classifier_{i}", nn.Linear(dim, num_classes, bias=False))
                setattr(self, f"bottleneck_{i}", nn.BatchNorm1d(dim))

    def forward(self, x, neck_feat="before"):
        if not self.jpm:
            g = self.base(x)
            return self.bottleneck(g) if neck_feat == "after" else g
        features = self.base(x)
        global_feat = self.b1(features)[:, 0]
        patch_length = (features.size(1) - 1) // 4
        token = features[:, 0:1]
        x = shuffle_unit(features, 5, 2)
        local = [self.b2(torch.cat((token, x[:, patch_length * i:patch_length * (i + 1)]), dim=1))[:, 0]
                 for i in range(4)]
        if neck_feat == "after":
            feats = [self.bottleneck(global_feat)] + [getattr(self, f"bottleneck_{i + 1}")(f) for i, f in enumerate(local)]
            return torch.cat([feats[0]] + [f / 4 for f in feats[1:]], dim=1)
        return torch.cat([global_feat] + [f / 4 for f in local], dim=1)
