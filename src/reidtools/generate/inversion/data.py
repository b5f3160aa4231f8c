"""DiVE's training set (seed 002 §3): images grouped by identity and camera, one token per identity
and one random code per camera (or modality), and the captions that pair them."""

from __future__ import annotations

import io
import logging
import re
import string
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reidtools.errors import ReidError, SampleError
from reidtools.seeding import rng

if TYPE_CHECKING:
    from reidtools.generate.inversion.training import FitOptions

log = logging.getLogger("reidtools")

CODE_ALPHABET = string.ascii_letters + string.digits
# seed 002 §3 (Unified Mapping Function): "a [k] photo of [p] person"
PAPER_TEMPLATE = "a {camera} photo of {id} person"


@dataclass
class TrainSet:
    """Training images with identity and camera keys.

    With one dataset an identity key is its pid ("17") and a camera key is modality+camid ("ir3");
    with several (DiVE trains on Market-1501 RGB + SYSU-MM01 RGB/IR together) both are prefixed with
    the dataset ("market/17", "sysu-ir3"), so equal pids of different datasets stay different people.
    """
    images: list = field(default_factory=list)      # encoded image bytes (decoded per step)
    ids: list = field(default_factory=list)         # identity key per image
    cameras: list = field(default_factory=list)     # camera key per image
    id_info: dict = field(default_factory=dict)     # identity key -> {"pid", "dataset"}
    cam_info: dict = field(default_factory=dict)    # camera key -> {"modality", "camid", "dataset"}
    skipped: dict = field(default_factory=dict)     # identity key -> number of images (too few)
    multi: bool = False                             # several datasets


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower()) or "d"


def read_train_set(shards: list[str], opts: FitOptions) -> TrainSet:
    """Images grouped by identity; identities with fewer than `min_images_per_id` images dropped."""
    from reidtools.shards import image_field, iter_samples, require

    rows: list[tuple] = []
    for sample in iter_samples(shards):
        m = require(sample, "pid", "camid", hint="`reid invert fit` learns one token per pid and one code per camera")
        field_name = image_field(sample)
        if field_name is None:
            raise SampleError(sample["__shard__"], sample["__key__"], "no image field")
        data = sample[field_name]
        if not isinstance(data, (bytes, bytearray)):
            buf = io.BytesIO()
            data.convert("RGB").save(buf, format="PNG")
            data = buf.getvalue()
        rows.append((m.get("dataset"), int(m["pid"]), m.get("modality") or "rgb", int(m["camid"]), bytes(data)))
    multi = len({r[0] for r in rows}) > 1
    per_id: dict[str, list] = defaultdict(list)
    ts = TrainSet(multi=multi)
    for ds, pid, modality, camid, data in rows:
        ikey = f"{ds}/{pid}" if multi else str(pid)
        cam = modality if opts.codes_per == "modality" else f"{modality}{camid}"
        ckey = f"{_slug(str(ds))}-{cam}" if multi else cam
        ts.id_info[ikey] = {"pid": pid, "dataset": ds}
        ts.cam_info[ckey] = {"modality": modality, "camid": None if opts.codes_per == "modality" else camid,
                             "dataset": ds}
        per_id[ikey].append((data, ckey))
    for ikey in sorted(per_id, key=lambda k: (str(ts.id_info[k]["dataset"]), ts.id_info[k]["pid"])):
        items = per_id[ikey]
        if len(items) < opts.min_images_per_id:
            ts.skipped[ikey] = len(items)
            del ts.id_info[ikey]
            continue
        for data, ckey in items:
            ts.images.append(data)
            ts.ids.append(ikey)
            ts.cameras.append(ckey)
    if ts.skipped:
        log.info("skipped %d identities with fewer than %d images (--min-images-per-id)",
                 len(ts.skipped), opts.min_images_per_id)
    if not ts.images:
        raise ReidError(f"no identity has at least {opts.min_images_per_id} images (--min-images-per-id)")
    return ts


def id_token(info: dict, multi: bool) -> str:
    """`<id_17>`, or `<id_market1501_17>` when several datasets are trained together."""
    return f"<id_{_slug(str(info['dataset']))}_{info['pid']}>" if multi else f"<id_{info['pid']}>"


def camera_codes(keys, length: int, seed: int) -> dict[str, str]:
    """A random, fixed code of `length` letters/digits per camera key (paper: 8, e.g. "b8zBXKoH").

    Drawn from (seed, key), so a camera's code does not depend on which other cameras exist. CLIP's
    tokenizer lowercases text, so codes are kept distinct after lowercasing.
    """
    codes: dict[str, str] = {}
    seen: set[str] = set()
    for key in sorted(keys):
        attempt = 0
        while True:
            r = rng(seed, "camera-code", key, attempt)
            code = "".join(CODE_ALPHABET[i] for i in r.integers(0, len(CODE_ALPHABET), length))
            if code.lower() not in seen:
                break
            attempt += 1
        seen.add(code.lower())
        codes[key] = code
    return codes


def caption(template: str, code: str, token: str, with_id: bool) -> str:
    return template.format(camera=code, id=token) if with_id else code
