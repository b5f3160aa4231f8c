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

from reidtools.shards import STDIN, expand_inputs, iter_shard, map_shards, meta
from reidtools.vision.rules import Counts, evaluate, record, select_top


def _group(sample: dict) -> tuple:
    m = meta(sample)
    return (m.get("dataset"), m.get("pid"))


def run_filter(inputs: list[str], output: str, rules: list, *, shard_index: int = 0, num_shards: int = 1,
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
