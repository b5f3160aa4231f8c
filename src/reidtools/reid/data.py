"""Training records from shards, label maps, and image transforms written in torch (no torchvision).

Records hold an index, not the images: for a local uncompressed tar (what `reid` writes) each image is
an `ImageRef` (shard, byte offset, size) read back with one `pread` when its batch is built, as `wids`
does, so training memory grows with the number of samples (about 0.5 KB each), not with their bytes
(DLCR scale, 71k images x 10 variants, would otherwise hold tens of GB in every process). Shards that
cannot be read at random (stdin, URLs, pipes, compressed tars) keep their encoded bytes in memory.
Every random choice of an augmentation derives from (seed, epoch, sample key, slot in the batch), so a
batch is a pure function of its position in training: resume is bit-exact, the number of loader
workers does not matter, and the index reads the very bytes the stream read.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image

from reidtools.errors import ReidError, SampleError
from reidtools.seeding import rng

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_VARIANT_RE = re.compile(r"-[A-Za-z]+(\d+)$")


class ImageRef(NamedTuple):
    """Where an encoded image lies in an uncompressed tar: its member data's offset and size."""
    path: str
    offset: int
    size: int


@dataclass
class Record:
    key: str
    pid: int
    camid: int
    clothes: str
    data: ImageRef | bytes | None  # the encoded image's place (or its bytes); None when only metadata was kept
    generated: bool = False
    source: str | None = None
    variant: int = 0              # order among the variants of one source (progressive learning)
    label: int = -1               # contiguous identity label
    clothes_label: int = -1
    dataset: str = ""


@dataclass
class LabelMaps:
    pids: dict[int, int] = field(default_factory=dict)        # dataset pid -> label
    clothes: dict[str, int] = field(default_factory=dict)     # clothes id (string) -> label
    pid_clothes: dict[int, list[int]] = field(default_factory=dict)  # label -> clothes labels worn

    def to_json(self) -> dict:
        return {"pids": {str(k): v for k, v in self.pids.items()}, "clothes": dict(self.clothes)}


_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")   # gzip, bzip2, xz, zstd


def _seekable_tar(shard: str) -> bool:
    """A local, uncompressed tar file: its members can be read back at their offsets."""
    from reidtools.shards.paths import STDIN, is_remote

    if shard == STDIN or is_remote(shard) or not os.path.isfile(shard):
        return False
    with open(shard, "rb") as fh:
        head = fh.read(6)
    return not any(head.startswith(m) for m in _COMPRESSED)


def tar_offsets(shard: str) -> dict[str, tuple[int, int]]:
    """{member name: (data offset, size)} of a local uncompressed tar, from its headers alone
    (ignore_zeros: concatenated shards, as the stream reader accepts them)."""
    out = {}
    with tarfile.open(shard, "r:", ignore_zeros=True) as tar:
        for member in tar:
            if member.isfile():
                out[member.name] = (member.offset_data, member.size)
    return out


class _ImageFiles:
    """Per-process open shard files for `ImageRef` reads (pread: no shared file position, fork-safe)."""

    def __init__(self):
        self.pid, self.fds = os.getpid(), {}

    def read(self, ref: ImageRef) -> bytes:
        if self.pid != os.getpid():      # a DataLoader worker: its own descriptors
            self.pid, self.fds = os.getpid(), {}
        fd = self.fds.get(ref.path)
        if fd is None:
            try:
                fd = self.fds[ref.path] = os.open(ref.path, os.O_RDONLY)
            except OSError as exc:
                raise ReidError(f"{ref.path}: cannot reopen the training shard ({exc.strerror})") from None
        data = os.pread(fd, ref.size, ref.offset)
        if len(data) != ref.size:
            raise ReidError(f"{ref.path}: shard changed during training (short read at byte {ref.offset})")
        return data


_FILES = _ImageFiles()


def image_bytes(data: ImageRef | bytes) -> bytes:
    """The encoded image of a record's `data`, read from its shard when it is an `ImageRef`."""
    return _FILES.read(data) if isinstance(data, ImageRef) else data


def read_records(shards: list[str], *, generated: bool, keep=None, need_source: bool = False,
                 in_memory: bool = False) -> list[Record]:
    """Records of every sample in `shards`. `keep(meta, key)` -> False drops the image;
    `need_source`: every sample must name the real image it was made from (progressive pairing).
    Images of local uncompressed tars are indexed (`ImageRef`), others kept as bytes; `in_memory`
    keeps every image's bytes (the behaviour before the index; benchmarks compare the two)."""
    from reidtools.shards import image_field, iter_samples, require

    out: list[Record] = []
    offsets: dict[str, tuple[int, int]] | None = None
    indexed_shard = None
    for sample in iter_samples(shards):
        hint = "generated shards must carry the metadata of their source" if generated else None
        m = require(sample, "pid", "camid", "clothes", hint=hint)
        key = sample["__key__"]
        if need_source and not m.get("source"):
            raise SampleError(sample["__shard__"], key, "generated sample has no 'source' (the key of the real image it came from), which --mix progressive needs; use --mix concat for such samples")
        if isinstance(m["pid"], int) and m["pid"] < 0:
            raise SampleError(sample["__shard__"], key, f"pid {m['pid']} is a junk/distractor label (Market/Duke "
                                                         "mark junk images -1), not an identity: drop such samples before training")
        field_name = image_field(sample)
        if field_name is None:
            raise SampleError(sample["__shard__"], key, "no image field (jpg/png)")
        data = sample[field_name] if keep is None or keep(m, key) else None
        if data is not None and not isinstance(data, (bytes, bytearray)):
            buf = io.BytesIO()
            data.save(buf, format="PNG")
            data = buf.getvalue()
        elif data is not None and not in_memory:
            shard = sample["__shard__"]
            if shard != indexed_shard:   # iter_samples validated this shard; its headers give the offsets
                indexed_shard, offsets = shard, (tar_offsets(shard) if _seekable_tar(shard) else None)
            where = offsets.get(f"{key}.{field_name}") if offsets is not None else None
            if where is not None and where[1] == len(data):
                data = ImageRef(os.path.abspath(shard), *where)
        out.append(Record(key=key, pid=int(m["pid"]), camid=int(m["camid"]), clothes=str(m["clothes"]),
                          data=data, generated=generated, source=(m.get("source") or key) if generated else None,
                          dataset=str(m.get("dataset", ""))))
    return out


def key_by_dataset(records: list[Record]) -> None:
    """Multi-source training: pids and clothes ids are unique only within a dataset (Market's pid 1 is
    not Duke's pid 1), so when the training shards mix datasets identities become `dataset/pid` and
    clothes ids `dataset/clothes` (labels.json then holds those keys)."""
    for r in records:
        r.pid = f"{r.dataset}/{r.pid}"
        r.clothes = f"{r.dataset}/{r.clothes}"


def assign_variants(generated: list[Record]) -> None:
    """Variant index of each generated record among those of its source.

    The index is the number at the end of the key (`...-inpaint03` -> 3, as `reid inpaint`/`tryon`
    name their outputs); records without such a suffix are numbered in the order they appear in the
    generated shards, after the suffixed ones. Progressive learning admits variants in this order.
    """
    by_source: dict[str, list[Record]] = {}
    for r in generated:
        by_source.setdefault(r.source, []).append(r)
    for recs in by_source.values():
        def order(item):
            pos, r = item
            m = _VARIANT_RE.search(r.key)
            return (0, int(m.group(1)), pos) if m else (1, 0, pos)
        for rank, (_, r) in enumerate(sorted(enumerate(recs), key=order)):
            r.variant = rank


def build_label_maps(real_pids, real_clothes, gen_clothes=()) -> LabelMaps:
    """Contiguous labels: identities from the training shards only; clothes ids (strings) from the
    training shards first, then clothes ids that only generated samples wear (try-on catalogue)."""
    maps = LabelMaps()
    maps.pids = {p: i for i, p in enumerate(sorted(set(real_pids)))}
    real = sorted(set(real_clothes))
    extra = sorted(set(gen_clothes) - set(real))
    maps.clothes = {c: i for i, c in enumerate(real + extra)}
    return maps


def apply_labels(records: list[Record], maps: LabelMaps, what: str) -> None:
    for r in records:
        if r.pid not in maps.pids:
            raise ReidError(f"{what} sample {r.key!r} has pid {r.pid}, which is not in the training shards "
                            "(generated samples must keep the identity of a training image)")
        r.label = maps.pids[r.pid]
        if r.clothes not in maps.clothes:
            raise ReidError(f"{what} sample {r.key!r} has clothes id {r.clothes!r} missing from the label map")
        r.clothes_label = maps.clothes[r.clothes]
        maps.pid_clothes.setdefault(r.label, [])
        if r.clothes_label not in maps.pid_clothes[r.label]:
            maps.pid_clothes[r.label].append(r.clothes_label)


# ----------------------------------------------------------------------------- transforms
def decode_resize(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Encoded image -> uint8 array (H, W, 3) at `size` (bilinear, as T.Resize)."""
    h, w = size
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def normalize(batch_uint8):
    """uint8 tensor (B, H, W, 3) -> float (B, 3, H, W) normalised with the ImageNet statistics."""
    import torch

    x = batch_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class AugmentConfig:
    flip: float = 0.5          # horizontal flip probability
    pad: int = 10              # zero padding before the random crop (BoT / Simple-CCReID)
    erasing: float = 0.5       # random erasing probability (Zhong et al.; BoT, Simple-CCReID)
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: float = 0.3


def augment(img: np.ndarray, gen: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, tuple | None]:
    """Flip and pad-crop a uint8 (H, W, 3) image; returns it and the erasing box (y, x, h, w) or None.

    The box is applied after normalisation (filled with 0, i.e. the mean colour)."""
    h, w = img.shape[:2]
    if gen.random() < cfg.flip:
        img = img[:, ::-1]
    if cfg.pad > 0:
        padded = np.zeros((h + 2 * cfg.pad, w + 2 * cfg.pad, 3), dtype=np.uint8)
        padded[cfg.pad:cfg.pad + h, cfg.pad:cfg.pad + w] = img
        y0 = int(gen.integers(0, 2 * cfg.pad + 1))
        x0 = int(gen.integers(0, 2 * cfg.pad + 1))
        img = padded[y0:y0 + h, x0:x0 + w]
    box = None
    if gen.random() < cfg.erasing:
        area = h * w
        for _ in range(100):
            target = gen.uniform(*cfg.erasing_area) * area
            aspect = gen.uniform(cfg.erasing_ratio, 1.0 / cfg.erasing_ratio)
            eh = int(round(np.sqrt(target * aspect)))
            ew = int(round(np.sqrt(target / aspect)))
            if 0 < eh < h and 0 < ew < w:
                box = (int(gen.integers(0, h - eh + 1)), int(gen.integers(0, w - ew + 1)), eh, ew)
                break
    return np.ascontiguousarray(img), box


class BatchLoader:
    """Map-style dataset over batches: item i is the decoded, augmented batch i of the epoch plan.

    Used through torch's DataLoader (batch_size=None) so that decoding runs in workers.
    `diffusion_size` (DCAC) adds "diffusion": the un-augmented image, bicubic-resized to a square of that
    side, as uint8 (B, S, S, 3) (augmentation is for the ReID branch only)."""

    def __init__(self, records: list[Record], batches: list[list[int]], *, size, seed: int, epoch: int,
                 augment_cfg: AugmentConfig | None, diffusion_size: int | None = None):
        self.records, self.batches, self.size = records, batches, size
        self.seed, self.epoch, self.augment_cfg = seed, epoch, augment_cfg
        self.diffusion_size = diffusion_size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        import torch

        idx = self.batches[i]
        arrays, boxes = [], []
        for slot, j in enumerate(idx):
            r = self.records[j]
            img = decode_resize(image_bytes(r.data), self.size)
            box = None
            if self.augment_cfg is not None:
                img, box = augment(img, rng(self.seed, "aug", self.epoch, i, slot, r.key), self.augment_cfg)
            arrays.append(img)
            boxes.append(box)
        x = normalize(torch.from_numpy(np.stack(arrays)))
        for b, box in enumerate(boxes):
            if box is not None:
                y0, x0, eh, ew = box
                x[b, :, y0:y0 + eh, x0:x0 + ew] = 0.0
        extra = {}
        if self.diffusion_size:
            side = self.diffusion_size
            extra["diffusion"] = torch.from_numpy(np.stack([
                np.asarray(Image.open(io.BytesIO(image_bytes(self.records[j].data))).convert("RGB").resize((side, side), Image.BICUBIC),
                           dtype=np.uint8) for j in idx]))
        return {
            **extra,
            "images": x,
            "labels": torch.tensor([self.records[j].label for j in idx], dtype=torch.long),
            "clothes": torch.tensor([self.records[j].clothes_label for j in idx], dtype=torch.long),
            "cams": torch.tensor([self.records[j].camid for j in idx], dtype=torch.long),
            "generated": torch.tensor([self.records[j].generated for j in idx], dtype=torch.bool),
        }
