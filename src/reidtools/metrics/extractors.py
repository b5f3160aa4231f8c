"""Feature extractors for generation quality: a ReID model (`reid train` run folder, `reid export`
ONNX file or published checkpoint: reidtools.reid.extract), a transformers vision model (hub id in
the local cache, or folder), or the `feat.npy` already stored in the samples."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from reidtools.errors import ReidError, SampleError

Extract = Callable[[list], np.ndarray]   # samples -> float32 (N, D)


def describe(extractor: str | None) -> str:
    if extractor is None:
        return "feat.npy"
    return str(extractor)


def is_run_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.yaml")) and \
        os.path.isfile(os.path.join(path, "model.safetensors"))


def stored_features(samples: list) -> np.ndarray:
    from reidtools.shards import array

    rows = []
    for s in samples:
        if "feat.npy" not in s:
            raise SampleError(s["__shard__"], s["__key__"], "no 'feat.npy' (pass --extractor, or write features "
                                                            "with `reid eval --save-features`)")
        f = np.asarray(array(s), dtype=np.float32).reshape(-1)
        if rows and f.shape != rows[0].shape:
            raise SampleError(s["__shard__"], s["__key__"], f"'feat.npy' has {f.size} values, others {rows[0].size}")
        rows.append(f)
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def vision_model_extractor(model: str, *, batch_size: int = 64, device: str | None = None) -> Extract:
    """Pooled output of a transformers vision model (CLIPVisionModel for CLIP checkpoints, else
    AutoModel's `pooler_output`, or the mean of `last_hidden_state` when there is none), with the
    model's own image processor."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPVisionModel

    from reidtools.hub import resolve_model
    from reidtools.runtime import best_device
    from reidtools.shards import image

    path = resolve_model(model)
    try:
        cfg = AutoConfig.from_pretrained(path)
        processor = AutoImageProcessor.from_pretrained(path)
        if cfg.model_type in ("clip", "clip_vision_model"):
            net = CLIPVisionModel.from_pretrained(path)
        else:
            net = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ReidError(f"--extractor {model}: not a transformers vision model with an image processor "
                        f"({str(exc).splitlines()[0]})") from None
    dev = best_device(device)
    net.to(dev).eval()

    def run(samples: list) -> np.ndarray:
        out = []
        for i in range(0, len(samples), batch_size):
            imgs = [image(s) for s in samples[i:i + batch_size]]
            pix = processor(images=imgs, return_tensors="pt")["pixel_values"].to(dev)
            with torch.no_grad():
                res = net(pixel_values=pix)
            pooled = getattr(res, "pooler_output", None)
            if pooled is None:
                pooled = res.last_hidden_state.mean(1)
            out.append(pooled.reshape(len(imgs), -1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return run


def reid_run_extractor(model, *, batch_size: int = 128, device: str | None = None,
                       progress: bool = False) -> Extract:
    """A ReID model: a path (run folder, .onnx, published checkpoint) or a ModelSource, opened once."""
    from reidtools.reid.extract import ModelSource, extract_features

    source = ModelSource(model) if isinstance(model, str) else model

    def run(samples: list) -> np.ndarray:
        return extract_features(source, samples, batch_size=batch_size, device=device, progress=progress)

    return run


def make_extractor(extractor: str | None, *, batch_size: int = 64, device: str | None = None,
                   progress: bool = False) -> Extract:
    if extractor is None:
        return stored_features
    if not isinstance(extractor, str) or is_run_dir(extractor) or os.path.isfile(extractor):
        return reid_run_extractor(extractor, batch_size=batch_size, device=device, progress=progress)
    return vision_model_extractor(extractor, batch_size=batch_size, device=device)
