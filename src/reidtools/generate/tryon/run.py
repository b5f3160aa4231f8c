"""`reid tryon` as one library call: HSGL's semantic-preserving hard samples (SHSG, seed 001 §3.2.1).

Person images wear garments of the catalogue made by `reid tryoff`, so that different identities wear
the same garment (hard negatives) and one identity wears several (hard positives). One output per
(person, garment) pair, key PERSONKEY_GARMENTID; seeds derive from (seed, person key, garment id).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from reidtools.errors import ReidError, SampleError

log = logging.getLogger("reidtools")

# metadata of the person that no longer describes the try-on image
STALE = ("caption", "clothes_prompt", "quality", "garments", "parse_labels")


@dataclass
class TryOnRun:
    inputs: tuple
    output: str
    garments: tuple                      # catalogue shards (`reid tryoff` output)
    model: str = "yisol/IDM-VTON"
    pairs: str | None = None             # "all": every person x every garment
    per_id: int | None = None            # HSGL's n
    garments_per: int | None = None      # HSGL's m
    steps: int = 30                      # IDM-VTON demo
    guidance: float = 2.0                # IDM-VTON demo
    size: tuple[int, int] = (1024, 768)  # IDM-VTON
    # IDM-VTON's prompts around a garment description; HSGL (Alg. 1 lines 11, 13) passes each catalogue
    # garment's T_desc (json garment_desc, `reid caption --garments`); `desc` stands in without one
    prompt: str = "model is wearing {desc}"
    garment_prompt: str = "a photo of {desc}"
    desc: str = "casual garment"
    region: str = "upper"                # IDM-VTON's upper-body region (catalogue garments are tops); mask: mask.png
    rank_by: str = "resolution"          # which images are an identity's n best: `reid filter`'s ranking
    negative_prompt: str = "monochrome, lowres, bad anatomy, worst quality, low quality"
    arms: bool = True
    ip_adapter: bool = True
    empty_mask: str = "skip"
    device: str | None = None
    dtype: str = "fp16"
    offload: bool = False
    shard_index: int = 0
    num_shards: int = 1
    seed: int = 0
    overwrite: bool = False


def _rgb(sample: dict, name: str):
    from reidtools.shards.sample import rgb_field

    return rgb_field(sample, name)


def read_catalogue(inputs) -> dict:
    """garment id -> (garment image, its metadata), from `reid tryoff` shards."""
    from reidtools.shards import expand_inputs, iter_samples
    from reidtools.shards.sample import meta, where

    catalogue: dict = {}
    for g in iter_samples(expand_inputs(list(inputs))):
        gid = str(meta(g).get("garment") or g["__key__"])
        if gid in catalogue:
            raise SampleError(*where(g), f"garment id {gid!r} appears twice in --garments")
        if "garment.png" not in g:
            raise SampleError(*where(g), "no garment.png: --garments takes `reid tryoff` output")
        catalogue[gid] = (_rgb(g, "garment.png"), meta(g))
    if not catalogue:
        raise ReidError("--garments: no catalogue samples found")
    return catalogue


def quality_key(q, rank_by: str):
    """A sort key (larger = better) from a sample's json `quality`, ranked as `reid filter --rank-by`
    ranks it; None when the sample was not scored (`reid filter --rule quality`)."""
    from reidtools.vision.rules import Quality

    if isinstance(q, dict) and "resolution" in q and "sharpness" in q:
        return Quality(rank=rank_by).rank_value(q)
    if isinstance(q, (int, float)):
        return (float(q),)
    return None


def choose_pairs(shards: list[str], garment_ids: list[str], per_id: int | None, garments_per: int | None,
                 rank_by: str = "resolution") -> dict:
    """(shard, key) -> garment ids for HSGL's n best images per identity (Alg. 1 line 12:
    SelectTopNPerID over D_highq, by the quality assessor's score) x m garments; logs eq. 3."""
    from reidtools.generate.tryon.pairs import eq3_counts, select_pairs
    from reidtools.shards import iter_samples
    from reidtools.shards.sample import meta

    persons, unscored = [], 0
    for s in iter_samples(shards):
        m = meta(s)
        key = quality_key(m.get("quality"), rank_by)
        unscored += key is None
        persons.append(((s["__shard__"], s["__key__"]), (m.get("dataset"), m.get("pid")), key))
    if unscored and per_id is not None:
        log.warning("%d person image(s) have no quality score; they rank last, in input order (run "
                    "`reid filter --rule quality` first, as HSGL's D_highq)", unscored)
    chosen: dict = {}
    for person, gid in select_pairs(persons, garment_ids, per_id=per_id, garments_per=garments_per):
        chosen.setdefault(person, []).append(gid)
    log.info("%d try-on pairs (%d images x garments)", sum(map(len, chosen.values())), len(chosen))
    k_i = Counter(ident for _, ident, _ in persons)
    n = per_id if per_id is not None else max(k_i.values())
    m = min(garments_per or len(garment_ids), len(garment_ids))
    if all(k >= n for k in k_i.values()):   # eq. 3 assumes n images of every identity
        counts = eq3_counts(k_i, m=m, n=n)
        log.info("HSGL eq. 3 with these inputs as the originals: C=%d, n=%d, m=%d -> N_HP=%d, N_HN=%d",
                 len(k_i), n, m, counts["n_hp"], counts["n_hn"])
    return chosen


def run_tryon(run: TryOnRun, *, progress: bool = True):
    """Dress the people in catalogue garments and write the shards; returns the MapReport."""
    from reidtools.generate.stage import StageCounts, check_region, generate_stage
    from reidtools.generate.tryon.inputs import add_arms, garment_region, pose_image, to_mask_image
    from reidtools.generate.tryon.pipeline import TryOnPipeline, TryOnSettings
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import expand_inputs, map_shards
    from reidtools.shards.sample import derive, history_entry, image, meta, where
    from reidtools.shards.sample import mask as read_mask

    if run.pairs == "all" and (run.per_id or run.garments_per):
        raise ReidError("--pairs all excludes --per-id/--garments-per")
    shards = expand_inputs(list(run.inputs))
    catalogue = read_catalogue(run.garments)
    garment_ids = list(catalogue)
    chosen = None   # every person x every garment, decided per sample (streams, stdin ok)
    if run.per_id is not None or run.garments_per is not None:
        if "-" in run.inputs:
            raise ReidError("--per-id/--garments-per read the inputs twice; pass shard files, not -")
        chosen = choose_pairs(shards, garment_ids, run.per_id, run.garments_per, run.rank_by)
    if not progress:   # -q: no 'Loading weights' bars from transformers/diffusers either
        from reidtools.generate.inpaint.pipeline import quiet_loading

        quiet_loading()
    dev = best_device(run.device)
    if run.offload and dev.type == "cpu":
        raise ReidError("--offload moves models between the CPU and a GPU; the device here is cpu")
    pipe = TryOnPipeline.from_pretrained(run.model, device=dev, dtype=torch_dtype(run.dtype, dev), offload=run.offload,
                                         ip_adapter=run.ip_adapter)
    h, w = run.size
    undescribed = [gid for gid, (_, gm) in catalogue.items() if not gm.get("garment_desc")]
    if undescribed:
        log.warning("%d of %d catalogue garments have no garment_desc (run `reid caption --garments`); they use "
                    "--desc %r", len(undescribed), len(catalogue), run.desc)
    settings = {}
    for gid, (_, gm) in catalogue.items():
        desc = gm.get("garment_desc") or run.desc
        settings[gid] = TryOnSettings(steps=run.steps, guidance=run.guidance, size=(h, w),
                                      prompt=run.prompt.format(desc=desc),
                                      garment_prompt=run.garment_prompt.format(desc=desc),
                                      negative_prompt=run.negative_prompt)
    params = dict(steps=run.steps, guidance=run.guidance, size=[h, w], negative_prompt=run.negative_prompt,
                  arms=run.arms, ip_adapter=run.ip_adapter, region=run.region, **pipe.precision())
    counts = StageCounts()
    whole_mask: list[str] = []

    def region(s, m):
        # IDM-VTON repaints the upper body (its "upper_body" agnostic mask: upper clothes, dress, coat +
        # arms): a LIP parse.png gives exactly that; DLCR's mask.png also covers pants and shoes
        lip = "parse.png" in s and m.get("parse_labels", "lip") == "lip"
        if run.region == "upper" and lip:
            out = garment_region(None, read_mask(s, "parse.png"))
        elif "mask.png" in s:
            if run.region == "upper":
                whole_mask.append(s["__key__"])
            out = garment_region(read_mask(s, "mask.png"), None)
        else:
            raise SampleError(*where(s), "needs a LIP parse.png or mask.png: run `reid mask` first")
        if run.arms:
            out = add_arms(out, m.get("pose"))
        return out

    def plan(s):
        todo = garment_ids if chosen is None else chosen.get((s["__shard__"], s["__key__"]), [])
        if not todo:
            return []
        m = meta(s)
        area = region(s, m)
        if not check_region(s, area, policy=run.empty_mask, counts=counts, what="empty clothing mask"):
            return []
        mk = to_mask_image(area)
        dp = _rgb(s, "densepose.png") if "densepose.png" in s else None
        try:
            pose, kind = pose_image(dp, m.get("pose"), (h, w))
        except ValueError as exc:
            raise SampleError(*where(s), f"{exc}: run `reid pose` first") from None
        person = image(s)
        return [(person, mk, pose, kind, gid, derive_seed(run.seed, s["__key__"], gid)) for gid in todo]

    def make(jobs):
        return [pipe(person, mk, pose, catalogue[gid][0], sd, settings[gid]) for person, mk, pose, _, gid, sd in jobs]

    def build(s, job, out):
        _, mk, _, kind, gid, sd = job
        entry = history_entry("tryon", model=run.model, seed=sd, prompt=settings[gid].prompt, garment=gid,
                              garment_prompt=settings[gid].garment_prompt, pose_image=kind, **params)
        new = derive(s, f"{s['__key__']}_{gid}", entry, png=out, **{"mask.png": mk},
                     json={"clothes": gid, "garment": gid, "garment_source": catalogue[gid][1].get("source")})
        for k in STALE:
            new["json"].pop(k, None)
        return new

    def process(samples):
        # one pair per pipeline call: IDM-VTON's pipeline is not batched
        return generate_stage(samples, plan=plan, make=make, build=build, batch_size=1, counts=counts)

    report = map_shards(shards, run.output, process, shard_index=run.shard_index, num_shards=run.num_shards,
                        desc="tryon", progress=progress, overwrite=run.overwrite)
    counts.log("tryon")
    if whole_mask:
        log.warning("%d person image(s) had no LIP parse.png, so their whole mask.png was repainted instead of the "
                    "upper body (first: %s)", len(whole_mask), whole_mask[0])
    log.info("%d try-on images from %d person samples", report.samples_out, report.samples_in)
    return report
