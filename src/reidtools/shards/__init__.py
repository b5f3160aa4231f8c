"""Shard I/O: the sample contract, readers, atomic writers, per-shard maps, task splitting."""

from reidtools.shards.mapping import MapReport, map_shards
from reidtools.shards.paths import STDIN, expand_inputs, split_shards, task_from_env
from reidtools.shards.reader import iter_samples, iter_shard
from reidtools.shards.sample import (array, derive, history_entry, image, image_field, mask, meta,
                                     require, validate)
from reidtools.shards.writer import STDOUT, AtomicShard, ShardWriter, SplitWriter, TarStream

__all__ = [
    "STDIN", "STDOUT", "AtomicShard", "MapReport", "ShardWriter", "SplitWriter", "TarStream", "array",
    "derive", "expand_inputs", "history_entry", "image", "image_field", "iter_samples", "iter_shard",
    "map_shards", "mask", "meta", "require", "split_shards", "task_from_env", "validate",
]
