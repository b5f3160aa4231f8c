"""Load a run folder and extract ReID features (what `reid eval --model` and `reid refine` use)."""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from reidtools.errors import ReidError


def load_run(run_dir: str):
    """The trained ReidModel of a run folder, in eval mode on the CPU (architecture rebuilt from the
    saved backbone config: no hub access). `model.run_config` holds the run's config.yaml."""
    from reidtools.reid import run as runio
    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.heads import ReidModel

    data = runio.read_config(run_dir)
    opts = data["options"]
    weights = os.path.join(run_dir, runio.WEIGHTS)
    if not os.path.isfile(weights):
        raise ReidError(f"{run_dir}: no {runio.WEIGHTS} (training did not finish; "
                        f"`reid train ... -o {run_dir} --resume` continues it)")
    backbone = build_backbone(opts["backbone"], config_dict=data["backbone_config"])
    model = ReidModel(backbone, int(data["num_ids"]), pooling=opts["pooling"])
    state = {k: v for k, v in runio.load_weights(weights).items() if not k.startswith("clothes_classifier.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ReidError(f"{weights}: weights do not match the run's architecture ({str(exc).splitlines()[0]})") from None
    model.eval()
    model.run_config = data
    return model


def _to_array(sample: dict, size) -> np.ndarray:
    from PIL import Image

    from reidtools.shards import image

    img = image(sample)
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def extract_features(run_dir, samples: Iterable[dict], *, batch_size: int = 128, device=None,
                     progress: bool = True) -> np.ndarray:
    """float32 (N, D) features of `samples` (sample dicts, in order): the BNNeck output averaged over
    the image and its horizontal flip (as Simple-CCReID's extract_img_feature); not L2-normalised.
    Batched, on `device` or the best one available."""
    import torch
    from tqdm import tqdm

    from reidtools.reid.data import normalize
    from reidtools.runtime import best_device

    model = load_run(run_dir)
    dev = best_device(device)
    model.to(dev)
    size = tuple(model.run_config["options"]["size"])
    feats: list[np.ndarray] = []
    bar = tqdm(desc="features", unit="img", disable=not progress, leave=False, dynamic_ncols=True)

    def flush(buf):
        x = normalize(torch.from_numpy(np.stack(buf))).to(dev)
        with torch.no_grad():
            f = model.features(x) + model.features(torch.flip(x, dims=[3]))
        feats.append((f / 2).float().cpu().numpy())
        bar.update(len(buf))

    buf: list[np.ndarray] = []
    for sample in samples:
        buf.append(_to_array(sample, size))
        if len(buf) == batch_size:
            flush(buf)
            buf = []
    if buf:
        flush(buf)
    bar.close()
    if not feats:
        return np.zeros((0, model.dim), dtype=np.float32)
    return np.concatenate(feats).astype(np.float32, copy=False)
