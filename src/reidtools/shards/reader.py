"""Streaming reader for WebDataset tar shards (files, stdin, URLs, `pipe:`), with errors that name
shard and key.

We read tars with the standard library rather than through `webdataset.WebDataset` because every
failure must name the shard and key at fault and because stdin must work; the grouping rule is
WebDataset's (key = member name up to the first dot of its basename), and `tests/test_shards.py`
checks that `webdataset` reads what `reid` writes and vice versa. Remote shards are opened by
webdataset's `gopen` (http(s), `pipe:`) or fsspec (other schemes) and then read by the same code,
so their errors and truncation checks are the local ones.
"""

from __future__ import annotations

import sys
import tarfile
from typing import BinaryIO, Iterable, Iterator

from reidtools.errors import ReidError, SampleError
from reidtools.shards.paths import PIPE, STDIN, CommandLinePipe, is_remote
from reidtools.shards.sample import validate as validate_sample

_TAIL = 1024  # a complete tar ends in (at least) two 512-byte zero blocks
_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)


class _ConcatTarInfo(tarfile.TarInfo):
    """Reads headers past end-of-archive blocks, as `tar --ignore-zeros` does.

    `cat a.tar b.tar > c.tar` is a common way to merge shards; stopping at a's end-of-archive
    blocks would drop b silently. Only zero blocks are skipped: a non-zero block that is not a valid
    header is corruption (tarfile alone would end the archive there without a word), and the stream
    must still end in zero blocks (the caller's truncation check).
    """

    __slots__ = ()  # TarInfo's own slots: a __dict__ per member would slow reading down measurably

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        buf = tar.fileobj.read(_BLOCK)
        zeros = False
        while buf == _ZERO_BLOCK:
            zeros = True
            buf = tar.fileobj.read(_BLOCK)
        if zeros and not buf:
            raise tarfile.EOFHeaderError("end of file header")
        if zeros and len(buf) < _BLOCK:
            raise tarfile.ReadError("data after the end-of-archive blocks is not a tar header")
        try:
            obj = cls.frombuf(buf, tar.encoding, tar.errors)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            raise  # end of stream: the caller's end-marker check tells clean from truncated
        except tarfile.HeaderError as exc:
            where = "after the end-of-archive blocks" if zeros else f"at byte {tar.fileobj.tell() - _BLOCK}"
            raise tarfile.ReadError(f"{where}: not a tar header ({exc})") from None
        obj.offset = tar.fileobj.tell() - _BLOCK
        return obj._proc_member(tar)


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


def _not_a_file(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"is a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"is a hard link to {member.linkname!r}"
    return "is not a regular file (device, fifo or other special member)"


def _finish(sample: dict, shard: str, validate: bool) -> dict:
    if validate:
        if "json" not in sample:
            dotted = [f for f in sample if not f.startswith("__") and f.endswith(".json")]
            if dotted:
                bad = sample["__key__"] + "." + dotted[0][: -len(".json")]
                raise SampleError(shard, bad, "key contains a dot (keys must match [A-Za-z0-9_-]+)")
        validate_sample(sample)
    return sample


def _open_remote(shard: str) -> BinaryIO:
    if shard.startswith(PIPE) or shard.split("://", 1)[0].lower() in ("http", "https"):
        if shard.startswith(PIPE) and not isinstance(shard, CommandLinePipe):
            raise ReidError(f"{shard}: pipe: shards run a shell command, so they are accepted only as "
                            "command-line INPUTS, never from a shard list or metadata")
        from webdataset.gopen import gopen  # imports torch: only paid for remote shards

        try:
            return gopen(str(shard), "rb")
        except (OSError, ValueError) as exc:
            raise ReidError(f"{shard}: cannot open ({exc})") from None
    try:
        import fsspec
    except ImportError:
        raise ReidError(f"{shard}: {shard.split('://')[0]}:// shards need fsspec and its backend "
                        "(pip install 'reidtools[remote]' s3fs / gcsfs / adlfs)") from None
    try:
        return fsspec.open(shard, "rb").open()
    except ImportError as exc:
        raise ReidError(f"{shard}: fsspec has no backend for it ({exc})") from None
    except (OSError, ValueError) as exc:
        raise ReidError(f"{shard}: cannot open ({exc})") from None


_CURL_EXITS = {6: "could not resolve the host", 7: "could not connect", 18: "transfer cut short",
               22: "HTTP error, e.g. 404", 28: "timed out", 35: "TLS handshake failed"}


def _child_failure(fh) -> str | None:
    """For a gopen pipe (pipe: or curl), why its command failed; None if it did not (or is no pipe)."""
    proc = getattr(fh, "proc", None)
    if proc is None:
        return None
    try:
        status = proc.wait(timeout=10)
    except Exception:  # noqa: BLE001 - still running or gone: nothing better to report
        return None
    if status in getattr(fh, "ignore_status", [0]):
        return None
    args = proc.args if isinstance(proc.args, (list, tuple)) else [proc.args]
    if args and args[0] == "curl":
        return f"download failed (curl exit {status}: {_CURL_EXITS.get(status, 'see man curl')})"
    return f"the command exited with status {status}"


def _close(fh, label: str, failing: bool) -> None:
    try:
        fh.close()
    except OSError as exc:  # a pipe: or curl child that exited with an error status
        if not failing:
            raise SampleError(label, None, _child_failure(fh) or f"cannot read ({exc})") from None


def iter_shard(shard: str, validate: bool = True) -> Iterator[dict]:
    """Samples of one shard in order. `shard` is a path, `-` for stdin, a URL or a `pipe:` command
    (see `reidtools.shards.paths`)."""
    raw = sys.stdin.buffer if shard == STDIN else None
    label = "<stdin>" if shard == STDIN else str(shard)
    if raw is not None:
        fh = raw
    elif is_remote(shard):
        fh = _open_remote(shard)
    else:
        try:
            fh = open(shard, "rb")
        except OSError as exc:
            raise ReidError(f"{shard}: cannot open ({exc.strerror})") from None
    stream = _TailReader(fh)
    failing = True
    current: dict | None = None
    seen: set[str] = set()
    try:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*", tarinfo=_ConcatTarInfo)
        except tarfile.ReadError as exc:
            raise SampleError(label, None, _child_failure(fh) or f"not a tar shard ({exc})") from None
        except OSError as exc:  # e.g. the pipe: command or the download failed before any data
            raise SampleError(label, None, _child_failure(fh) or f"cannot read ({exc})") from None
        try:
            for member in tar:
                if member.isdir():
                    continue  # a folder entry (`tar cf x.tar dir/`) holds no data
                key, field = _split_name(member.name)
                if not member.isfile():
                    raise SampleError(label, key, f"member {member.name!r} {_not_a_file(member)} "
                                                  "(shards hold regular files; re-pack with `tar -h` to follow links)")
                if not field:
                    raise SampleError(label, key, f"member {member.name!r} has no field extension")
                if current is not None and current["__key__"] != key:
                    yield _finish(current, label, validate)
                    current = None
                if current is None:
                    if key in seen:
                        raise SampleError(label, key, "key appears again after other samples (a sample's members "
                                                      "must be consecutive and keys unique)")
                    seen.add(key)
                    current = {"__key__": key, "__shard__": label}
                if field in current:
                    raise SampleError(label, key, f"field '{field}' appears twice (duplicate key?)")
                data = tar.extractfile(member)
                current[field] = data.read() if data is not None else b""
        except (tarfile.ReadError, EOFError, OSError) as exc:
            after = f" after key {current['__key__']!r}" if current else ""
            why = _child_failure(fh)
            raise SampleError(label, None, f"{why}{after}" if why else f"truncated or corrupt tar{after} ({exc})") from None
        try:
            while stream.read(1 << 16):  # the end-of-archive blocks and record padding
                pass
        except OSError as exc:
            raise SampleError(label, None, _child_failure(fh) or f"cannot read ({exc})") from None
        if stream.head and stream.head[:2] != b"\x1f\x8b" and stream.tail.count(0) != len(stream.tail):
            after = f" after key {current['__key__']!r}" if current else ""
            why = _child_failure(fh)
            raise SampleError(label, None, f"{why}{after}" if why else f"truncated tar: no end-of-archive marker{after}")
        failing = False
        if raw is None:
            _close(fh, label, failing)
        if current is not None:
            yield _finish(current, label, validate)
    finally:
        if raw is None and failing:
            _close(fh, label, failing)


def iter_samples(shards: Iterable[str], validate: bool = True) -> Iterator[dict]:
    """Samples of several shards, one after the other.

    A key seen in an earlier shard is an error: generated samples pair with their `source` by key,
    and a shard given twice (or a tool's output read next to its input) would count and train
    twice. Remembering the keys costs about 100 bytes per sample.
    """
    first: dict[str, int] = {}
    names: list[str] = []
    for shard in shards:
        names.append(shard)
        here = len(names) - 1
        for sample in iter_shard(shard, validate=validate):
            key = sample["__key__"]
            where = first.setdefault(key, here)
            if where != here:
                raise SampleError(sample["__shard__"], key, f"key also in {names[where]} (keys must be unique "
                                                            "across the inputs: a shard given twice, or a tool's "
                                                            "output next to its input?)")
            yield sample
