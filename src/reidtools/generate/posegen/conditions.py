"""The spatially aligned conditions of one target (Pose-dIVE §B): skeleton, depth and normal maps as
tensors, and the image fields they come from."""

from __future__ import annotations

import io

import numpy as np

from reidtools.errors import SampleError


def condition_tensors(pose: dict, extras: dict, conditions, size, threshold: float, where=("<memory>", "?")):
    """{name: float tensor (C, H, W) in [0, 1]} for one target: the rendered skeleton and the
    depth/normal images (resized to `size`)."""
    import torch
    from PIL import Image

    from reidtools.generate.posegen.guider import CONDITION_FIELDS
    from reidtools.vision.skeleton import render_skeleton

    h, w = size
    out = {}
    for name in conditions:
        if name == "skeleton":
            try:
                img = render_skeleton(pose, size, threshold=threshold)
            except (ValueError, KeyError, TypeError) as exc:
                raise SampleError(*where, f"cannot render the pose skeleton ({exc})") from None
        else:
            data = extras.get(name)
            if data is None:
                raise SampleError(*where, f"--conditions {name} needs the field {CONDITION_FIELDS[name]!r}")
            try:
                img = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
                if name == "depth" and img.mode.startswith("I;16"):
                    # `reid posegen poses` writes 16-bit depth: keep its precision (convert("L") clips)
                    img = Image.fromarray(np.asarray(img, dtype=np.float32) / 65535.0, "F")
                else:
                    from reidtools.shards.images import decode

                    img = decode(img, "L" if name == "depth" else "RGB", shard=where[0], key=where[1],
                                 field=CONDITION_FIELDS[name])
            except OSError as exc:
                raise SampleError(*where, f"field {CONDITION_FIELDS[name]!r} is not a readable image ({exc})") from None
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
        a = np.array(img, dtype=np.float32)
        a = a if img.mode == "F" else a / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out[name] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def pixels(img, size):
    """PIL image -> (3, H, W) tensor in [-1, 1] at `size`."""
    import torch
    from PIL import Image

    h, w = size
    img = img.convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0


def extras_of(sample: dict, conditions) -> dict:
    from reidtools.generate.posegen.guider import CONDITION_FIELDS

    return {c: sample[CONDITION_FIELDS[c]] for c in conditions if c in CONDITION_FIELDS and CONDITION_FIELDS[c] in sample}


def condition_fields(sample: dict, conditions) -> dict:
    from reidtools.generate.posegen.guider import CONDITION_FIELDS

    return {c: CONDITION_FIELDS[c] for c in conditions if c in CONDITION_FIELDS and CONDITION_FIELDS[c] in sample}


def image_bytes(sample: dict, name: str) -> bytes:
    data = sample[name]
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    buf = io.BytesIO()
    (data if data.mode in ("L", "RGB") else data.convert("RGB")).save(buf, format="PNG")
    return buf.getvalue()
