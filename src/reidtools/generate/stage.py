"""The per-shard generator stage every generator shares (`inpaint`, `tryoff`, `tryon`).

A generator says, per input sample, which outputs it wants (`plan`), how to make a batch of them
(`make`), and how each result becomes a derived sample (`build`). This module does the rest:
batching across samples (outputs do not depend on the batch size, since each job carries its own
seed), the empty-region policy, keeping sources on request, order (each source's outputs follow it),
and the counts a run reports. `reidtools.shards.map_shards` around it gives atomic per-shard writes
and resume.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from reidtools.errors import SampleError

log = logging.getLogger("reidtools")

EMPTY_POLICIES = ("skip", "error")


@dataclass
class StageCounts:
    """What a generator made and what it passed over, by reason (logged at the end of a run)."""
    outputs: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict = field(default_factory=dict)    # reason -> "shard: key" of its first case

    def skip(self, sample: dict, reason: str) -> None:
        self.skipped[reason] += 1
        self.first_skipped.setdefault(reason, f"{sample.get('__shard__', '<memory>')}: {sample['__key__']}")

    def log(self, tool: str) -> None:
        for reason, n in sorted(self.skipped.items()):
            log.warning("%s: %d input sample(s) made no output: %s (first: %s)", tool, n, reason,
                        self.first_skipped[reason])


def check_region(sample: dict, region, *, policy: str, counts: StageCounts, what: str = "empty mask") -> bool:
    """True if `region` (a PIL L image or a numpy array) has a pixel to repaint; else skip the sample
    (counted, logged at the end) or raise, as `policy` (--empty-mask) says."""
    bbox = region.getbbox() if hasattr(region, "getbbox") else (region.any() or None)
    if bbox:
        return True
    if policy == "error":
        raise SampleError(sample.get("__shard__", "<memory>"), sample["__key__"],
                          f"{what}: nothing to repaint (--empty-mask skip passes such samples over)")
    counts.skip(sample, what)
    return False


def generate_stage(samples: Iterable[dict], *, plan: Callable[[dict], list], make: Callable[[list], list],
                   build: Callable[[dict, Any, Any], dict], batch_size: int, keep_source: bool = False,
                   counts: StageCounts | None = None) -> Iterator[dict]:
    """Map samples to generated samples.

    plan(sample) -> jobs (possibly none); make(jobs) -> one result per job, in order, for at most
    `batch_size` jobs; build(source, job, result) -> the derived sample. Jobs of several samples share
    a batch; outputs are yielded in input order, each source (with `keep_source`) before its outputs.
    """
    counts = counts if counts is not None else StageCounts()
    pending: list[tuple[dict, list]] = []
    njobs = 0

    def flush():
        rows = [(sample, job) for sample, jobs in pending for job in jobs]
        results: list = []
        for i in range(0, len(rows), batch_size):
            results += make([job for _, job in rows[i:i + batch_size]])
        done = iter(zip(rows, results))
        for sample, jobs in pending:
            if keep_source:
                yield sample
            for _ in jobs:
                (src, job), result = next(done)
                counts.outputs += 1
                yield build(src, job, result)

    for sample in samples:
        jobs = plan(sample)
        pending.append((sample, jobs))
        njobs += len(jobs)
        if njobs >= batch_size:
            yield from flush()
            pending, njobs = [], 0
    yield from flush()
