"""Published ReID checkpoints as `--model`: torchreid (ResNet-50, ResNet-50-fc512, OSNet), fast-reid
(BoT and AGW ResNet-50, IBN-a variants), Simple-CCReID's CAL ResNet-50, CLIP-ReID ViT-B/16 and
TransReID ViT-B/16 (with or without JPM).

Each checkpoint's state dict is mapped key by key onto the toolkit's networks (ResNet-50: the
`resnet50` backbone's ResNetModel, reidtools.reid.resnet_variants; OSNet: reidtools.reid.osnet;
ViT: reidtools.reid.reid_vit) and loaded strictly: every trunk and neck tensor must be used, with its
shape. Each model is fed as its code prepares test images and gives its test-time feature (FORMATS;
docs/export.md gives the source of each choice). Files are read with torch.load(weights_only=True):
nothing is unpickled beyond tensors, containers and numpy scalars (torchreid and Simple-CCReID store
rank-1 as a numpy float).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reidtools.errors import ReidError
from reidtools.reid.extract import FeatureModel, Preprocess

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# ViT input sizes and patch strides used by the released CLIP-ReID / TransReID configs; the one whose
# patch grid matches a checkpoint's position embeddings is its input size
VIT_SIZES = ((256, 128), (384, 128), (384, 192))
VIT_STRIDES = (16, 12)


@dataclass(frozen=True)
class Format:
    name: str
    features: tuple[str, ...]     # the first is the one its test code uses
    mean_std: tuple
    size: tuple[int, int] | None  # None: from the checkpoint (ViTs)
    interpolation: str
    flip: bool
    source: str


FORMATS = {
    "torchreid": Format("torchreid", ("test",), IMAGENET, (256, 128), "bilinear", False,
                        "torchreid: build_transforms test (Resize((256, 128)), ImageNet Normalize); "
                        "models return the pooled (resnet50) or fc (osnet, resnet50_fc512) feature in eval mode; no flip"),
    "fastreid": Format("fastreid", ("post-bn", "pre-bn"), IMAGENET, (256, 128), "bicubic", False,
                       "fast-reid: Base-bagtricks/Base-AGW SIZE_TEST [256, 128], T.Resize(interpolation=3), PIXEL_MEAN/STD "
                       "(ImageNet x255 on 0-255 pixels); EmbeddingHead returns the BNNeck output in eval mode; TEST.FLIP off"),
    "cal": Format("cal", ("post-bn", "pre-bn"), IMAGENET, (384, 192), "bilinear", True,
                  "Simple-CCReID: DATA.HEIGHT/WIDTH 384x192, ImageNet Normalize; ResNet50.forward returns bn(maxavg pool); "
                  "extract_img_feature adds the flipped image's feature"),
    "clipreid": Format("clipreid", ("pre-bn", "post-bn"), HALF, None, "bilinear", False,
                       "CLIP-ReID: configs/person/vit_clipreid.yml (SIZE_TEST 256x128, PIXEL_MEAN/STD 0.5, TEST.NECK_FEAT "
                       "before: cat(img_feature, img_feature_proj), 1280-d); no flip"),
    "transreid": Format("transreid", ("pre-bn", "post-bn"), HALF, None, "bilinear", False,
                        "TransReID: configs/Market/*.yml (SIZE_TEST 256x128, PIXEL_MEAN/STD 0.5, TEST.NECK_FEAT before: the "
                        "global feature, with JPM cat(global, local_1..4 / 4)); no flip"),
}


# ----------------------------------------------------------------------------- reading and detecting
def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The model state dict inside a published checkpoint file ('state_dict': torchreid; 'model':
    fast-reid; 'model_state_dict': Simple-CCReID; a bare state dict: CLIP-ReID, TransReID and the
    torchreid model zoo), without a DataParallel 'module.' prefix."""
    import numpy as np

    safe = [np.dtype, type(np.dtype(np.float32)), type(np.dtype(np.float64)), type(np.dtype(np.int64))]
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    safe.append(scalar)
    try:
        with torch.serialization.safe_globals(safe):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many unrelated types on a bad file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReidError(f"--model {path}: not a loadable checkpoint with weights_only=True ({msg[:200]})") from None
    if isinstance(data, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ReidError(f"--model {path}: no state dict found (expected a dict of tensors, or one under "
                        "'state_dict', 'model' or 'model_state_dict')")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in data.items()}


def detect_format(state: dict, path: str) -> str:
    """The published format whose key names `state` has."""
    has = state.__contains__
    if has("base.cls_token") and has("base.pos_embed"):
        return "transreid"
    if has("image_encoder.conv1.weight"):
        return "clipreid"
    if has("backbone.conv1.weight") and any(k.startswith("heads.") for k in state):
        return "fastreid"
    if has("base.0.weight") and has("base.4.0.conv1.weight") and has("bn.weight"):
        return "cal"
    if (has("conv1.weight") and has("layer4.0.conv1.weight")) or has("conv1.conv.weight"):
        return "torchreid"
    sample = ", ".join(list(state)[:4])
    raise ReidError(f"--model {path}: unknown checkpoint layout (first keys: {sample}); pass --model-format "
                    f"one of {', '.join(FORMATS)} if it is one of them (see docs/export.md)")


# ----------------------------------------------------------------------------- networks
class TorchreidResNet(nn.Module):
    """torchreid's resnet50 (last stride 2, pooled 2048-d) or resnet50_fc512 (last stride 1, fc 512)."""

    def __init__(self, config, fc_dim: int = 0):
        super().__init__()
        from reidtools.reid.resnet_variants import ReidResNet

        self.trunk = ReidResNet(config=config, last_stride=1 if fc_dim else 2)
        width = self.trunk.dim
        self.fc = nn.Sequential(nn.Linear(width, fc_dim), nn.BatchNorm1d(fc_dim), nn.ReLU(inplace=True)) if fc_dim else None
        self.dim = fc_dim or width

    def forward(self, x):
        v = F.adaptive_avg_pool2d(self.trunk(x), 1).flatten(1)
        return self.fc(v) if self.fc is not None else v


class FastreidNet(nn.Module):
    """fast-reid's Baseline: ResNet backbone (stride-1 last stage, ceil-mode stem pool, optional IBN-a
    and non-local blocks) + EmbeddingHead (pooling, optional 1x1 reduction, BatchNorm2d BNNeck)."""

    def __init__(self, *, config, ibn: bool, nonlocal_blocks: dict, nonlocal_inter: int, pool: str, reduction: int,
                 bnneck: bool, post_bn: bool):
        super().__init__()
        from reidtools.reid.resnet_variants import ReidResNet

        self.trunk = ReidResNet(config=config, last_stride=1, ibn=ibn, ceil_maxpool=True,
                                nonlocal_blocks=nonlocal_blocks, nonlocal_inter=nonlocal_inter)
        self.pool = pool
        self.p = nn.Parameter(torch.ones(1) * 3.0) if pool == "gem-learned" else None
        width = self.trunk.dim
        dim = reduction or width
        self.reduce = nn.Conv2d(width, reduction, 1, bias=False) if reduction else None
        self.bottleneck = nn.BatchNorm2d(dim) if bnneck else None
        self.post_bn, self.dim = post_bn, dim

    def forward(self, x):
        from reidtools.reid.resnet_variants import gem

        f = self.trunk(x)
        if self.pool == "avg":
            f = F.adaptive_avg_pool2d(f, 1)
        else:   # AGW: GeneralizedMeanPooling, p = 3 (or fast-reid's learned-p variant)
            f = gem(f, self.p if self.p is not None else 3.0)
        if not self.post_bn:
            return f.flatten(1)
        if self.reduce is not None:
            f = self.reduce(f)
        if self.bottleneck is not None:
            f = self.bottleneck(f)
        return f.flatten(1)


class CalNet(nn.Module):
    """Simple-CCReID's ResNet50: torchvision ResNet-50 (RES4_STRIDE 1), max+avg (or avg) pooling, BN."""

    def __init__(self, config, dim: int, post_bn: bool):
        super().__init__()
        from reidtools.reid.resnet_variants import ReidResNet

        self.trunk = ReidResNet(config=config, last_stride=1)
        self.maxavg = dim == 2 * self.trunk.dim
        self.bn = nn.BatchNorm1d(dim)
        self.post_bn, self.dim = post_bn, dim

    def forward(self, x):
        f = self.trunk(x)
        v = F.adaptive_avg_pool2d(f, 1).flatten(1)
        if self.maxavg:   # MaxAvgPooling: cat(max, avg)
            v = torch.cat([F.adaptive_max_pool2d(f, 1).flatten(1), v], dim=1)
        return self.bn(v) if self.post_bn else v


class ClipReidNet(nn.Module):
    """CLIP-ReID's build_transformer (ViT-B/16) at test time: cat(cls, cls @ proj), or after the two BNNecks."""

    def __init__(self, vit, post_bn: bool):
        super().__init__()
        self.vit = vit
        dim, proj = vit.pos_embed.shape[-1], vit.proj.shape[1]
        self.bottleneck, self.bottleneck_proj = nn.BatchNorm1d(dim), nn.BatchNorm1d(proj)
        self.post_bn, self.dim = post_bn, dim + proj

    def forward(self, x):
        cls = self.vit(x)[:, 0]
        proj = cls @ self.vit.proj
        if self.post_bn:
            return torch.cat([self.bottleneck(cls), self.bottleneck_proj(proj)], dim=1)
        return torch.cat([cls, proj], dim=1)


class TransReidNet(nn.Module):
    """TransReID's build_transformer (global feature) or build_transformer_local (JPM: global + 4 local
    features, the local ones divided by 4), before or after their BNNecks."""

    def __init__(self, vit, post_bn: bool, rearrange: bool = True):
        super().__init__()
        self.vit, self.post_bn, self.rearrange = vit, post_bn, rearrange
        dim = vit.pos_embed.shape[-1]
        self.bottleneck = nn.BatchNorm1d(dim)
        if vit.jpm:
            for i in range(1, 5):
                setattr(self, f"bottleneck_{i}", nn.BatchNorm1d(dim))
        self.dim = dim * (5 if vit.jpm else 1)

    def forward(self, x):
        from reidtools.reid.reid_vit import jpm_features

        tokens = self.vit(x)
        if not self.vit.jpm:
            f = tokens[:, 0]
            return self.bottleneck(f) if self.post_bn else f
        feats = jpm_features(self.vit, tokens, rearrange=self.rearrange)
        if self.post_bn:
            feats = [self.bottleneck(feats[0])] + [getattr(self, f"bottleneck_{i}")(f) for i, f in enumerate(feats[1:], 1)]
        return torch.cat([feats[0]] + [f / 4 for f in feats[1:]], dim=1)


# ----------------------------------------------------------------------------- key mapping
def _resnet_keys(state: dict, prefix: str, out_prefix: str, rename=None) -> dict:
    """Trunk keys under `prefix` (torchvision names, or renamed by `rename`) as ReidResNet keys."""
    from reidtools.reid.resnet_variants import torchvision_to_hf

    out = {}
    for k, v in state.items():
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):]
        name = rename(name) if rename else name
        mapped = torchvision_to_hf(name) if name is not None else None
        if mapped is not None:
            out[out_prefix + mapped] = v
    return out


def _cal_rename(name: str) -> str | None:
    """Simple-CCReID's nn.Sequential(*resnet50.children()[:-2]) indices as torchvision names."""
    head, _, rest = name.partition(".")
    table = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    return f"{table[head]}.{rest}" if head in table else None


def _vit_from(state: dict, *, tokens: str, depth_key: str, dim: int, hidden: int, path: str, **kw):
    from reidtools.reid.reid_vit import ReidViT

    n = state[tokens].reshape(-1, dim).shape[0] - 1
    fits = [(s, st) for s in VIT_SIZES for st in VIT_STRIDES
            if ((s[0] - 16) // st + 1) * ((s[1] - 16) // st + 1) == n]
    if len(fits) != 1:
        raise ReidError(f"--model {path}: {n} patch positions match no released input size and stride "
                        f"({', '.join(f'{h}x{w}' for h, w in VIT_SIZES)} at stride {' or '.join(map(str, VIT_STRIDES))})")
    (h, w), stride = fits[0]
    depth = len({k.split(".")[depth_key.count(".")] for k in state if k.startswith(depth_key)})
    grid = ((h - 16) // stride + 1, (w - 16) // stride + 1)
    vit = ReidViT(dim=dim, depth=depth, heads=dim // 64, hidden=hidden, grid=grid, stride=stride, **kw)
    vit.image_size = (h, w)
    return vit


def _vit_name(vit) -> str:
    dim, depth = vit.pos_embed.shape[-1], len(vit.blocks)
    return "ViT-B/16" if (dim, depth) == (768, 12) else f"ViT ({dim}-d, {depth} blocks)"


CLIP_BLOCK = {"attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias",
              "attn.out_proj.weight": "attn.proj.weight", "attn.out_proj.bias": "attn.proj.bias",
              "ln_1.weight": "norm1.weight", "ln_1.bias": "norm1.bias", "ln_2.weight": "norm2.weight",
              "ln_2.bias": "norm2.bias", "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
              "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias"}


def _config(mapped: dict, path: str, fmt: str):
    from reidtools.reid.resnet_variants import published_config

    config = published_config(mapped)
    if config is None:
        raise ReidError(f"--model {path}: not a {fmt} bottleneck ResNet (ResNet-50/101/152) checkpoint "
                        "(basic-block ResNet-18/34 are not supported)")
    return config


def _depth(config) -> int:
    return 3 * sum(config.depths) + 2


def _build(fmt: str, state: dict, post_bn: bool, path: str) -> tuple[nn.Module, dict, tuple[str, ...], dict]:
    """(network, its state dict from `state`, key prefixes of `state` deliberately unused, info)."""
    if fmt == "torchreid":
        if "conv1.conv.weight" in state:
            from reidtools.reid.osnet import osnet_from_state_dict

            net = osnet_from_state_dict(state)
            mapped = {k: v for k, v in state.items() if not k.startswith("classifier.")}
            return net, mapped, ("classifier.",), {"architecture": "osnet", "feature": "fc" if net.fc else "pool"}
        fc = state["fc.0.weight"].shape[0] if "fc.0.weight" in state else 0
        mapped = _resnet_keys(state, "", "trunk.")
        net = TorchreidResNet(_config(mapped, path, fmt), fc)
        mapped.update({k: v for k, v in state.items() if k.startswith("fc.")})
        depth = _depth(net.trunk.net.config)
        return net, mapped, ("classifier.",), {"architecture": f"resnet{depth}_fc512" if fc else f"resnet{depth}",
                                               "feature": "fc" if fc else "pool"}
    if fmt == "fastreid":
        ibn = "backbone.layer1.0.bn1.IN.weight" in state
        if any(k.startswith("backbone.") and ".se." in k for k in state):
            raise ReidError(f"--model {path}: fast-reid SE-ResNet (WITH_SE) is not supported")
        mapped = _resnet_keys(state, "backbone.", "trunk.")
        config = _config(mapped, path, fmt)
        # fast-reid puts stage s's n non-local blocks after its last n bottlenecks (NL_s_idx), NL_s.j after the j-th
        count = {s: len({k.split(".")[2] for k in state if k.startswith(f"backbone.NL_{s + 1}.")}) for s in range(4)}
        nl = {s: sorted(config.depths[s] - 1 - i for i in range(n)) for s, n in count.items() if n}
        neck = [k for k in state if k.startswith("heads.bottleneck.") and k.endswith(".weight")]
        reduction = 0
        for k in neck:
            if state[k].dim() == 4:
                reduction = state[k].shape[0]
        pool = "gem-learned" if "heads.pool_layer.p" in state else "gem" if nl else "avg"
        inter = state[f"backbone.NL_{min(nl) + 1}.0.g.weight"].shape[0] if nl else 1
        net = FastreidNet(config=config, ibn=ibn, nonlocal_blocks=nl, nonlocal_inter=inter, pool=pool, reduction=reduction,
                          bnneck=bool(neck), post_bn=post_bn)
        for k, v in state.items():
            if k.startswith("backbone.NL_"):
                stage, j, rest = k[len("backbone.NL_"):].split(".", 2)
                mapped[f"trunk.nl.{int(stage) - 1}.{j}.{rest}"] = v
        for k, v in state.items():
            if k.startswith("heads.bottleneck."):
                layer, rest = k[len("heads.bottleneck."):].split(".", 1)
                target = "reduce" if reduction and layer == "0" else "bottleneck"
                mapped[f"{target}.{rest}"] = v
        if "heads.pool_layer.p" in state:
            mapped["p"] = state["heads.pool_layer.p"]
        arch = ("AGW" if nl else "BoT") + (" IBN-a" if ibn else "") + f" ResNet-{_depth(config)}"
        return net, mapped, ("heads.weight", "heads.cls_layer.", "heads.classifier."), {"architecture": arch}
    if fmt == "cal":
        dim = state["bn.weight"].shape[0]
        mapped = _resnet_keys(state, "base.", "trunk.", rename=_cal_rename)
        net = CalNet(_config(mapped, path, fmt), dim, post_bn)
        mapped.update({k: v for k, v in state.items() if k.startswith("bn.")})
        return net, mapped, (), {"architecture": f"CAL ResNet-{_depth(net.trunk.net.config)}",
                                 "pooling": "maxavg" if net.maxavg else "avg"}
    if fmt == "clipreid":
        if "image_encoder.layer1.0.conv1.weight" in state:
            raise ReidError(f"--model {path}: CLIP-ReID's RN50 image encoder is not supported (ViT-B/16 is)")
        if "cv_embed" in state:
            raise ReidError(f"--model {path}: CLIP-ReID with SIE camera/view embeddings (cv_embed) needs each test "
                            "image's camera index in the training set's numbering; not supported")
        e = "image_encoder."
        dim = state[e + "conv1.weight"].shape[0]
        vit = _vit_from(state, tokens=e + "positional_embedding", depth_key=e + "transformer.resblocks.", dim=dim,
                        hidden=state[e + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0], path=path,
                        patch_bias=False, ln_pre=True, act="quick_gelu", eps=1e-5,
                        proj_dim=state[e + "proj"].shape[1])
        net = ClipReidNet(vit, post_bn)
        mapped = {"vit.patch_embed.weight": state[e + "conv1.weight"],
                  "vit.cls_token": state[e + "class_embedding"].reshape(1, 1, -1),
                  "vit.pos_embed": state[e + "positional_embedding"].reshape(1, -1, dim),
                  "vit.proj": state[e + "proj"]}
        for k, v in state.items():
            if k.startswith(e + "ln_pre."):
                mapped["vit.ln_pre." + k.split(".")[-1]] = v
            elif k.startswith(e + "ln_post."):
                mapped["vit.norm." + k.split(".")[-1]] = v
            elif k.startswith(e + "transformer.resblocks."):
                i, rest = k[len(e + "transformer.resblocks."):].split(".", 1)
                if rest in CLIP_BLOCK:
                    mapped[f"vit.blocks.{i}.{CLIP_BLOCK[rest]}"] = v
            elif k.startswith(("bottleneck.", "bottleneck_proj.")):
                mapped[k] = v
        return net, mapped, ("classifier", "prompt_learner.", "text_encoder."), {"architecture": "CLIP-ReID " + _vit_name(vit)}
    if fmt == "transreid":
        if "base.sie_embed" in state:
            raise ReidError(f"--model {path}: TransReID with SIE (base.sie_embed) needs each test image's camera index "
                            "in the training set's numbering; not supported (use a checkpoint trained without SIE_CAMERA/SIE_VIEW)")
        dim = state["base.pos_embed"].shape[-1]
        jpm = "b1.0.norm1.weight" in state
        vit = _vit_from(state, tokens="base.pos_embed", depth_key="base.blocks.", dim=dim,
                        hidden=state["base.blocks.0.mlp.fc1.weight"].shape[0], path=path,
                        patch_bias="base.patch_embed.proj.bias" in state, act="gelu", eps=1e-6, jpm=jpm)
        net = TransReidNet(vit, post_bn)
        mapped = {}
        for k, v in state.items():
            if k.startswith("base.patch_embed.proj."):
                mapped["vit.patch_embed." + k.split(".")[-1]] = v
            elif k.startswith(("base.cls_token", "base.pos_embed", "base.blocks.", "base.norm.")):
                mapped["vit." + k[len("base."):]] = v
            elif k.startswith(("b1.", "b2.")):
                mapped["vit." + k] = v
            elif k.startswith("bottleneck"):
                mapped[k] = v
        return net, mapped, ("classifier", "base.fc."), {"architecture": "TransReID " + _vit_name(vit) + (" JPM" if jpm else "")}
    raise ReidError(f"--model-format {fmt!r} is not one of {', '.join(FORMATS)}")


def load_published(path: str, model_format: str = "auto", feature: str | None = None) -> FeatureModel:
    """A published checkpoint file as a FeatureModel (its test-time preprocessing and feature)."""
    state = read_state_dict(path)
    fmt = detect_format(state, path) if model_format == "auto" else model_format
    if fmt not in FORMATS:
        raise ReidError(f"--model-format {fmt!r} is not one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    feature = feature or spec.features[0]
    if feature not in spec.features:
        raise ReidError(f"--feature {feature!r}: a {fmt} model gives {', '.join(spec.features)}")
    try:
        net, mapped, unused, info = _build(fmt, state, feature == "post-bn", path)
    except KeyError as exc:
        raise ReidError(f"--model {path}: not a {fmt} checkpoint (no key {exc.args[0]!r})") from None
    want = net.state_dict()
    for k in want:   # BatchNorm step counters: not stored by older torch, never used at test time
        if k.endswith("num_batches_tracked") and k not in mapped:
            mapped[k] = want[k]
    missing = [k for k in want if k not in mapped]
    used = set(mapped)
    if missing:
        raise ReidError(f"--model {path}: not a {fmt} {info.get('architecture', '')} checkpoint: {len(missing)} "
                        f"tensors missing (first: {missing[0]})")
    for k, v in mapped.items():
        if k in want and tuple(want[k].shape) != tuple(v.shape):
            raise ReidError(f"--model {path}: {k} has shape {tuple(v.shape)}, the {fmt} architecture needs "
                            f"{tuple(want[k].shape)}")
    extra = [k for k in used if k not in want]
    if extra:
        raise ReidError(f"--model {path}: unexpected tensor {extra[0]} for a {fmt} model")
    net.load_state_dict({k: mapped[k] for k in want})
    consumed = _consumed(state, mapped, unused)
    leftover = [k for k in state if k not in consumed]
    if leftover:
        raise ReidError(f"--model {path}: {len(leftover)} tensors of the checkpoint are not understood as {fmt} "
                        f"(first: {leftover[0]}); is --model-format right?")
    size = spec.size or net.vit.input_size()
    prep = Preprocess(tuple(size), spec.mean_std[0], spec.mean_std[1], spec.interpolation)
    name = info.pop("feature", None) or feature
    return FeatureModel(net, prep, net.dim, feature=name, flip=spec.flip, source=os.fspath(path),
                        info={"format": fmt, **info})


def _consumed(state: dict, mapped: dict, unused: tuple[str, ...]) -> set[str]:
    """Keys of `state` that the mapping used (the same storage: reshapes are views) or deliberately
    leaves (classifiers, a text tower, BatchNorm step counters)."""
    used = {(v.data_ptr(), v.dtype) for v in mapped.values() if v.numel()}
    return {k for k, t in state.items()
            if k.startswith(unused) or k.endswith("num_batches_tracked") or (t.data_ptr(), t.dtype) in used}
