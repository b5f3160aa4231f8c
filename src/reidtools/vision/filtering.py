"""Running a chain of rules over shards: one streaming pass, or two when a rule ranks the whole input.

Top-N selection (quality --top-n/--top-n-per-id) needs every score before the first sample can be
written: pass 1 scores all input shards (every task scores all of them, so the ranking is the same
in each array task) and keeps only metadata-sized records; pass 2 writes this task's shards, output
still shard-per-shard. Stdin cannot be read twice, so it is spooled to a temporary file first.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from tqdm import tqdm

from dataclasses import dataclass

from reidtools.fileio import write_json_atomic
from reidtools.shards import STDIN, expand_inputs, iter_shard, map_shards, meta
from reidtools.vision.rules import Counts, evaluate, record, select_top

RULES = ("frontal", "quality", "pose-ref", "pose-target", "pose-gen", "size")


@dataclass
class FilterRun:
    """`reid filter`'s options; each rule's defaults are its paper's (see docs/filter.md)."""
    inputs: tuple
    output: str
    rules: tuple
    report: str | None = None
    frontal_mode: str = "eq2"            # HSGL eq. 2 (released code: composite)
    visibility: float = 0.7
    visibility_mode: str = "all"
    eps_y: float = 0.05
    eps_v: float = 0.4
    min_resolution: int = 0
    min_sharpness: float = 0.0
    top_n_per_id: int | None = None
    top_n: int | None = None
    rank_by: str = "resolution"          # HSGL §3.2.1: resolution first, then blur (released: "released")
    tau_ref: float = 0.6                 # Pose-dIVE eq. 3 (Fig. 4)
    tau_tar: float = 0.6                 # eq. 4
    tau_gen: float = 0.6                 # eq. 6
    eps_gen: float = 0.1                 # eq. 5: "a small value"
    keypoints: list | None = None
    min_height: int = 0
    min_width: int = 0
    min_aspect: float | None = None
    max_aspect: float | None = None
    shard_index: int = 0
    num_shards: int = 1
    seed: int = 0
    overwrite: bool = False

    def chain(self) -> list:
        from reidtools.vision import rules as R

        make = {
            "frontal": lambda: R.Frontal(self.frontal_mode, self.visibility, self.eps_y, self.eps_v,
                                         self.visibility_mode),
            "quality": lambda: R.Quality(self.min_resolution, self.min_sharpness, self.top_n_per_id, self.top_n,
                                         self.rank_by),
            "pose-ref": lambda: R.PoseRef(self.tau_ref, self.keypoints),
            "pose-target": lambda: R.PoseTarget(self.tau_tar, self.keypoints),
            "pose-gen": lambda: R.PoseGen(self.tau_gen, self.eps_gen, self.keypoints),
            "size": lambda: R.Size(self.min_height, self.min_width, self.min_aspect, self.max_aspect),
        }
        return [make[r]() for r in dict.fromkeys(self.rules)]


def run_filter(run: FilterRun, *, progress: bool = True) -> Counts:
    """Filter the shards; log (and with `report`, write) what each rule removed."""
    import logging

    import dataclasses

    rules = run.chain()
    counts = filter_shards(list(run.inputs), run.output, rules, shard_index=run.shard_index,
                           num_shards=run.num_shards, progress=progress, overwrite=run.overwrite)
    summary = counts.as_dict()
    # the thresholds each rule ran with, so a report says which eps/tau made its counts
    for entry, rule in zip(summary["rules"], rules):
        if dataclasses.is_dataclass(rule):
            entry["parameters"] = {f.name: getattr(rule, f.name) for f in dataclasses.fields(rule)
                                   if f.name != "name" and isinstance(getattr(rule, f.name), (int, float, str, list,
                                                                                             type(None)))}
    logging.getLogger("reidtools").info("kept %d of %d (%s)", summary["kept"], summary["input"], ", ".join(
        f"{r['rule']} removed {r['removed']}" for r in summary["rules"]))
    if run.report:
        write_json_atomic(run.report, summary)
    return counts


def _group(sample: dict) -> tuple:
    m = meta(sample)
    return (m.get("dataset"), m.get("pid"))


def filter_shards(inputs: list[str], output: str, rules: list, *, shard_index: int = 0, num_shards: int = 1,
               progress: bool = True, overwrite: bool = False) -> Counts:
    counts = Counts([r.name for r in rules])
    shards = expand_inputs(inputs)
    ranking = next((r for r in rules if getattr(r, "whole_input", False)), None)
    if ranking is None:
        def fn(samples):
            for s in samples:
                outs = evaluate(s, rules)
                counts.add([o.passed for o in outs])
                if all(o.passed for o in outs):
                    record(s, outs)
                    yield s

        map_shards(shards, output, fn, shard_index=shard_index, num_shards=num_shards, desc="filter",
                   progress=progress, overwrite=overwrite)
        return counts

    tmpdir = None
    try:
        if STDIN in shards:
            tmpdir = tempfile.mkdtemp(prefix="reid-filter-")
            spool = os.path.join(tmpdir, "stdin-000000.tar")
            with open(spool, "wb") as fh:
                shutil.copyfileobj(sys.stdin.buffer, fh, 1 << 20)
            shards = [spool if s == STDIN else s for s in shards]
        at = rules.index(ranking)
        cache: dict = {}
        candidates = []
        bar = tqdm(desc="filter (scoring)", unit="img", disable=not progress, leave=False, file=sys.stderr)
        for shard in shards:
            for s in iter_shard(shard):
                outs = evaluate(s, rules)
                cache[(shard, s["__key__"])] = outs
                if all(o.passed for o in outs):
                    candidates.append(((shard, s["__key__"]), _group(s), ranking.rank_value(outs[at].scores)))
                bar.update(1)
        bar.close()
        chosen = select_top(candidates, ranking.top_n_per_id, ranking.top_n)

        def fn2(samples):
            for s in samples:
                ident = (s["__shard__"], s["__key__"])
                outs = cache[ident]
                # only a ranked candidate (it passed everything else) can lose by not being chosen
                if all(o.passed for o in outs) and ident not in chosen:
                    outs[at].passed = False
                outs[at].scores = {**outs[at].scores, "selected": ident in chosen}
                counts.add([o.passed for o in outs])
                if all(o.passed for o in outs):
                    record(s, outs)
                    yield s

        map_shards(shards, output, fn2, shard_index=shard_index, num_shards=num_shards, desc="filter",
                   progress=progress, overwrite=overwrite)
        return counts
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
