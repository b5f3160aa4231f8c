"""Per-shard maps: the pattern of every generator and annotator.

Output shard names follow input shard names (`in/train-000003.tar` -> `out/train-000003.tar`), so an
array job's tasks never collide and a re-run skips the shards that are already complete. Beside each
output shard goes its run record `out/train-000003.stats.json` (counts in and out, the failure that
stopped the shard, elapsed time; `reid stats --run out/` summarises them), because an array job's
logs are scattered over as many files as it has tasks.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shlex
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from reidtools.errors import ReidError, SampleError
from reidtools.fileio import write_json_atomic
from reidtools.shards.paths import PIPE, STDIN, is_remote, split_shards
from reidtools.shards.reader import iter_shard
from reidtools.shards.writer import STDOUT, AtomicShard, ShardWriter, ensure_output_dir, remove_stale_temps

log = logging.getLogger("reidtools")

MapFn = Callable[[Iterable[dict]], Iterator[dict]]


@dataclass
class MapReport:
    shards_done: list[str] = field(default_factory=list)
    shards_skipped: list[str] = field(default_factory=list)
    samples_in: int = 0
    samples_out: int = 0


class _Counter:
    def __init__(self, it: Iterable[dict], report: MapReport, bar: tqdm | None):
        self.it, self.report, self.bar = it, report, bar

    def __iter__(self) -> Iterator[dict]:
        for sample in self.it:
            self.report.samples_in += 1
            if self.bar is not None:
                self.bar.update(1)
            yield sample


def output_name(shard: str) -> str:
    """The output shard's file name: the input's (`pipe:CMD`: the last `*.tar` word of CMD)."""
    if shard == STDIN:
        return "stdin.tar"
    if shard.startswith(PIPE):
        try:
            words = shlex.split(shard[len(PIPE):])
        except ValueError:
            words = []
        names = [os.path.basename(w) for w in words if w.endswith(".tar")]
        if not names:
            raise ReidError(f"{shard}: cannot name the output shard (no *.tar word in the command): use -o - "
                            "and name it yourself")
        return names[-1]
    if is_remote(shard):
        return os.path.basename(urllib.parse.urlparse(shard).path) or "remote.tar"
    return os.path.basename(shard)


RECORD_SUFFIX = ".stats.json"


def record_path(target: str) -> str:
    """`out/NAME.tar` -> `out/NAME.stats.json`."""
    base = target[: -len(".tar")] if target.endswith(".tar") else target
    return base + RECORD_SUFFIX


class _ShardRecord:
    """Writes one shard's run record when the shard is done or has failed (atomically)."""

    def __init__(self, path: str, shard: str, outputs: list[str], desc: str, report: MapReport):
        self.path, self.report = path, report
        self.data = {"input": shard, "outputs": outputs, "tool": desc, "host": socket.gethostname(),
                     "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._t0, self._in, self._out = time.monotonic(), report.samples_in, report.samples_out

    def __enter__(self) -> "_ShardRecord":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            return  # interrupted (SIGINT/exit): nothing was decided about this shard
        failures = []
        if exc is not None:
            key = exc.key if isinstance(exc, SampleError) else None
            reason = str(exc) if isinstance(exc, ReidError) else f"{type(exc).__name__}: {exc}"
            failures.append({"key": key, "reason": reason})
        self.data.update(status="failed" if exc is not None else "done",
                         samples_in=self.report.samples_in - self._in,
                         samples_out=self.report.samples_out - self._out if exc is None else 0,
                         failures=failures, elapsed_s=round(time.monotonic() - self._t0, 3))
        try:
            write_json_atomic(self.path, self.data)
        except ReidError as err:
            if exc is None:
                raise
            log.warning("%s", err)  # keep the shard's own error as the one that is reported


def map_shards(shards: list[str], output: str, fn: MapFn, *, shard_index: int = 0, num_shards: int = 1,
               desc: str = "samples", progress: bool = True, maxcount: int = 1000,
               overwrite: bool = False) -> MapReport:
    """Apply `fn` (an iterator-of-samples transform, so it may batch) to this task's input shards.

    - `output` a directory: one output shard per input shard, same name, written atomically; an
      output that already exists is skipped (resume) unless `overwrite`. Stdin input is written as
      `stdin-NNNNNN.tar` shards; stdin has no name to resume by, so existing `stdin-*` output is an
      error unless `overwrite`, and so is an output that would be its own input.
    - `output == "-"`: every output sample goes into one tar on stdout.
    """
    mine = split_shards(shards, shard_index, num_shards)
    report = MapReport()
    if output != STDOUT:
        ensure_output_dir(output)
        _check_targets(mine, output, overwrite)
    bar = tqdm(desc=desc, unit="img", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        if output == STDOUT or mine == [STDIN]:
            prefix = "stdin"
            writer = ShardWriter(output, prefix=prefix, maxcount=maxcount, resume=False)
            record = (_ShardRecord(os.path.join(output, "stdin" + RECORD_SUFFIX), STDIN, writer.shards, desc, report)
                      if output != STDOUT else contextlib.nullcontext())
            with record, writer:
                for shard in mine:
                    for sample in fn(_Counter(iter_shard(shard), report, bar)):
                        writer.write(sample)
                        report.samples_out += 1
                    report.shards_done.append(shard)
            if output != STDOUT and overwrite:
                _remove_stale_stdin_shards(output, writer.shards)
            return report
        for shard in mine:
            target = os.path.join(output, output_name(shard))
            if os.path.exists(target) and not overwrite:
                log.info("%s exists, skipping %s", target, shard)
                remove_stale_temps(target)
                report.shards_skipped.append(shard)
                continue
            with _ShardRecord(record_path(target), shard, [target], desc, report), \
                    AtomicShard(target, replace=overwrite) as out:
                for sample in fn(_Counter(iter_shard(shard), report, bar)):
                    out.write(sample)
                    report.samples_out += 1
            report.shards_done.append(shard)
            log.info("wrote %s", target)
    finally:
        bar.close()
    if not report.shards_done and not report.shards_skipped:
        raise ReidError("no input shard was processed")
    return report


def _check_targets(mine: list[str], output: str, overwrite: bool) -> None:
    """Refuse, before any work, outputs that a resume would skip although they are not this input's."""
    if overwrite:
        return
    if STDIN in mine:
        pattern = "stdin-*.tar" if mine == [STDIN] else "stdin.tar"
        found = sorted(glob.glob(os.path.join(glob.escape(output), pattern)))
        if found:
            raise ReidError(f"{found[0]} exists from an earlier stdin run (stdin has no shard name to resume "
                            "by): pass --overwrite to replace it, or write to a new directory")
    for shard in mine:
        target = os.path.join(output, output_name(shard))
        if shard != STDIN and not is_remote(shard) and os.path.exists(target) and os.path.samefile(shard, target):
            raise ReidError(f"{shard}: -o {output} is this shard's own directory (its output would replace "
                            "its input): write to a new directory, or pass --overwrite to replace inputs in place")


def _remove_stale_stdin_shards(output: str, written: list[str]) -> None:
    # an earlier, longer stdin run's higher-numbered shards would otherwise mix with this run's
    keep = {os.path.abspath(p) for p in written}
    for path in sorted(glob.glob(os.path.join(glob.escape(output), "stdin-*.tar"))):
        if os.path.abspath(path) not in keep:
            log.warning("removing %s, left by an earlier stdin run (--overwrite)", path)
            os.remove(path)


def write_plans(plans: list[tuple[str | None, object]], output: str, produce: Callable[[object], Iterable[dict]],
                *, prefix: str) -> int:
    """Write generator output that is planned per shard rather than mapped from input shards.

    Each `(path, job)` becomes the shard `path`, written atomically from `produce(job)`; with
    `output == "-"` every job's samples go into one tar on stdout instead (paths unused).
    Returns the number of samples written.
    """
    written = 0
    if output == STDOUT:
        with ShardWriter(output, prefix=prefix) as writer:
            for _, job in plans:
                for sample in produce(job):
                    writer.write(sample)
                    written += 1
        return written
    for path, job in plans:
        with AtomicShard(path) as out:
            for sample in produce(job):
                out.write(sample)
                written += 1
        log.info("wrote %s", path)
    return written
