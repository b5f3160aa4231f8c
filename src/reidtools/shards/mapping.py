"""Per-shard maps: the pattern of every generator and annotator.

Output shard names follow input shard names (`in/train-000003.tar` -> `out/train-000003.tar`), so an
array job's tasks never collide and a re-run skips the shards that are already complete.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from reidtools.errors import ReidError
from reidtools.shards.paths import STDIN, split_shards
from reidtools.shards.reader import iter_shard
from reidtools.shards.writer import STDOUT, AtomicShard, ShardWriter

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
    return "stdin.tar" if shard == STDIN else os.path.basename(shard)


def map_shards(shards: list[str], output: str, fn: MapFn, *, shard_index: int = 0, num_shards: int = 1,
               desc: str = "samples", progress: bool = True, maxcount: int = 1000) -> MapReport:
    """Apply `fn` (an iterator-of-samples transform, so it may batch) to this task's input shards.

    - `output` a directory: one output shard per input shard, same name, written atomically; an
      output that already exists is skipped. Stdin input is written as `stdin-NNNNNN.tar` shards.
    - `output == "-"`: every output sample goes into one tar on stdout.
    """
    mine = split_shards(shards, shard_index, num_shards)
    report = MapReport()
    bar = tqdm(desc=desc, unit="img", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        if output == STDOUT or mine == [STDIN]:
            prefix = "stdin"
            with ShardWriter(output, prefix=prefix, maxcount=maxcount) as writer:
                for shard in mine:
                    for sample in fn(_Counter(iter_shard(shard), report, bar)):
                        writer.write(sample)
                        report.samples_out += 1
                    report.shards_done.append(shard)
            return report
        for shard in mine:
            target = os.path.join(output, output_name(shard))
            if os.path.exists(target):
                log.info("%s exists, skipping %s", target, shard)
                report.shards_skipped.append(shard)
                continue
            with AtomicShard(target) as out:
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
