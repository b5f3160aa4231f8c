"""Shard writers: each shard is written as `NAME.tar.tmp` and renamed when complete, so a killed
run never leaves a partial `.tar`; finished shards are skipped on a re-run (resume)."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from typing import Any, BinaryIO, Callable

from reidtools.shards.sample import check_key, encode_field

STDOUT = "-"
SampleOrFactory = dict | Callable[[], dict]


class TarStream:
    """Writes samples as consecutive tar members into an open binary stream."""

    def __init__(self, fileobj: BinaryIO):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)
        self.count = 0
        self._mtime = time.time()

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        check_key(key, sample.get("__shard__", "<output>"))
        fields = sorted(f for f in sample if not f.startswith("__"))
        # json first: tools that stream metadata-only can stop early; order is otherwise stable
        fields.sort(key=lambda f: f != "json")
        for field in fields:
            value = sample[field]
            if value is None:
                continue
            data = encode_field(field, value)
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mtime, info.mode = len(data), self._mtime, 0o644
            self.tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        self.tar.close()

    def discard(self) -> None:
        """Drop buffered data without writing the end marker (the output is being thrown away)."""
        self.tar.closed = True
        stream = getattr(self.tar, "fileobj", None)
        if stream is not None and hasattr(stream, "closed"):
            stream.closed = True  # tarfile's _Stream would otherwise flush into a closed file on GC


class AtomicShard:
    """One output shard file: written to `path.tmp`, renamed to `path` on a clean close."""

    def __init__(self, path: str):
        self.path, self.tmp = path, path + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._fh = open(self.tmp, "wb")
        self.stream = TarStream(self._fh)

    def write(self, sample: dict) -> None:
        self.stream.write(sample)

    def commit(self) -> None:
        self.stream.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.stream.discard()
            self._fh.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)

    def __enter__(self) -> "AtomicShard":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class ShardWriter:
    """Writes a stream of samples into `DIR/{prefix}-{n:06d}.tar` shards of at most `maxcount` samples,
    or into one tar on stdout when `output` is `-`.

    With `resume=True` a shard whose final `.tar` already exists is not rewritten: the samples that
    would go into it are skipped. Pass a zero-argument callable instead of a sample to avoid making
    samples that would be skipped (generation is the expensive part of a re-run).
    """

    def __init__(self, output: str, prefix: str = "part", maxcount: int = 1000, resume: bool = True,
                 stdout: BinaryIO | None = None):
        if maxcount < 1:
            raise ValueError("maxcount must be >= 1")
        self.output, self.prefix, self.maxcount, self.resume = output, prefix, maxcount, resume
        self.index = 0          # number of the shard currently being filled
        self.in_shard = 0       # samples given for that shard so far
        self.written = self.skipped = 0
        self.shards: list[str] = []
        self._current: AtomicShard | None = None
        self._stdout = stdout or sys.stdout.buffer
        self._stream = TarStream(self._stdout) if output == STDOUT else None

    def shard_path(self, index: int) -> str:
        return os.path.join(self.output, f"{self.prefix}-{index:06d}.tar")

    def write(self, item: SampleOrFactory) -> None:
        if self._stream is not None:
            self._stream.write(item() if callable(item) else item)
            self.written += 1
            return
        if self.in_shard == self.maxcount:
            self._close_current()
            self.index += 1
            self.in_shard = 0
        path = self.shard_path(self.index)
        self.in_shard += 1
        if self.resume and self._current is None and os.path.exists(path):
            if self.in_shard == 1:
                self.shards.append(path)
            self.skipped += 1
            return
        if self._current is None:
            self._current = AtomicShard(path)
            self.shards.append(path)
        self._current.write(item() if callable(item) else item)
        self.written += 1

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.commit()
            self._current = None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stdout.flush()
            return
        self._close_current()

    def abort(self) -> None:
        # On stdout nothing can be taken back; leaving the tar without its end marker makes the
        # reader downstream fail with "truncated tar" instead of taking a partial stream as whole.
        if self._stream is not None:
            self._stream.discard()  # also stops tarfile flushing into a broken pipe when collected
        if self._current is not None:
            self._current.abort()
            self._current = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class SplitWriter:
    """One ShardWriter per split (`train-000000.tar`, `query-000000.tar`, ...), or one stdout tar."""

    def __init__(self, output: str, maxcount: int = 1000, resume: bool = True, **kwargs: Any):
        self.output, self.maxcount, self.resume = output, maxcount, resume
        self._shared = ShardWriter(output, **kwargs) if output == STDOUT else None
        self.writers: dict[str, ShardWriter] = {}

    def write(self, split: str, item: SampleOrFactory) -> None:
        if self._shared is not None:
            self._shared.write(item)
            return
        if split not in self.writers:
            self.writers[split] = ShardWriter(self.output, prefix=split, maxcount=self.maxcount, resume=self.resume)
        self.writers[split].write(item)

    @property
    def written(self) -> int:
        return self._shared.written if self._shared else sum(w.written for w in self.writers.values())

    @property
    def skipped(self) -> int:
        return 0 if self._shared else sum(w.skipped for w in self.writers.values())

    def close(self) -> None:
        for w in ([self._shared] if self._shared else self.writers.values()):
            w.close()

    def abort(self) -> None:
        for w in ([self._shared] if self._shared else self.writers.values()):
            w.abort()

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
