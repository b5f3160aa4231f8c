"""The settings the generator commands share (caption, inpaint, tryoff, invert sample, posegen sample).

Each command's `*Run` derives from `GeneratorOptions`, so the six options that `commands/_options.py`
declares once (`--batch-size` aside, which each command words for what it batches) are one set of
fields with one set of checks. The checks run when a run is built, so a library caller that skips
click's option types gets one line naming the option instead of a `range()` error or an idle task.
(`tryon` makes one image per call: no batch size, so `TryOnRun` keeps its own fields.)
"""

from __future__ import annotations

from dataclasses import dataclass

from reidtools.errors import ReidError
from reidtools.runtime import DTYPES
from reidtools.shards.paths import check_task


@dataclass(kw_only=True)
class GeneratorOptions:
    """Batching, precision, device, task split (`--shard-index/--num-shards`) and the global seed."""
    batch_size: int = 8
    dtype: str = "fp16"
    device: str | None = None            # None = runtime.best_device's choice
    shard_index: int = 0
    num_shards: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ReidError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.dtype not in DTYPES:
            raise ReidError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        check_task(self.shard_index, self.num_shards)
