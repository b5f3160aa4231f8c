"""Features from an ONNX file written by `reid export`, run with onnxruntime.

The preprocessing is read from the file's metadata (reidtools.reid.export.METADATA_KEYS), so an
exported model is evaluated exactly as its torch original: same size, interpolation, mean/std, feature
and flip averaging.
"""

from __future__ import annotations

import logging

import numpy as np

from reidtools.errors import ReidError
from reidtools.reid.extract import Preprocess

log = logging.getLogger("reidtools")


def _floats(value: str, n: int, key: str, path: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(","))
    except ValueError:
        out = ()
    if len(out) != n:
        raise ReidError(f"{path}: ONNX metadata {key}={value!r} is not {n} comma-separated numbers")
    return out


def read_metadata(path: str) -> dict[str, str]:
    """The reid.* metadata_props of an ONNX file (onnxruntime's reader: no onnx package needed)."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        raise ReidError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    return dict(sess.get_modelmeta().custom_metadata_map)


def preprocess_from_metadata(meta: dict[str, str], path: str) -> Preprocess:
    need = ("reid.input_size", "reid.mean", "reid.std", "reid.channel_order", "reid.feature")
    missing = [k for k in need if k not in meta]
    if missing:
        raise ReidError(f"{path}: ONNX metadata lacks {', '.join(missing)} (not written by `reid export`; "
                        "the preprocessing cannot be known)")
    if meta["reid.channel_order"] != "RGB" or meta.get("reid.input_layout", "NCHW") != "NCHW":
        raise ReidError(f"{path}: ONNX input is {meta['reid.channel_order']} {meta.get('reid.input_layout')}; "
                        "only RGB NCHW is supported")
    try:
        h, w = (int(v) for v in meta["reid.input_size"].lower().split("x"))
    except ValueError:
        raise ReidError(f"{path}: ONNX metadata reid.input_size={meta['reid.input_size']!r} is not HxW") from None
    interp = meta.get("reid.interpolation", "bilinear")
    if interp not in ("bilinear", "bicubic"):
        raise ReidError(f"{path}: ONNX metadata reid.interpolation={interp!r} is not bilinear or bicubic")
    return Preprocess((h, w), _floats(meta["reid.mean"], 3, "reid.mean", path),
                      _floats(meta["reid.std"], 3, "reid.std", path), interp)


def providers(device: str | None) -> list[str]:
    """onnxruntime providers for --device: cpu -> CPU only; cuda[:N] -> CUDA; none given -> CUDA when
    this onnxruntime build has it and a GPU is there (onnxruntime-gpu lists its CUDA provider even on
    machines without CUDA libraries, and then logs a load failure before falling back)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device and not device.startswith("cuda"):
        if device != "cpu":
            raise ReidError(f"--device {device}: an ONNX model runs on cpu or cuda[:N]")
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in have and (device or _gpu_present()):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device:
        raise ReidError(f"--device {device}: this onnxruntime has no CUDA provider "
                        f"(available: {', '.join(have)})")
    return ["CPUExecutionProvider"]


def _gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


class OnnxFeatureModel:
    """Same interface as reidtools.reid.extract.FeatureModel: `prep`, `dim`, `flip`, `feature`,
    `to(device)`, and calling it on a preprocessed float32 NCHW batch."""

    def __init__(self, path: str):
        self.path = self.source = path
        self.meta = read_metadata(path)
        self.prep = preprocess_from_metadata(self.meta, path)
        self.feature = self.meta["reid.feature"]
        self.flip = self.meta.get("reid.flip_average", "false") == "true"
        try:
            self.dim = int(self.meta.get("reid.feature_dim", "0"))
        except ValueError:
            raise ReidError(f"{path}: ONNX metadata reid.feature_dim is not an integer") from None
        self.session = None

    def to(self, device: str | None = None) -> "OnnxFeatureModel":
        import onnxruntime as ort

        wanted = providers(device)
        if device and device.startswith("cuda:"):
            wanted = [("CUDAExecutionProvider", {"device_id": int(device.split(":")[1])}), "CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(self.path, opts, providers=wanted)
        active = self.session.get_providers()
        log.info("%s: onnxruntime on %s", self.path, active[0])
        if device and device.startswith("cuda") and active[0] != "CUDAExecutionProvider":
            raise ReidError(f"--device {device}: onnxruntime could not start its CUDA provider (running on {active[0]})")
        self.input = self.session.get_inputs()[0].name
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.session is None:
            self.to(None)
        out = self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(x), -1)
