"""The per-shard generator stage every generator shares (`inpaint`, `tryoff`, `tryon`).

A generator says, per input sample, which outputs it wants (`plan`), how to make a batch of them
(`make`), and how each result becomes a derived sample (`build`). This module does the rest:
batching across samples (outputs do not depend on the batch size, since each job carries its own
seed), the empty-region policy, keeping sources on request, order (each source's outputs follow it),
and the counts a run reports. `reidtools.shards.map_shards` around it gives atomic per-shard writes
and resume.

Three threads share the work (img2dataset's reader / worker / writer split), so that the thread
that feeds the GPU does little else (bench/host_overhead.py): a planner thread plans the samples of
the next batch while the current one is generated (decoding, resizing to the generation size), the
calling thread reads the input and runs `make`, and a finisher thread runs `build` (compositing) on
the last batch while the next one is made; the shard writer then encodes and writes on its own
thread. Plans and builds run one at a time and in order, so generators may keep per-shard state in
them. What a caller sees is unchanged: outputs in input order, and an error (a sample's, or
`make`'s) raised where it was before, after the outputs of earlier batches. Outputs reach the writer
one batch later than they are made (and the input is read a batch ahead), which only a trickling
stdin would notice.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
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
    `plan` runs on a planner thread up to `batch_size` samples ahead, `build` on a finisher thread (both
    one at a time, in order); reading the samples and `make` run on the calling thread.
    """
    counts = counts if counts is not None else StageCounts()
    finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reid-finish")
    finishing: deque = deque()    # the last batch's outputs (build futures) and kept sources, in order

    def made(group):
        rows = [(sample, job) for sample, jobs in group for job in jobs]
        results: list = []
        for i in range(0, len(rows), batch_size):
            results += make([job for _, job in rows[i:i + batch_size]])
        done = iter(zip(rows, results))
        items: list = []
        for sample, jobs in group:
            if keep_source:
                items.append(sample)
            for _ in jobs:
                (src, job), result = next(done)
                items.append(finisher.submit(build, src, job, result))
        return items

    def drain():
        while finishing:
            item = finishing.popleft()
            if isinstance(item, Future):
                counts.outputs += 1
                item = item.result()
            yield item

    planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reid-plan")
    # the next batch's samples are planned while this one is made
    groups = _groups(_planned(samples, plan, planner, ahead=batch_size + 1), batch_size)
    try:
        while True:
            try:
                group = next(groups, None)
                items = made(group) if group is not None else []
            except Exception:
                # before the threads, a batch was written before the next sample was read: keep that
                yield from drain()
                raise
            yield from drain()      # the previous batch, finished while this one was made
            finishing.extend(items)
            if group is None:
                break
        yield from drain()
    finally:
        # on an error, SIGINT or an abandoned iteration: finish the plan and build under way (neither
        # blocks), drop the queued ones
        for pool in (planner, finisher):
            pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def _planned(samples: Iterable[dict], plan: Callable[[dict], list], planner: ThreadPoolExecutor,
             ahead: int) -> Iterator[tuple[dict, list]]:
    """(sample, plan(sample)) in input order, with the plans of the next `ahead - 1` samples under way on
    the planner thread; an error planning a sample is raised when that sample's turn comes.

    The samples are read here, on the calling thread: a read may block on stdin or a pipe, and only the
    main thread can be interrupted there (a thread blocked in a read of stdin at exit aborts CPython's
    finalisation); planning never blocks."""
    source = iter(samples)
    queued: deque = deque()
    while True:
        while source is not None and len(queued) < ahead:
            sample = next(source, _END)
            if sample is _END:
                source = None
                break
            queued.append((sample, planner.submit(plan, sample)))
        if not queued:
            return
        sample, jobs = queued.popleft()
        yield sample, jobs.result()


def _groups(planned: Iterator[tuple[dict, list]], batch_size: int) -> Iterator[list]:
    """Consecutive samples whose jobs fill a batch (the last group may be short or empty)."""
    group, njobs = [], 0
    for sample, jobs in planned:
        group.append((sample, jobs))
        njobs += len(jobs)
        if njobs >= batch_size:
            yield group
            group, njobs = [], 0
    yield group
