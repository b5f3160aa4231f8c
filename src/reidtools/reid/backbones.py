"""Backbones through transformers, so that `--pretrained microsoft/resnet-50` or
`openai/clip-vit-base-patch16` (or a local folder) load real weights, and `none` trains from scratch.

- ResNet-50 (`resnet50`): `ResNetModel`, with the last stage's stride set to 1 (the standard ReID
  trick of BoT/CAL: a 16x8 instead of 8x4 map at 256x128). Output: the last feature map.
- CLIP ViT-B/16 image encoder (`vit-b16`): `CLIPVisionModel` with positional embeddings interpolated
  to the ReID input size. Output: the class token after the final layer norm (`pooler_output`).
- CLIP ViT-B/16 with CLIP's visual projection (`clip-b16`): `CLIPVisionModelWithProjection`, the class
  token projected to 512-d (`image_embeds`), as CLIP-ReID / DCAC use it; `clip-tiny` for tests.
- `resnet-small`: a ResNet-10-like config for CPU demos; `resnet-tiny` / `vit-tiny`: tiny configs for tests.
"""

from __future__ import annotations

import torch
from torch import nn

from reidtools.errors import ReidError

BACKBONES = ("resnet50", "vit-b16", "clip-b16", "resnet-small", "resnet-tiny", "vit-tiny", "clip-tiny")
DEFAULT_PRETRAINED = {"resnet50": "microsoft/resnet-50", "vit-b16": "openai/clip-vit-base-patch16",
                      "clip-b16": "openai/clip-vit-base-patch16",
                      "resnet-small": "none", "resnet-tiny": "none", "vit-tiny": "none", "clip-tiny": "none"}


def family(name: str) -> str:
    return "vit" if name.startswith(("vit", "clip")) else "resnet"


def projected(name: str) -> bool:
    """CLIP image encoders ending in CLIP's visual projection (512-d for ViT-B/16)."""
    return name.startswith("clip")


def default_config(name: str):
    from transformers import CLIPVisionConfig, ResNetConfig

    if name == "resnet50":
        return ResNetConfig(embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], depths=[3, 4, 6, 3],
                            layer_type="bottleneck", hidden_act="relu")
    if name == "resnet-small":   # a ResNet-10-like net for CPU demos (basic blocks, 1.2M parameters)
        return ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
                            layer_type="basic", hidden_act="relu")
    if name == "resnet-tiny":
        return ResNetConfig(embedding_size=8, hidden_sizes=[16, 32, 32, 64], depths=[1, 1, 1, 1],
                            layer_type="bottleneck", hidden_act="relu")
    if name in ("vit-b16", "clip-b16"):
        return CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, patch_size=16, image_size=224, projection_dim=512)
    if name in ("vit-tiny", "clip-tiny"):
        return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, patch_size=8, image_size=32, projection_dim=32)
    raise ReidError(f"--backbone {name!r} is not one of {', '.join(BACKBONES)}")


def config_from_dict(name: str, data: dict):
    from transformers import CLIPVisionConfig, ResNetConfig

    cls = CLIPVisionConfig if family(name) == "vit" else ResNetConfig
    return cls.from_dict(data)


class Backbone(nn.Module):
    """A transformers vision model returning a feature map (ResNet) or a pooled token (ViT)."""

    def __init__(self, name: str, net: nn.Module):
        super().__init__()
        self.name, self.kind, self.net = name, family(name), net
        self.projected = projected(name)
        if self.kind == "resnet":
            _last_stride_one(net)
            self.out_dim = net.config.hidden_sizes[-1]
        elif self.projected:
            self.out_dim = net.config.projection_dim
        else:
            self.out_dim = net.config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "resnet":
            return self.net(pixel_values=x).last_hidden_state
        if self.projected:
            return self.net(pixel_values=x, interpolate_pos_encoding=True).image_embeds
        return self.net(pixel_values=x, interpolate_pos_encoding=True).pooler_output


def _projected_config(path: str) -> dict:
    """A full CLIP checkpoint (openai/clip-vit-base-patch16) keeps the projection size at its top level:
    give it to the vision config so `visual_projection` loads instead of being re-initialised."""
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(path)
    if getattr(conf, "model_type", None) != "clip":
        return {}
    vision = conf.vision_config
    vision.projection_dim = conf.projection_dim
    return {"config": vision}


def _last_stride_one(net: nn.Module) -> None:
    """Stride 1 in the first block of the last stage (its strided 3x3 conv and its shortcut)."""
    first = net.encoder.stages[-1].layers[0]
    for module in first.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


def resnet_model(last_stride: int = 1, config=None) -> nn.Module:
    """A random-weight ResNetModel (default: the `resnet50` backbone's config) with last stride 1 or 2:
    the trunk that published ReID checkpoints (reidtools.reid.published) are mapped onto."""
    from transformers import ResNetModel

    net = ResNetModel(config if config is not None else default_config("resnet50"))
    if last_stride == 1:
        _last_stride_one(net)
    elif last_stride != 2:
        raise ReidError(f"last stride {last_stride}: a ResNet's last stage has stride 1 or 2")
    return net


def build_backbone(name: str, pretrained: str = "none", config_dict: dict | None = None) -> Backbone:
    """`pretrained`: `none` (random init from the config), a hub id or a folder (via resolve_model).
    `config_dict` rebuilds a saved run's architecture without touching any hub."""
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection, ResNetModel

    if name not in BACKBONES:
        raise ReidError(f"--backbone {name!r} is not one of {', '.join(BACKBONES)}")
    cls = ResNetModel if family(name) == "resnet" else CLIPVisionModelWithProjection if projected(name) else CLIPVisionModel
    if config_dict is not None:
        return Backbone(name, cls(config_from_dict(name, config_dict)))
    if pretrained in (None, "", "none"):
        return Backbone(name, cls(default_config(name)))
    from reidtools.hub import resolve_model

    path = resolve_model(pretrained)
    try:
        if projected(name):   # a full CLIP checkpoint: its text tower is expected to be left out, quietly
            from transformers.utils import logging as hf_logging

            level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                net = cls.from_pretrained(path, **_projected_config(path))
            finally:
                hf_logging.set_verbosity(level)
        else:
            net = cls.from_pretrained(path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ReidError(f"--pretrained {pretrained}: cannot load a {cls.__name__} from {path} ({exc})") from None
    return Backbone(name, net)
