"""Human parsing with a transformers semantic-segmentation model (default mattmdjaga/segformer_b2_clothes, ATR).

Loaded by hub id or folder through `resolve_model`, then AutoImageProcessor + AutoModelForSemanticSegmentation.
The label set is read from the model's `id2label`: names equal to ATR's or LIP's (case-insensitive)
select that set; otherwise pass --labels.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from reidtools.data.labels import LABEL_SETS
from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
DEFAULT_MODEL = "mattmdjaga/segformer_b2_clothes"


def label_set_of(id2label: dict, override: str | None = None) -> str:
    names = [str(id2label[k]).lower().replace("_", "-") for k in sorted(id2label, key=int)]
    if override:
        if len(names) != len(LABEL_SETS[override]):
            raise ReidError(f"the model has {len(names)} labels; --labels {override} has {len(LABEL_SETS[override])}")
        return override
    for name, table in LABEL_SETS.items():
        if names == table:
            return name
    raise ReidError(f"the model's labels ({', '.join(names[:5])}, ...) are neither LIP nor ATR; pass --labels")


class SegformerParser:
    def __init__(self, model: str = DEFAULT_MODEL, labels: str | None = None, device: str = "auto"):
        from reidtools.hub import resolve_model

        path = resolve_model(model)  # before the heavy imports: a missing model fails fast
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        from reidtools.runtime import best_device

        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = AutoModelForSemanticSegmentation.from_pretrained(path).eval()
        self.device = best_device(None if device == "auto" else device)
        self.model.to(self.device)
        self.labels = label_set_of(self.model.config.id2label, labels)
        self.torch = torch
        log.info("segformer: %s (%s labels) on %s", model, self.labels, self.device)

    def __call__(self, images: list[Image.Image]) -> list[np.ndarray]:
        torch = self.torch
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(pixel_values=inputs["pixel_values"].to(self.device)).logits
        out = []
        for i, im in enumerate(images):
            up = torch.nn.functional.interpolate(logits[i:i + 1].float(), size=(im.height, im.width),
                                                 mode="bilinear", align_corners=False)
            out.append(up[0].argmax(0).to(torch.uint8).cpu().numpy())
        return out
