"""The ReID model: backbone, pooling, BNNeck, identity classifier and (CAL) clothes classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidtools.reid.backbones import Backbone

POOLINGS = ("avg", "maxavg")


class NormalizedClassifier(nn.Module):
    """Cosine logits cos(f, w_c) (CAL's clothes classifier; the loss applies the scale)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, x: torch.Tensor, detach_weight: bool = False) -> torch.Tensor:
        w = self.weight.detach() if detach_weight else self.weight
        return F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()


class ReidModel(nn.Module):
    """forward(x) -> dict(feat: pooled feature (triplet/HSAL), bn: after BNNeck (inference feature),
    logits: identity logits). In eval mode `features(x)` gives the inference feature."""

    def __init__(self, backbone: Backbone, n_ids: int, n_clothes: int = 0, pooling: str = "avg"):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        dim = backbone.out_dim * (2 if pooling == "maxavg" and backbone.kind == "resnet" else 1)
        self.dim = dim
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)   # BNNeck: the shift is frozen at 0 (Luo et al. 2019)
        nn.init.constant_(self.bnneck.weight, 1.0)
        nn.init.constant_(self.bnneck.bias, 0.0)
        self.classifier = nn.Linear(dim, n_ids, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.clothes_classifier = NormalizedClassifier(dim, n_clothes) if n_clothes else None

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:   # ViT: class token
            return x
        avg = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.pooling == "maxavg":  # CAL: concatenated global max and average pooling
            return torch.cat([F.adaptive_max_pool2d(x, 1).flatten(1), avg], dim=1)
        return avg

    def forward(self, x: torch.Tensor) -> dict:
        feat = self.pool(self.backbone(x))
        bn = self.bnneck(feat)
        return {"feat": feat, "bn": bn, "logits": self.classifier(bn)}

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bnneck(self.pool(self.backbone(x)))
