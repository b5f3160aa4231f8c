"""Writing `reid invert sample` output: jobs (pid x camera x index) into atomic shards.

Output shard n holds jobs [n*shard_size, (n+1)*shard_size) of the fixed job order, so a re-run skips
finished shards and array tasks (every count-th shard) never collide.
"""

from __future__ import annotations

import logging
import os

from reidtools.errors import ReidError
from reidtools.generate.inversion.model import generate, jobs, load_pipeline

log = logging.getLogger("reidtools")


def sample_to(ckpt_dir: str, output: str, manifest: dict, ids: list[int], cameras: list[str], *, per_id: int,
              steps: int, scheduler: str, guidance: float, size, base: str | None, batch_size: int,
              shard_size: int, dtype: str, device: str | None, seed: int, task=(0, 1),
              progress: bool = True) -> int:
    """Generate and write; returns the number of samples written."""
    from tqdm import tqdm

    from reidtools.shards import STDOUT
    from reidtools.shards.mapping import write_plans

    todo = jobs(ids, cameras, per_id)
    index, count = task
    chunks = [todo[i:i + shard_size] for i in range(0, len(todo), shard_size)]
    if output == STDOUT:
        if count > 1:
            raise ReidError("-o - cannot be split across tasks; write a folder")
        mine = [(None, c) for c in chunks]
    else:
        if len(chunks) < count:
            raise ReidError(f"{len(chunks)} output shard(s) for {count} tasks: lower --shard-size or run fewer tasks")
        mine = []
        for n in range(index, len(chunks), count):
            path = os.path.join(output, f"invert-{n:06d}.tar")
            if os.path.exists(path):
                log.info("%s exists, skipping", path)
                continue
            mine.append((path, chunks[n]))
    if not mine:
        return 0
    pipe, manifest = load_pipeline(ckpt_dir, base=base, scheduler=scheduler, device=device, dtype=dtype)
    bar = tqdm(total=sum(len(c) for _, c in mine), desc="sample", unit="img", disable=not progress,
               dynamic_ncols=True, leave=False)

    def batches(chunk):
        for i in range(0, len(chunk), batch_size):
            out = generate(pipe, manifest, chunk[i:i + batch_size], seed=seed, steps=steps, guidance=guidance,
                           size=size, scheduler=scheduler, ckpt_dir=ckpt_dir)
            bar.update(len(out))
            yield from out

    try:
        return write_plans(mine, output, batches, prefix="invert")
    finally:
        bar.close()
