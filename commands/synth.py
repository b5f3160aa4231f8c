"""`reid synth`: write the built-in synthetic dataset (CLI glue; the library is reidtools.data.synth)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, output_option, parse_size, progress_enabled, seed_option

_OPTION_FLAGS = {"ids": "--ids", "outfits": "--outfits", "cams": "--cams", "images_per": "--images-per",
                 "size": "--size", "modalities": "--modalities"}


@command("synth", short_help="Render the built-in synthetic clothes-changing ReID dataset.")
@output_option()
@click.option("--ids", type=int, default=40, help="Identities; the first half train, the rest query/gallery.")
@click.option("--outfits", type=int, default=3, help="Outfits (clothes ids) per identity.")
@click.option("--cams", type=int, default=4, help="Cameras; every identity wears every outfit in every camera.")
@click.option("--images-per", type=int, default=2,
              help="Images per (identity, outfit, camera); for test ids image 0 is the query, the rest gallery.")
@click.option("--size", default="128x64", metavar="HxW", help="Image size.")
@click.option("--modalities", default="rgb", metavar="rgb|ir|rgb,ir",
              help="rgb, ir, or rgb,ir (cameras alternate rgb, ir, rgb, ...).")
@click.option("--dataset", default="synth", metavar="NAME",
              help="The json `dataset` field and key prefix ([A-Za-z0-9_]+); two sets with different names "
                   "keep their identities and keys apart when read together (e.g. as two source datasets).")
@click.option("--maxcount", type=click.IntRange(min=1), default=1000, help="Samples per output shard.")
@seed_option
def cli(output, ids, outfits, cams, images_per, size, modalities, dataset, maxcount, seed):
    """Render the built-in synthetic clothes-changing ReID dataset.

    Procedurally drawn people whose identity lives in body shape, skin and hair colour, hair style
    and a face mark, and whose outfits change across clothes ids, seen by several cameras
    (background, lighting, scale, viewpoint; optionally infrared). Every sample carries the exact
    LIP parse map (`parse.png`), MediaPipe-33 `pose` keypoints (normalised x, y) and the outfit
    description (`garments`). Writes DIR/{train,query,gallery}-NNNNNN.tar, or one tar on stdout
    with `-o -`. Deterministic for a seed; a re-run after a kill completes the missing shards.
    """
    import re
    import sys

    from reidtools.data.synth import SynthOptionError, check_options, write_dataset

    hw = parse_size(size, "--size")
    mods = tuple(m.strip() for m in modalities.split(",") if m.strip())
    try:
        check_options(ids, outfits, cams, images_per, hw, mods)
    except SynthOptionError as exc:
        raise click.BadParameter(str(exc), param_hint=_OPTION_FLAGS[exc.option]) from None
    if not re.fullmatch(r"[A-Za-z0-9_]+", dataset):
        raise click.BadParameter(f"{dataset!r}: letters, digits and _ only (it starts every key)",
                                 param_hint="--dataset")
    bars: list = []

    def progress(k: int) -> None:
        # the bar starts with the first sample, so an error before it is one clean line
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=ids * outfits * cams * images_per, desc="synth", unit="img",
                             file=sys.stderr, leave=False))
        bars[0].update(k)

    try:
        summary = write_dataset(output, maxcount, ids=ids, outfits=outfits, cams=cams, images_per=images_per,
                                size=hw, modalities=mods, seed=seed, dataset=dataset,
                                progress=progress if progress_enabled() else None)
    finally:
        for bar in bars:
            bar.close()
    if progress_enabled():  # -q: warnings only
        _print_summary(summary, output)


def _print_summary(summary: dict, output: str) -> None:
    rows = [("split", "images", "ids", "cameras", "clothes", "modalities")]
    for split in ("train", "query", "gallery"):
        s = summary["splits"].get(split)
        if s:
            rows.append((split, s["images"], s["ids"], s["cameras"], s["clothes"], ",".join(s["modalities"])))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip(), err=True)
    where = "stdout" if output == "-" else output
    skipped = f", {summary['skipped']} already present (resumed)" if summary["skipped"] else ""
    click.echo(f"{summary['written']} samples written to {where}{skipped}", err=True)
