"""Load a ReID model and extract features (what `reid eval --model`, `reid refine --model` and the
generation-quality extractor use).

A model is opened into a `FeatureModel`: a network mapping normalised images (N, 3, H, W) to
features (N, D), plus how its images must be prepared (`Preprocess`) and whether its test protocol
averages each image with its horizontal flip. Three sources open into one: a `reid train` run
folder, an ONNX file written by `reid export` (run with onnxruntime, preprocessing read from its
metadata), and a published checkpoint of another toolkit (reidtools.reid.published).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import nn

from reidtools.errors import ReidError

MODEL_FORMATS = ("auto", "run", "onnx", "torchreid", "fastreid", "cal", "clipreid", "transreid")
RUN_FEATURES = ("post-bn", "pre-bn")


@dataclass(frozen=True)
class Preprocess:
    """How a model's images are prepared: RGB resized to `size` (H, W) with `interpolation` (PIL),
    scaled to [0, 1], then (x - mean) / std per channel, NCHW."""
    size: tuple[int, int]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def batch(self, samples: list[dict]) -> np.ndarray:
        from PIL import Image

        from reidtools.shards import image

        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[self.interpolation]
        h, w = self.size
        rows = []
        for s in samples:
            img = image(s)
            if img.size != (w, h):
                img = img.resize((w, h), resample)
            rows.append(np.asarray(img, dtype=np.uint8))
        x = np.stack(rows).astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class FeatureModel:
    """A torch network (normalised NCHW float -> (N, D) features) with its preprocessing.

    `feature` names the output (e.g. `post-bn`: after the BNNeck); `flip` says whether the test
    protocol averages the features of an image and its mirror; `info` is recorded by `reid export`."""

    def __init__(self, net, prep: Preprocess, dim: int, *, feature: str, flip: bool, source: str,
                 info: dict | None = None):
        self.net, self.prep, self.dim = net.eval(), prep, int(dim)
        self.feature, self.flip, self.source = feature, bool(flip), source
        self.info = dict(info or {})
        self.device = None

    def to(self, device=None) -> "FeatureModel":
        """Onto `device` (a name such as 'cpu' or 'cuda:1'), or the best one available."""
        from reidtools.runtime import best_device

        self.device = best_device(device)
        self.net.to(self.device)
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device or "cpu")
        with torch.no_grad():
            return self.net(t).float().cpu().numpy()


class RunFeatures(nn.Module):
    """One feature of a ReidModel: post-BN (the BNNeck output, the toolkit's test feature) or pre-BN
    (the pooled feature the triplet loss sees)."""

    def __init__(self, model, feature: str = "post-bn"):
        super().__init__()
        self.model, self.post_bn = model, feature == "post-bn"

    def forward(self, x):
        f = self.model.pool(self.model.backbone(x))
        return self.model.bnneck(f) if self.post_bn else f


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


def run_feature_model(run_dir: str, feature: str = "post-bn") -> FeatureModel:
    """A run folder as a FeatureModel: ImageNet statistics and bilinear resizing to the run's --size
    (reidtools.reid.data, as in training), flip-averaged (Simple-CCReID's extract_img_feature)."""
    from reidtools.reid.data import IMAGENET_MEAN, IMAGENET_STD

    if feature not in RUN_FEATURES:
        raise ReidError(f"--feature {feature!r}: a run folder gives one of {', '.join(RUN_FEATURES)}")
    model = load_run(run_dir)
    opts = model.run_config["options"]
    prep = Preprocess(tuple(opts["size"]), tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), "bilinear")
    return FeatureModel(RunFeatures(model, feature), prep, model.dim, feature=feature, flip=True, source=run_dir,
                        info={"format": "run", "backbone": opts["backbone"], "pooling": opts["pooling"]})


def is_run_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.yaml"))


def open_model(path: str, model_format: str = "auto", feature: str | None = None):
    """A FeatureModel (or an ONNX one) for `--model PATH`. `model_format` auto: a folder is a run, a
    `.onnx` file an export, any other file a published checkpoint recognised by its key names."""
    if model_format not in MODEL_FORMATS:
        raise ReidError(f"--model-format {model_format!r} is not one of {', '.join(MODEL_FORMATS)}")
    if model_format in ("auto", "run") and os.path.isdir(path):
        if not is_run_dir(path):
            raise ReidError(f"--model {path}: a folder but not a `reid train` run (no config.yaml)")
        return run_feature_model(path, feature or "post-bn")
    if model_format == "run":
        raise ReidError(f"--model {path}: --model-format run needs a `reid train` run folder")
    if not os.path.isfile(path):
        raise ReidError(f"--model {path}: no such run folder or model file")
    if model_format == "onnx" or (model_format == "auto" and path.lower().endswith(".onnx")):
        if feature is not None:
            raise ReidError(f"--model {path}: an ONNX model has one output; its feature was chosen at export")
        from reidtools.reid.onnx_features import OnnxFeatureModel

        return OnnxFeatureModel(path)
    from reidtools.reid.published import load_published

    return load_published(path, model_format, feature=feature)


class ModelSource:
    """`--model PATH` with its format, opened on first use and kept (query, gallery and variant
    sets share one loaded model). str() is the path, for messages."""

    def __init__(self, path: str, model_format: str = "auto", feature: str | None = None):
        self.path, self.model_format, self.feature = path, model_format, feature
        self._model = None

    def open(self):
        if self._model is None:
            self._model = open_model(self.path, self.model_format, self.feature)
        return self._model

    def __str__(self) -> str:
        return self.path


def extract_features(model, samples: Iterable[dict], *, batch_size: int = 128, device=None,
                     progress: bool = True, model_format: str = "auto") -> np.ndarray:
    """float32 (N, D) features of `samples` (sample dicts, in order); not L2-normalised.

    `model`: a path (run folder, .onnx, published checkpoint), a ModelSource or an opened model.
    Each model is fed as it was trained (its Preprocess) and gives its test-time feature, averaged
    with the mirrored image's where its protocol does (a run folder: the BNNeck output, flip-averaged
    as Simple-CCReID's extract_img_feature). Batched, on `device` or the best one available."""
    from tqdm import tqdm

    if isinstance(model, ModelSource):
        net = model.open()
    elif isinstance(model, (str, os.PathLike)):
        net = open_model(os.fspath(model), model_format)
    else:
        net = model
    net.to(device)
    feats: list[np.ndarray] = []
    bar = tqdm(desc="features", unit="img", disable=not progress, leave=False, dynamic_ncols=True)

    def flush(buf):
        x = net.prep.batch(buf)
        f = net(x)
        if net.flip:
            f = (f + net(np.ascontiguousarray(x[..., ::-1]))) / 2
        feats.append(np.asarray(f, dtype=np.float32))
        bar.update(len(buf))

    buf: list[dict] = []
    for sample in samples:
        buf.append(sample)
        if len(buf) == batch_size:
            flush(buf)
            buf = []
    if buf:
        flush(buf)
    bar.close()
    if not feats:
        return np.zeros((0, net.dim), dtype=np.float32)
    return np.concatenate(feats).astype(np.float32, copy=False)
