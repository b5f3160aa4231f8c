"""SCHP-style human parsing through ONNX Runtime (e.g. IDM-VTON's parsing_lip.onnx / parsing_atr.onnx).

Preprocessing follows SCHP (Li et al., `SimpleFolderDataset` + `transform_logits`): the whole image
box is fitted, aspect ratio kept, into the model's input (LIP 473x473, ATR 512x512) by SCHP's affine
transform (bilinear, zero border), channels in BGR order, normalised with SCHP's
mean (0.406, 0.456, 0.485) / std (0.225, 0.224, 0.229); the logits are upsampled to the input size
(bilinear, align_corners) and warped back to the image by the inverse transform before the argmax.
The transform has no rotation, so both warps are separable and done with two small interpolation
matrices per axis (no OpenCV needed).

Input/output names and sizes come from the model: the input is the model's first input (N, 3, H, W);
the parsing output is the last 4-D output with as many channels as the label set (SCHP's fusion
output; IDM-VTON's code reads output[1] of three). 20 channels -> LIP, 18 -> ATR.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")

MEAN_BGR = np.array([0.406, 0.456, 0.485], dtype=np.float32)
STD_BGR = np.array([0.225, 0.224, 0.229], dtype=np.float32)
DEFAULT_SIZE = {"lip": (473, 473), "atr": (512, 512)}
CHANNELS = {20: "lip", 18: "atr"}


def interp_matrix(src: np.ndarray, n_in: int) -> np.ndarray:
    """(len(src), n_in) bilinear weights sampling a length-n_in signal at positions `src`
    (pixel centres at integers); neighbours outside [0, n_in) contribute zero (constant border)."""
    x0 = np.floor(src).astype(np.int64)
    f = (src - x0).astype(np.float32)
    m = np.zeros((len(src), n_in), dtype=np.float32)
    rows = np.arange(len(src))
    for idx, w in ((x0, 1 - f), (x0 + 1, f)):
        ok = (idx >= 0) & (idx < n_in)
        np.add.at(m, (rows[ok], idx[ok]), w[ok])
    return m


def box_transform(width: int, height: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """SCHP's `_box2cs` + `get_affine_transform` for the whole image, rotation 0:
    input x' = k * (x - cx) + W_in / 2 (same k for y). Returns (k, cx, cy, ...) as (k, cx, cy, aspect)."""
    in_h, in_w = size
    aspect = in_w / in_h
    w, h = float(width - 1), float(height - 1)
    cx, cy = w * 0.5, h * 0.5
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return in_w / w, cx, cy, aspect


def preprocess(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """RGB PIL image -> (3, H_in, W_in) float32, SCHP's warp, BGR, normalisation."""
    in_h, in_w = size
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)[:, :, ::-1]  # BGR like cv2.imread
    k, cx, cy, _ = box_transform(img.width, img.height, size)
    my = interp_matrix((np.arange(in_h) - in_h / 2) / k + cy, img.height)
    mx = interp_matrix((np.arange(in_w) - in_w / 2) / k + cx, img.width)
    warped = np.einsum("yh,hwc,xw->cyx", my, arr, mx, optimize=True)
    # cv2.warpAffine writes uint8 back; keep that rounding so results match SCHP's pipeline
    warped = np.clip(np.rint(warped), 0, 255) / 255.0
    return ((warped - MEAN_BGR[:, None, None]) / STD_BGR[:, None, None]).astype(np.float32)


def logits_to_labels(logits: np.ndarray, width: int, height: int, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) logits -> (height, width) uint8 labels: upsample to the input size (align_corners),
    warp back by the inverse transform, argmax."""
    in_h, in_w = size
    c, h, w = logits.shape
    up_y = interp_matrix(np.arange(in_h) * ((h - 1) / max(in_h - 1, 1)), h)
    up_x = interp_matrix(np.arange(in_w) * ((w - 1) / max(in_w - 1, 1)), w)
    k, cx, cy, _ = box_transform(width, height, size)
    back_y = interp_matrix(k * (np.arange(height) - cy) + in_h / 2, in_h)
    back_x = interp_matrix(k * (np.arange(width) - cx) + in_w / 2, in_w)
    my, mx = back_y @ up_y, back_x @ up_x  # the two linear maps per axis compose
    out = np.einsum("yh,chw,xw->cyx", my, logits.astype(np.float32), mx, optimize=True)
    return out.argmax(0).astype(np.uint8)


def choose_providers(device: str, available: list[str], cuda_devices: int) -> list:
    """ONNX Runtime providers for `device` (auto, cpu, cuda, cuda:N), from what is really there.

    onnxruntime-gpu lists CUDAExecutionProvider even on a machine without a GPU, and asking for it
    there prints an ERROR line; so CUDA is asked for only when torch also sees a GPU.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = 0
    if device.startswith("cuda"):
        _, _, num = device.partition(":")
        if num and not num.isdigit():
            raise ReidError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
        index = int(num or 0)
        if "CUDAExecutionProvider" not in available:
            raise ReidError(f"--device {device}: this onnxruntime has no CUDA provider (providers: "
                            f"{', '.join(available)}); install onnxruntime-gpu")
        if index >= cuda_devices:
            raise ReidError(f"--device {device}: {cuda_devices} CUDA device(s) visible")
    elif device != "auto":
        raise ReidError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    if "CUDAExecutionProvider" in available and cuda_devices > 0:
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _cuda_devices() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class SchpOnnx:
    """A parsing session: `__call__(images) -> list of uint8 label maps`; `.labels` is lip or atr."""

    def __init__(self, path: str, labels: str | None = None, device: str = "auto"):
        import os

        try:
            import onnxruntime as ort
        except ImportError:
            raise ReidError("the schp-onnx engine needs onnxruntime (pip install onnxruntime)") from None
        if not os.path.isfile(path):
            raise ReidError(f"--model {path!r}: no such ONNX file (pass the parsing model, e.g. parsing_lip.onnx)")
        wanted = choose_providers(device, ort.get_available_providers(), _cuda_devices())
        try:
            self.session = ort.InferenceSession(path, providers=wanted)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ReidError(f"--model {path!r}: onnxruntime cannot load it ({exc})") from None
        active = self.session.get_providers()[0]  # what the session really runs on, after any fallback
        log.info("schp-onnx: %s on %s (onnxruntime %s)", os.path.basename(path), active, ort.__version__)
        if wanted[0] != "CPUExecutionProvider" and active == "CPUExecutionProvider":
            log.warning("schp-onnx: CUDA was asked for but the session runs on the CPU (check the CUDA/cuDNN "
                        "libraries onnxruntime-gpu needs)")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        outputs = self.session.get_outputs()
        four = [i for i, o in enumerate(outputs) if len(o.shape) == 4]
        if not four:
            raise ReidError(f"--model {path!r}: no 4-D (N, C, H, W) logits output")
        if labels is None:
            known = [i for i in four if outputs[i].shape[1] in CHANNELS]
            if not known:
                raise ReidError(f"--model {path!r}: no output with 20 (LIP) or 18 (ATR) channels; pass --labels")
            labels = CHANNELS[outputs[known[-1]].shape[1]]
        n = {"lip": 20, "atr": 18}[labels]
        match = [i for i in four if outputs[i].shape[1] == n] or [i for i in four if not isinstance(outputs[i].shape[1], int)]
        if not match:
            raise ReidError(f"--model {path!r}: no output with {n} channels for --labels {labels}")
        self.output_index = match[-1]
        self.labels = labels
        h, w = inp.shape[2], inp.shape[3]
        self.size = (h, w) if isinstance(h, int) and isinstance(w, int) else DEFAULT_SIZE[labels]
        self.batched = not isinstance(inp.shape[0], int)  # a fixed batch dim: one image per call

    def __call__(self, images: list[Image.Image]) -> list[np.ndarray]:
        x = np.stack([preprocess(im, self.size) for im in images])
        if self.batched:
            logits = self.session.run(None, {self.input_name: x})[self.output_index]
        else:
            logits = np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[self.output_index]
                                     for i in range(len(x))])
        return [logits_to_labels(logits[i], im.width, im.height, self.size) for i, im in enumerate(images)]
