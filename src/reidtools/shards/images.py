"""Decoding image fields: a pixel cap checked before decoding, and correct 8-bit conversion per mode.

Pillow's own `convert("RGB"/"L")` clips 16-bit and 32-bit pixels instead of scaling them (a 16-bit
PNG comes out nearly all white) and drops alpha, showing whatever colour transparent pixels hold.
Here:

- `I;16*` and `I` are 16-bit data (what 16-bit PNG/TIFF decode to): 8-bit = round(v * 255 / 65535);
  `I` is clipped to 0..65535 first.
- `F` is the floating-point convention 0.0..1.0: 8-bit = round(clip(v, 0, 1) * 255).
- Alpha (`RGBA`, `LA`, `PA`, `P` with transparency) is composited over white, the background of
  catalogue and cut-out person images.
- `CMYK`, `YCbCr`, `1` and `L` go through Pillow's conversions (exact for these modes).
- Label maps (`parse.png`) keep their ids: palette images give their indices, 16-bit maps must hold
  ids below 256.

The cap (`--max-pixels`, env `REID_MAX_PIXELS`) is checked on the header, so a crafted 20000x20000
PNG of a few hundred KB is refused before any pixel is allocated.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from reidtools.errors import SampleError

# 4096 x 4096: far above any person crop, try-on frame or full-HD camera frame, far below an
# image that would take gigabytes once decoded (and then again per conversion)
DEFAULT_MAX_PIXELS = 4096 * 4096
ENV = "REID_MAX_PIXELS"
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def _env_cap() -> int:
    try:
        return max(1, int(os.environ.get(ENV, DEFAULT_MAX_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_PIXELS


_cap = {"pixels": _env_cap()}


def set_max_pixels(pixels: int) -> None:
    """Set the per-image cap for this process and (through the environment) for its workers."""
    _cap["pixels"] = int(pixels)
    os.environ[ENV] = str(int(pixels))
    # Pillow refuses at twice its own limit; let our cap be the one that speaks
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = int(pixels)


def max_pixels() -> int:
    return _cap["pixels"]


def open_image(data: bytes, *, shard: str, key: str | None, field: str) -> Image.Image:
    """Decode `data` (a field's bytes), refusing images above the pixel cap before decoding them."""
    cap = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > cap:
                raise SampleError(shard, key, f"field '{field}' is {w}x{h} = {w * h} pixels, above the cap of "
                                              f"{cap} (raise it with --max-pixels or {ENV})")
            img.load()
    except Image.DecompressionBombError as exc:
        raise SampleError(shard, key, f"field '{field}' is above the pixel cap of {cap} ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SampleError(shard, key, f"field '{field}' is not a readable image ({exc})") from None
    return img


def _gray8(img: Image.Image) -> Image.Image | None:
    """16-bit, 32-bit and float single-channel images scaled to L; None for other modes."""
    if img.mode in _SIXTEEN_BIT or img.mode == "I":
        v = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), "L")
    if img.mode == "F":
        v = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
        return Image.fromarray(np.rint(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8), "L")
    return None


def _over_white(img: Image.Image) -> Image.Image:
    rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)
    alpha = rgba[..., 3:4]
    rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def to_rgb(img: Image.Image, *, shard: str = "<memory>", key: str | None = None, field: str = "image") -> Image.Image:
    """An 8-bit RGB image with the pixel values the source means (see the module docstring)."""
    if img.mode == "RGB":
        return img
    gray = _gray8(img)
    if gray is not None:
        return gray.convert("RGB")
    if img.mode in _ALPHA or (img.mode == "P" and "transparency" in img.info):
        return _over_white(img)
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise SampleError(shard, key, f"field '{field}': image mode {img.mode} cannot be read as RGB ({exc})") from None


def to_gray(img: Image.Image, *, labels: bool = False, shard: str = "<memory>", key: str | None = None,
            field: str = "mask.png") -> Image.Image:
    """An L image: intensities for masks; for label maps (`labels=True`) the ids themselves."""
    if img.mode == "L":
        return img
    if labels:
        if img.mode == "P":
            return Image.fromarray(np.asarray(img).astype(np.uint8), "L")
        if img.mode in _SIXTEEN_BIT or img.mode == "I":
            ids = np.asarray(img)
            if ids.size and (ids.min() < 0 or ids.max() > 255):
                raise SampleError(shard, key, f"field '{field}': label ids {int(ids.min())}..{int(ids.max())} "
                                              "do not fit an 8-bit label map (0..255)")
            return Image.fromarray(ids.astype(np.uint8), "L")
    gray = _gray8(img)
    if gray is not None:
        return gray
    if img.mode in _ALPHA or (img.mode == "P" and "transparency" in img.info):
        return _over_white(img).convert("L")
    try:
        return img.convert("L")
    except ValueError as exc:
        raise SampleError(shard, key, f"field '{field}': image mode {img.mode} cannot be read as L ({exc})") from None


def decode(data: bytes | Image.Image, mode: str = "RGB", *, shard: str = "<memory>", key: str | None = None,
           field: str = "image", labels: bool = False) -> Image.Image:
    """Bytes (or a PIL image) -> an 8-bit `RGB` or `L` image, capped and converted as documented above."""
    img = data if isinstance(data, Image.Image) else open_image(data, shard=shard, key=key, field=field)
    if mode == "RGB":
        return to_rgb(img, shard=shard, key=key, field=field)
    if mode == "L":
        return to_gray(img, labels=labels, shard=shard, key=key, field=field)
    raise ValueError(f"decode: mode must be RGB or L, not {mode!r}")
