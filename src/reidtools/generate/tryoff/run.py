"""`reid tryoff` as one library call: a garment catalogue from dressed people (HSGL's clothing database,
seed 001 §3.2.1, made with TryOffAnyone).

Each input sample gives one catalogue sample: key and json `garment` = `gNNNN` (shard position x 10000
+ index in the shard, so ids do not depend on how shards are split), field `garment.png`, `source`
and `history`; the person's metadata is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from reidtools.errors import SampleError
from reidtools.generate.options import GeneratorOptions

log = logging.getLogger("reidtools")

PER_SHARD = 10000  # garment ids: g<shard position * 10000 + index in shard>


@dataclass(kw_only=True)
class TryOffRun(GeneratorOptions):
    inputs: tuple
    output: str
    model: str = "stable-diffusion-v1-5/stable-diffusion-inpainting"   # TryOffAnyone's base
    vae: str = "stabilityai/sd-vae-ft-mse"
    weights: str = "ixarchakos/tryOffAnyone"
    garment: str = "tops"
    steps: int = 50                       # TryOffAnyone
    scale: float = 2.5
    eta: float = 1.0
    size: tuple[int, int] = (512, 384)
    batch_size: int = 1
    dtype: str = "bf16"                   # TryOffAnyone
    empty_mask: str = "skip"
    overwrite: bool = False


def run_tryoff(run: TryOffRun, *, progress: bool = True):
    from reidtools.generate.stage import StageCounts, check_region, generate_stage
    from reidtools.generate.tryoff.pipeline import TryOffPipeline, TryOffSettings, garment_mask
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import expand_inputs, map_shards
    from reidtools.shards.sample import derive, history_entry, image, meta, where
    from reidtools.shards.sample import mask as read_mask

    shards = expand_inputs(list(run.inputs))
    position = {s: i for i, s in enumerate(shards)}
    position["<stdin>"] = position.get("-", 0)  # the reader labels stdin samples so
    dev = best_device(run.device)
    pipe = TryOffPipeline.from_pretrained(run.model, run.vae, run.weights, device=dev, dtype=torch_dtype(run.dtype, dev))
    h, w = run.size
    settings = TryOffSettings(steps=run.steps, scale=run.scale, eta=run.eta, size=(h, w))
    params = dict(steps=run.steps, scale=run.scale, eta=run.eta, size=[h, w], garment=run.garment, vae=run.vae,
                  weights=run.weights, **pipe.precision())
    counts = StageCounts()
    index_in_shard: dict = {}

    def plan(sample):
        i = index_in_shard[sample["__shard__"]] = index_in_shard.get(sample["__shard__"], -1) + 1
        if i >= PER_SHARD:
            raise SampleError(*where(sample), f"more than {PER_SHARD} samples in one catalogue shard; split it")
        m = meta(sample)
        parse = None
        if "parse.png" in sample and m.get("parse_labels", "lip") == "lip":
            parse = read_mask(sample, "parse.png")
        elif "mask.png" not in sample:
            raise SampleError(*where(sample), "needs parse.png (LIP labels) or mask.png: run `reid mask` first")
        region = garment_mask(parse, None if parse is not None else read_mask(sample, "mask.png"), run.garment)
        what = f"no {run.garment} pixels in its {'parse.png' if parse is not None else 'mask.png'}"
        if not check_region(sample, region, policy=run.empty_mask, counts=counts, what=what):
            return []
        gid = f"g{position[sample['__shard__']] * PER_SHARD + i:04d}"
        return [(image(sample), region, derive_seed(run.seed, sample["__key__"]), gid)]

    def make(jobs):
        return pipe([j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs], settings)

    def build(sample, job, picture):
        _, _, sd, gid = job
        entry = history_entry("tryoff", model=run.model, seed=sd, **params)
        return derive(sample, gid, entry, **{"garment.png": picture,
                                             "json": {"garment": gid, "garment_type": run.garment}})

    def process(samples):
        index_in_shard.clear()
        return generate_stage(samples, plan=plan, make=make, build=build, batch_size=run.batch_size, counts=counts)

    report = map_shards(shards, run.output, process, shard_index=run.shard_index, num_shards=run.num_shards,
                        desc="tryoff", progress=progress, overwrite=run.overwrite)
    counts.log("tryoff")
    log.info("%d garments from %d samples", report.samples_out, report.samples_in)
    return report
