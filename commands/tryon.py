"""`reid tryon`: CLI glue over reidtools.generate.tryon.pipeline (IDM-VTON-compatible virtual try-on)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, parse_size,
                                         progress_enabled,
                                         resolve_task, seed_option, task_options)

# metadata of the person that no longer describes the try-on image
STALE = ("caption", "clothes_prompt", "quality", "garments", "parse_labels")


@command("tryon", short_help="Dress people in catalogue garments (shared clothes ids across identities).")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--garments", "garment_inputs", multiple=True, required=True, metavar="SHARDS",
              help="Catalogue shards from `reid tryoff` (garment.png + json garment id); repeatable, globs ok.")
@click.option("--model", default="yisol/IDM-VTON", metavar="ID|DIR",
              help="IDM-VTON in its published layout (unet, unet_encoder, vae, text_encoder(_2), tokenizer(_2), "
                   "image_encoder, scheduler).")
@click.option("--pairs", type=click.Choice(["all"]), default=None,
              help="Every person x every garment (the default when --per-id/--garments-per are not given).")
@click.option("--per-id", type=click.IntRange(1), default=None, metavar="N",
              help="HSGL's n: each identity's N best images (json quality sharpness; else input order).")
@click.option("--garments-per", type=click.IntRange(1), default=None, metavar="M",
              help="HSGL's m: the first M catalogue garments, worn by every selected image.")
@click.option("--steps", type=click.IntRange(1), default=30, help="Denoising steps (IDM-VTON demo).")
@click.option("--guidance", type=float, default=2.0, help="Classifier-free guidance scale (IDM-VTON demo).")
@click.option("--size", default="1024x768", metavar="HxW", help="Generation size (IDM-VTON).")
@click.option("--prompt", default="model is wearing casual garment", show_default=True,
              help="Try-on U-Net prompt (IDM-VTON: 'model is wearing ' + garment description).")
@click.option("--garment-prompt", default="a photo of casual garment", show_default=True,
              help="Garment U-Net prompt (IDM-VTON: 'a photo of ' + garment description).")
@click.option("--negative-prompt", default="monochrome, lowres, bad anatomy, worst quality, low quality",
              show_default=True, help="Negative prompt (IDM-VTON).")
@click.option("--arms/--no-arms", default=True,
              help="Add IDM-VTON's arm regions (from `pose` keypoints) to the clothing mask.")
@click.option("--ip-adapter/--no-ip-adapter", default=True,
              help="Condition on the garment through the IP-Adapter too (IDM-VTON: on).")
@click.option("--device", default=None, help="torch device [default: cuda, mps, then cpu].")
@click.option("--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp16",
              help="Precision (IDM-VTON: fp16); fp16 falls back to fp32 on CPU.")
@click.option("--offload", is_flag=True,
              help="Keep models on the CPU and move each to the GPU only while it runs (accelerate hooks): "
                   "peak GPU memory ~ one U-Net, at the price of moving both U-Nets every step.")
@task_options
@seed_option
def cli(inputs, output, garment_inputs, model, pairs, per_id, garments_per, steps, guidance, size, prompt,
        garment_prompt, negative_prompt, arms, ip_adapter, device, dtype, offload, shard_index, num_shards, seed, overwrite):
    """Dress people in catalogue garments (shared clothes ids across identities).

    HSGL's semantic-preserving hard samples (SHSG): person images wear garments of the catalogue
    made by `reid tryoff`, so that different identities wear the same garment (hard negatives) and
    one identity wears several (hard positives). An IDM-VTON-compatible pipeline on diffusers
    components: a garment U-Net whose self-attention features enter the try-on U-Net's
    self-attention (reference attention), an IP-Adapter projection of the garment, both SDXL text
    encoders, and a 13-channel inpainting U-Net (latent, mask, masked person, pose).

    The repaint region is `mask.png` (`reid mask`) or the LIP upper clothes of `parse.png`, plus the
    arms drawn from `pose` keypoints (--arms, as IDM-VTON's mask). The pose image is a `densepose.png`
    field when the sample has one (user-computed DensePose, what IDM-VTON was trained on), else a
    skeleton rendered from `pose` keypoints (a deviation: expect lower fidelity).

    Output: one sample per (person, garment) pair, key PERSONKEY_GARMENTID, field `png` (the
    try-on at the person's size, composited: pixels outside the mask are the person's), `mask.png`
    (the region repainted), json `clothes` = `garment` = the garment id (shared across identities),
    `source` (the person key) and `history`. Seeds derive from (--seed, person key, garment id).
    --per-id/--garments-per read the person shards twice (not from stdin).
    """
    import io
    import logging

    from PIL import Image

    from reidtools.errors import ReidError, SampleError
    from reidtools.generate.tryon.pipeline import TryOnPipeline, TryOnSettings
    from reidtools.generate.tryon.inputs import add_arms, garment_region, pose_image, to_mask_image
    from reidtools.generate.tryon.pairs import select_pairs
    from reidtools.runtime import best_device, torch_dtype
    from reidtools.seeding import derive_seed
    from reidtools.shards import expand_inputs, iter_samples, map_shards
    from reidtools.shards.sample import derive, history_entry, image, meta, where
    from reidtools.shards.sample import mask as read_mask

    log = logging.getLogger("reidtools")
    if pairs == "all" and (per_id or garments_per):
        raise click.UsageError("--pairs all excludes --per-id/--garments-per")
    h, w = parse_size(size, "--size", multiple=8)
    index, count = resolve_task(shard_index, num_shards)
    shards = expand_inputs(inputs)

    def rgb(sample, field):
        value = sample[field]
        try:
            img = value if isinstance(value, Image.Image) else Image.open(io.BytesIO(value))
            return img.convert("RGB")
        except OSError as exc:
            raise SampleError(*where(sample), f"{field} is not a readable image ({exc})") from None

    catalogue: dict[str, tuple[Image.Image, dict]] = {}
    for g in iter_samples(expand_inputs(list(garment_inputs))):
        gid = str(meta(g).get("garment") or g["__key__"])
        if gid in catalogue:
            raise SampleError(*where(g), f"garment id {gid!r} appears twice in --garments")
        if "garment.png" not in g:
            raise SampleError(*where(g), "no garment.png: --garments takes `reid tryoff` output")
        catalogue[gid] = (rgb(g, "garment.png"), meta(g))
    if not catalogue:
        raise ReidError("--garments: no catalogue samples found")
    garment_ids = list(catalogue)

    if per_id is None and garments_per is None:
        chosen = None   # every person x every garment, decided per sample (streams, stdin ok)
    else:
        if "-" in inputs:
            raise click.UsageError("--per-id/--garments-per read the inputs twice; pass shard files, not -")
        persons = []
        for s in iter_samples(shards):
            m = meta(s)
            q = m.get("quality")
            q = q.get("sharpness") if isinstance(q, dict) else q
            persons.append(((s["__shard__"], s["__key__"]), (m.get("dataset"), m.get("pid")),
                            float(q) if isinstance(q, (int, float)) else None))
        chosen = {}
        for person, gid in select_pairs(persons, garment_ids, per_id=per_id, garments_per=garments_per):
            chosen.setdefault(person, []).append(gid)
        log.info("%d try-on pairs (%d images x garments)", sum(map(len, chosen.values())), len(chosen))
        from collections import Counter

        from reidtools.generate.tryon.pairs import eq3_counts

        k_i = Counter(ident for _, ident, _ in persons)
        n = per_id if per_id is not None else max(k_i.values())
        m = min(garments_per or len(garment_ids), len(garment_ids))
        if all(k >= n for k in k_i.values()):   # eq. 3 assumes n images of every identity
            counts = eq3_counts(k_i, m=m, n=n)
            log.info("HSGL eq. 3 with these inputs as the originals: C=%d, n=%d, m=%d -> N_HP=%d, N_HN=%d",
                     len(k_i), n, m, counts["n_hp"], counts["n_hn"])

    if not progress_enabled():   # -q: no 'Loading weights' bars from transformers/diffusers either
        import diffusers.utils.logging
        import transformers.utils.logging

        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.disable_progress_bar()
    dev = best_device(device)
    if offload and dev.type == "cpu":
        raise click.UsageError("--offload moves models between the CPU and a GPU; the device here is cpu")
    pipe = TryOnPipeline.from_pretrained(model, device=dev, dtype=torch_dtype(dtype, dev), offload=offload,
                                         ip_adapter=ip_adapter)
    settings = TryOnSettings(steps=steps, guidance=guidance, size=(h, w), prompt=prompt,
                             garment_prompt=garment_prompt, negative_prompt=negative_prompt)
    params = dict(steps=steps, guidance=guidance, size=[h, w], garment_prompt=garment_prompt,
                  negative_prompt=negative_prompt, arms=arms, ip_adapter=ip_adapter, dtype=dtype)

    def region(s, m):
        parse = None
        if "mask.png" not in s:
            if "parse.png" not in s or m.get("parse_labels", "lip") != "lip":
                raise SampleError(*where(s), "needs mask.png or a LIP parse.png: run `reid mask` first")
            parse = read_mask(s, "parse.png")
        out = garment_region(None if parse is not None else read_mask(s, "mask.png"), parse)
        if arms:
            out = add_arms(out, m.get("pose"))
        if not out.any():
            raise SampleError(*where(s), "empty clothing mask: nothing to dress")
        return to_mask_image(out)

    def fn(samples):
        for s in samples:
            todo = garment_ids if chosen is None else chosen.get((s["__shard__"], s["__key__"]), [])
            if not todo:
                continue
            m = meta(s)
            person = image(s)
            mk = region(s, m)
            dp = rgb(s, "densepose.png") if "densepose.png" in s else None
            try:
                pose, kind = pose_image(dp, m.get("pose"), (h, w))
            except ValueError as exc:
                raise SampleError(*where(s), f"{exc}: run `reid pose` first") from None
            for gid in todo:
                garment, gmeta = catalogue[gid]
                sd = derive_seed(seed, s["__key__"], gid)
                out = pipe(person, mk, pose, garment, sd, settings)
                entry = history_entry("tryon", model=model, seed=sd, prompt=prompt, garment=gid, pose_image=kind,
                                      **params)
                new = derive(s, f"{s['__key__']}_{gid}", entry, png=out, **{"mask.png": mk},
                             json={"clothes": gid, "garment": gid, "garment_source": gmeta.get("source")})
                for k in STALE:
                    new["json"].pop(k, None)
                yield new

    report = map_shards(shards, output, fn, shard_index=index, num_shards=count, desc="tryon",
                        progress=progress_enabled(), overwrite=overwrite)
    log.info("%d try-on images from %d person samples", report.samples_out, report.samples_in)
