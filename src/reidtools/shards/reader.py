"""Streaming reader for WebDataset tar shards (files or stdin), with errors that name shard and key.

We read tars with the standard library rather than through `webdataset.WebDataset` because every
failure must name the shard and key at fault and because stdin must work; the grouping rule is
WebDataset's (key = member name up to the first dot of its basename), and `tests/test_shards.py`
checks that `webdataset` reads what `reid` writes and vice versa.
"""

from __future__ import annotations

import sys
import tarfile
from typing import BinaryIO, Iterable, Iterator

from reidtools.errors import ReidError, SampleError
from reidtools.shards.paths import STDIN
from reidtools.shards.sample import validate as validate_sample

_TAIL = 1024  # a complete tar ends in (at least) two 512-byte zero blocks


class _TailReader:
    """A read-through wrapper that remembers the last bytes of the stream and its first bytes."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.tail, self.head = raw, b"", None

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.head is None:
            self.head = data[:4]
        if data:
            self.tail = (self.tail + data)[-_TAIL:]
        return data


def _split_name(name: str) -> tuple[str, str]:
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:]


def _finish(sample: dict, shard: str, validate: bool) -> dict:
    if validate:
        if "json" not in sample:
            dotted = [f for f in sample if not f.startswith("__") and f.endswith(".json")]
            if dotted:
                bad = sample["__key__"] + "." + dotted[0][: -len(".json")]
                raise SampleError(shard, bad, "key contains a dot (keys must match [A-Za-z0-9_-]+)")
        validate_sample(sample)
    return sample


def iter_shard(shard: str, validate: bool = True) -> Iterator[dict]:
    """Samples of one shard in order. `shard` is a path or `-` for stdin."""
    raw = sys.stdin.buffer if shard == STDIN else None
    label = "<stdin>" if shard == STDIN else shard
    try:
        fh = raw if raw is not None else open(shard, "rb")
    except OSError as exc:
        raise ReidError(f"{shard}: cannot open ({exc.strerror})") from None
    stream = _TailReader(fh)
    current: dict | None = None
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")
        except tarfile.ReadError as exc:
            raise SampleError(label, None, f"not a tar shard ({exc})") from None
        try:
            for member in tar:
                if not member.isfile():
                    continue
                key, field = _split_name(member.name)
                if not field:
                    raise SampleError(label, key, f"member {member.name!r} has no field extension")
                if current is not None and current["__key__"] != key:
                    yield _finish(current, label, validate)
                    current = None
                if current is None:
                    current = {"__key__": key, "__shard__": label}
                if field in current:
                    raise SampleError(label, key, f"field '{field}' appears twice (duplicate key?)")
                data = tar.extractfile(member)
                current[field] = data.read() if data is not None else b""
        except (tarfile.ReadError, EOFError, OSError) as exc:
            after = f" after key {current['__key__']!r}" if current else ""
            raise SampleError(label, None, f"truncated or corrupt tar{after} ({exc})") from None
        while stream.read(1 << 16):  # the end-of-archive blocks and record padding
            pass
        if stream.head and stream.head[:2] != b"\x1f\x8b" and stream.tail.count(0) != len(stream.tail):
            after = f" after key {current['__key__']!r}" if current else ""
            raise SampleError(label, None, f"truncated tar: no end-of-archive marker{after}")
        if current is not None:
            yield _finish(current, label, validate)
    finally:
        if raw is None:
            fh.close()


def iter_samples(shards: Iterable[str], validate: bool = True) -> Iterator[dict]:
    """Samples of several shards, one after the other."""
    for shard in shards:
        yield from iter_shard(shard, validate=validate)
