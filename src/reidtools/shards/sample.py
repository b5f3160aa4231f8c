"""The sample contract: keys, fields, metadata; decoding and encoding of fields.

A sample is a dict: `__key__` (str), `__shard__` (the shard it was read from, for messages) and one
entry per field (`jpg`, `json`, `mask.png`, ...). Fields read from a shard stay raw `bytes` until a
helper here decodes them, so untouched fields pass through a tool bit-exact. Writers accept bytes,
dicts (json), PIL images (encoded by the field's extension), numpy arrays (`npy`) and str.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
from PIL import Image

from reidtools.errors import SampleError
from reidtools.shards.images import decode

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
IMAGE_FIELDS = ("jpg", "png", "jpeg", "webp")
SPLITS = ("train", "query", "gallery", "val")
MODALITIES = ("rgb", "ir")
_INT64 = (-(2**63), 2**63 - 1)
_META_TYPES = {
    "dataset": str,
    "split": str,
    "pid": int,
    "camid": int,
    "clothes": str,
    "modality": str,
    "source": str,
    "history": list,
}


def where(sample: dict) -> tuple[str, str]:
    return sample.get("__shard__", "<memory>"), sample.get("__key__", "?")


def check_key(key: str, shard: str) -> None:
    if not KEY_RE.match(key):
        raise SampleError(shard, key, "key must match [A-Za-z0-9_-]+ (no dots, slashes or spaces)")


def meta(sample: dict) -> dict:
    """The decoded metadata (decoded once, then kept as a dict in the sample)."""
    value = sample.get("json")
    if value is None:
        raise SampleError(*where(sample), "missing field 'json' (every sample needs its metadata)")
    if isinstance(value, (bytes, bytearray)):
        try:
            value = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SampleError(*where(sample), f"field 'json' is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise SampleError(*where(sample), "field 'json' must be a JSON object")
        sample["json"] = value
    return value


def validate(sample: dict) -> dict:
    """Check the key, the presence of metadata and the types of the contract's fields; return meta."""
    shard, key = where(sample)
    check_key(key, shard)
    m = meta(sample)
    for name, typ in _META_TYPES.items():
        if name in m and m[name] is not None:
            ok = isinstance(m[name], typ) and not (typ is int and isinstance(m[name], bool))
            if not ok:
                raise SampleError(shard, key, f"metadata '{name}' must be {typ.__name__}, got {m[name]!r}")
            # JSON integers are unbounded; ids go into int64 arrays and tensors downstream
            if typ is int and not _INT64[0] <= m[name] <= _INT64[1]:
                raise SampleError(shard, key, f"metadata '{name}' {m[name]} does not fit a 64-bit integer")
    if m.get("split") is not None and m["split"] not in SPLITS:
        raise SampleError(shard, key, f"metadata 'split' must be one of {', '.join(SPLITS)}, got {m['split']!r}")
    if m.get("modality") is not None and m["modality"] not in MODALITIES:
        raise SampleError(shard, key, f"metadata 'modality' must be rgb or ir, got {m['modality']!r}")
    return m


def require(sample: dict, *names: str, hint: str | None = None) -> dict:
    """The metadata, after checking that every name in `names` is present (else a clear error)."""
    m = meta(sample)
    missing = [n for n in names if m.get(n) is None]
    if missing:
        msg = f"metadata lacks {', '.join(repr(n) for n in missing)}"
        raise SampleError(*where(sample), msg + (f": {hint}" if hint else ""))
    return m


def image_field(sample: dict) -> str | None:
    return next((f for f in IMAGE_FIELDS if f in sample), None)


def _decode_image(sample: dict, field: str, mode: str) -> Image.Image:
    shard, key = where(sample)
    # parse maps hold label ids (a palette image's indices), masks hold intensities
    labels = field.split(".", 1)[0] == "parse"
    return decode(sample[field], mode, shard=shard, key=key, field=field, labels=labels)


def image(sample: dict) -> Image.Image:
    """The person image as RGB."""
    field = image_field(sample)
    if field is None:
        raise SampleError(*where(sample), f"no image field (expected one of {', '.join(IMAGE_FIELDS)})")
    return _decode_image(sample, field, "RGB")


def rgb_field(sample: dict, field: str) -> Image.Image:
    """Another image field (e.g. `garment.png`) as RGB, with the same decoding checks as `image`."""
    if field not in sample:
        raise SampleError(*where(sample), f"missing field '{field}'")
    return _decode_image(sample, field, "RGB")


def mask(sample: dict, field: str = "mask.png", hint: str | None = "run `reid mask` first") -> Image.Image:
    """A label/mask image in L mode (never converted through RGB, so label ids survive)."""
    if field not in sample:
        raise SampleError(*where(sample), f"missing field '{field}'" + (f": {hint}" if hint else ""))
    return _decode_image(sample, field, "L")


def array(sample: dict, field: str = "feat.npy") -> np.ndarray:
    value = sample.get(field)
    if value is None:
        raise SampleError(*where(sample), f"missing field '{field}'")
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.load(io.BytesIO(value), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SampleError(*where(sample), f"field '{field}' is not a readable .npy array ({exc})") from None


def encode_field(field: str, value: Any) -> bytes:
    """Bytes for a tar member, by the field's type and extension."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return buf.getvalue()
    if isinstance(value, Image.Image):
        ext = field.rsplit(".", 1)[-1].lower()
        fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(ext)
        if fmt is None:
            raise ValueError(f"cannot encode an image into field {field!r}")
        img = value.convert("RGB") if fmt == "JPEG" and value.mode not in ("RGB", "L") else value
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        return buf.getvalue()
    raise TypeError(f"cannot encode field {field!r} of type {type(value).__name__}")


def history_entry(tool: str, *, model: str | None = None, seed: int | None = None,
                  prompt: str | None = None, **parameters: Any) -> dict:
    """One `history` record: which tool made a sample and with what."""
    entry: dict[str, Any] = {"tool": tool}
    if model is not None:
        entry["model"] = model
    if seed is not None:
        entry["seed"] = int(seed)
    if prompt is not None:
        entry["prompt"] = prompt
    if parameters:
        entry["parameters"] = parameters
    return entry


def derive(sample: dict, key: str, entry: dict, **fields: Any) -> dict:
    """A new sample made from `sample`: metadata copied, `source` set, `history` extended.

    `fields` become the new sample's fields (e.g. `jpg=PIL image`); metadata updates go in
    `fields["json"]` as a dict and are merged over the copy.
    """
    m = dict(meta(sample))
    updates = fields.pop("json", {}) or {}
    m["source"] = sample["__key__"]
    m["history"] = list(m.get("history", [])) + [entry]
    m.update(updates)
    out = {"__key__": key, "__shard__": sample.get("__shard__", "<memory>"), "json": m}
    out.update(fields)
    return out
