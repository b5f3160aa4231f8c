"""Shard writers: each shard is written to a private `NAME.tar.<host>.<pid>.<random>.tmp` and published
when complete, so a killed run never leaves a partial `.tar`; finished shards are skipped on a
re-run (resume)."""

from __future__ import annotations

import atexit
import glob
import io
import logging
import os
import re
import secrets
import signal
import socket
import sys
import tarfile
import threading
import time
from typing import Any, BinaryIO, Callable

from reidtools.errors import ReidError
from reidtools.shards.sample import check_key, encode_field

log = logging.getLogger("reidtools")

STDOUT = "-"
SampleOrFactory = dict | Callable[[], dict]


def _encode_sample(key: str, sample: dict) -> list[tuple[str, bytes]]:
    fields = sorted(f for f in sample if not f.startswith("__") and sample[f] is not None)
    # json first: tools that stream metadata-only can stop early; order is otherwise stable
    fields.sort(key=lambda f: f != "json")
    return [(f"{key}.{field}", encode_field(field, sample[field])) for field in fields]


class TarStream:
    """Writes samples as consecutive tar members into an open binary stream.

    Encoding (PNG/JPEG of PIL images: ~30 ms for a 768x256 PNG, the largest host cost of a generator,
    bench/host_overhead.py) and writing the members run on one background thread, which zlib/libjpeg
    and file writes let run beside the caller (they release the GIL), so a generator's next batch
    starts while its last one is encoded and written. One thread, so members are written in order; an
    encoding or write error surfaces at a later write() or at close(). At most `ahead` samples wait
    (their images stay referenced until written).
    """

    def __init__(self, fileobj: BinaryIO, ahead: int = 16):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)
        self.count = 0
        self._mtime = time.time()
        self._ahead = ahead
        self._pending: list = []
        self._pool = None
        self._failed = False

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        check_key(key, sample.get("__shard__", "<output>"))
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reid-encode")
        # a shallow copy: the caller may reuse its dict; field values are not changed after writing
        self._pending.append(self._pool.submit(self._encode_and_put, key, dict(sample)))
        self.count += 1
        while len(self._pending) > self._ahead or (self._pending and self._pending[0].done()):
            self._pending.pop(0).result()      # raises the sample's encoding or write error, if any

    def _encode_and_put(self, key: str, sample: dict) -> None:
        if self._failed:
            return      # nothing after a failed sample reaches the stream (the caller sees the failure)
        try:
            self._put(_encode_sample(key, sample))
        except BaseException:
            self._failed = True
            raise

    def _put(self, members: list[tuple[str, bytes]]) -> None:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), self._mtime, 0o644
            self.tar.addfile(info, io.BytesIO(data))

    def _drain(self) -> None:
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:
            self._stop()

    def _stop(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def close(self) -> None:
        try:
            self._drain()
            self.tar.close()
        except BaseException:
            # e.g. stdout closed: the error is reported once; without this, tarfile's buffered last
            # block is flushed again when the stream is collected, adding a second traceback
            self.discard()
            raise

    def discard(self) -> None:
        """Drop buffered data without writing the end marker (the output is being thrown away)."""
        self._stop()
        self.tar.closed = True
        stream = getattr(self.tar, "fileobj", None)
        if stream is not None and hasattr(stream, "closed"):
            stream.closed = True  # tarfile's _Stream would otherwise flush into a closed file on GC


class AtomicShard:
    """One output shard file, written to a private temporary file and published on a clean close.

    The temporary name is `NAME.tar.<host>.<pid>.<random>.tmp`, created exclusively, so two writers of one
    shard (a task re-run while the first still runs, two array jobs over the same input) never
    write into the same file. Publishing never replaces a shard another writer completed meanwhile
    unless `replace=True`: the first complete copy wins, the later one is discarded with a log
    line (a map's output is a function of its input, so both copies hold the same samples).
    """

    def __init__(self, path: str, replace: bool = False):
        self.path, self.replace = path, replace
        self.published = False
        refuse_remote(path)
        ensure_output_dir(os.path.dirname(os.path.abspath(path)))
        self.tmp, self._fh = _create_temp(path)
        self.stream = TarStream(self._fh)

    def write(self, sample: dict) -> None:
        try:
            self.stream.write(sample)
        except OSError as exc:
            self._fail(exc)

    def commit(self) -> bool:
        """Close and publish; False when another writer's complete copy was kept instead."""
        try:
            self.stream.close()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            self._fail(exc)
        except BaseException:
            self.abort()  # e.g. an encoding error that the background encoder reports at close
            raise
        try:
            self.published = _publish(self.tmp, self.path, self.replace)
        except OSError as exc:
            raise ReidError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        finally:
            _forget_temp(self.tmp)
        return self.published

    def abort(self) -> None:
        try:
            self.stream.discard()
            self._fh.close()
        except OSError:
            pass  # e.g. ENOSPC again while flushing: the file is being removed anyway
        finally:
            _forget_temp(self.tmp)

    def _fail(self, exc: OSError):
        self.abort()
        raise ReidError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def __enter__(self) -> "AtomicShard":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def refuse_remote(target: str) -> None:
    from reidtools.shards.paths import is_remote

    if is_remote(target):
        raise ReidError(f"{target}: writing shards to a URL or pipe: is not supported; write to a local folder "
                        "and copy it up, or stream with -o - | ...")


def ensure_output_dir(directory: str) -> None:
    """Create DIR (and parents); an error naming it when it is a file or cannot be created/written."""
    refuse_remote(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ReidError(f"{directory}: output exists and is not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ReidError(f"{directory}: cannot create the output directory ({exc.strerror})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ReidError(f"{directory}: output directory is not writable")


def _open_temp(tmp: str) -> BinaryIO:
    # O_EXCL: a name collision (or a pre-planted symlink) fails instead of joining another file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    return os.fdopen(fd, "wb")


# temp names carry host and pid, so a re-run can tell a dead writer's leftovers from a live
# writer's file (on this host; another host's writers are never touched)
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):
        return True  # e.g. another user's process: not ours to judge
    return True


def remove_stale_temps(path: str) -> None:
    """Remove `path`'s temporary files left by killed writers on this host (SIGKILL, power cut),
    and the fixed `NAME.tar.tmp` of reid versions before private temp names."""
    stale = [path + ".tmp"] if os.path.exists(path + ".tmp") else []
    for tmp in glob.glob(glob.escape(path) + ".*.tmp"):
        parts = tmp[len(path) + 1: -len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit() and tmp not in _temps \
                and not _alive(int(parts[1])):
            stale.append(tmp)
    for tmp in stale:
        try:
            os.remove(tmp)
            log.info("removed %s, left by a writer that was killed", tmp)
        except OSError:
            pass


def _create_temp(path: str) -> tuple[str, BinaryIO]:
    remove_stale_temps(path)
    for _ in range(100):
        tmp = f"{path}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fh = _open_temp(tmp)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ReidError(f"{path}: cannot create the output file ({exc.strerror})") from None
        _track_temp(tmp)
        return tmp, fh
    raise ReidError(f"{path}: cannot create a unique temporary file next to it")


def _publish(tmp: str, path: str, replace: bool) -> bool:
    if replace:
        os.replace(tmp, path)
        return True
    try:
        # link() fails if `path` exists, atomically: a rename would silently replace a shard that
        # another writer completed between our start and now
        os.link(tmp, path)
    except FileExistsError:
        log.warning("%s was completed by another writer meanwhile; keeping that copy, discarding this one", path)
        return False
    except OSError:
        # file systems without hard links: check, then rename (a narrow race, but never a partial file)
        if os.path.exists(path):
            log.warning("%s was completed by another writer meanwhile; keeping that copy, discarding this one", path)
            return False
        os.replace(tmp, path)
    return True


# ----------------------------------------------------------------------------- temp-file cleanup
# SIGTERM (scancel, timeout, a job scheduler's preemption) would otherwise end the process without
# unwinding, leaving its temporary files behind. Each process removes only the files it created
# (forked workers inherit the table but not the ownership).
_temps: dict[str, int] = {}
_handler_installed = False


def _track_temp(tmp: str) -> None:
    _temps[tmp] = os.getpid()
    _install_cleanup()


def _forget_temp(tmp: str) -> None:
    _temps.pop(tmp, None)
    try:
        os.remove(tmp)
    except FileNotFoundError:
        pass


def remove_temps() -> None:
    """Remove this process's unfinished temporary shard files."""
    pid = os.getpid()
    for tmp, owner in list(_temps.items()):
        if owner == pid:
            _temps.pop(tmp, None)
            try:
                os.remove(tmp)
            except OSError:
                pass


def _on_sigterm(signum, frame) -> None:
    remove_temps()
    previous = _previous_handler
    if callable(previous):
        previous(signum, frame)
        return
    # die of the signal as if unhandled, so the parent sees SIGTERM (shell status 143)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


_previous_handler = None


def _install_cleanup() -> None:
    global _handler_installed, _previous_handler
    if _handler_installed:
        return
    _handler_installed = True
    atexit.register(remove_temps)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still applies
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_IGN:
        return
    _previous_handler = current if callable(current) else None
    signal.signal(signal.SIGTERM, _on_sigterm)


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
                remove_stale_temps(path)
            self.skipped += 1
            return
        if self._current is None:
            self._current = AtomicShard(path, replace=not self.resume)
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
