"""`reid pack`: convert a dataset folder in its published layout into split shards (CLI glue; the
converters live in reidtools.data.pack)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, output_option, progress_enabled

FORMATS = ("market1501", "dukemtmc", "msmt17", "cuhk03np", "prcc", "ltcc", "vcclothes", "deepchange", "last",
           "celebreid", "ccvid", "mars", "sysu", "llcm", "regdb", "folder")
VARIANTS = {"cuhk03np": ("detected", "labeled"), "msmt17": ("v1", "v2"), "deepchange": ("test", "val"),
            "last": ("test", "val"), "regdb": tuple(str(t) for t in range(1, 11))}
DIRECTIONS = ("llcm", "regdb")


@command("pack", short_help="Convert a dataset folder in its published layout into shards.")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("root", type=click.Path(exists=True))
@output_option()
@click.option("--maxcount", type=click.IntRange(min=1), default=1000, help="Samples per output shard.")
@click.option("--variant", default=None,
              help="cuhk03np: detected|labeled [default: detected]; msmt17: v1|v2 [default: detected from the folders]; "
                   "deepchange, last: test|val, the query/gallery pair written [default: test]; regdb: the trial 1-10 "
                   "[default: 1].")
@click.option("--direction", type=click.Choice(["i2v", "v2i"]), default=None,
              help="llcm, regdb: i2v stores infrared test images as query and visible as gallery; v2i swaps "
                   "[default: llcm i2v, regdb v2i (AGW's visible-to-thermal test)].")
@click.option("--frame-step", type=click.IntRange(min=1), default=1,
              help="ccvid: keep every N-th frame of each tracklet.")
def cli(fmt, root, output, maxcount, variant, direction, frame_step):
    """Convert a dataset folder in its published layout into shards.

    FORMAT is one of market1501, dukemtmc, msmt17, cuhk03np, prcc, ltcc, vcclothes, deepchange,
    last, celebreid, ccvid, mars (video: frames with json `tracklet`), sysu, llcm, regdb, folder (a
    CSV/JSON-lines manifest). Writes DIR/{train,val,query,gallery}-NNNNNN.tar with
    the original image bytes and contract metadata (dataset, split, pid, camid, clothes, modality).
    Junk images (Market/Duke pid -1) and non-image files are skipped and counted; an image whose
    name breaks the dataset's naming rule is an error. A re-run after a kill completes the missing
    shards. See docs/pack.md for each format's layout.
    """
    import sys

    from reidtools.data.pack import Options, scan_dataset, summarise, write_scan

    if variant is not None and variant not in VARIANTS.get(fmt, ()):
        if fmt not in VARIANTS:
            raise click.BadParameter(f"{fmt} has no variants (only {', '.join(VARIANTS)} do)", param_hint="--variant")
        raise click.BadParameter(f"{variant!r}: {fmt} takes {' or '.join(VARIANTS[fmt])}", param_hint="--variant")
    if direction is not None and fmt not in DIRECTIONS:
        raise click.BadParameter(f"{fmt} has no direction (only llcm and regdb do)", param_hint="--direction")
    scan = scan_dataset(fmt, root, Options(variant=variant, direction=direction, frame_step=frame_step))
    bar = None
    if progress_enabled():
        from tqdm import tqdm

        bar = tqdm(total=len(scan.items), desc="pack", unit="img", file=sys.stderr, leave=False)
    try:
        counts = write_scan(scan, output, maxcount, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    _print_summary(summarise(scan), counts, output)


def _print_summary(summary: dict, counts: dict, output: str) -> None:
    rows = [("split", "images", "ids", "cameras", "clothes", "modalities")]
    for split, s in summary["splits"].items():
        rows.append((split, s["images"], s["ids"], s["cameras"], s["clothes"], ",".join(s["modalities"])))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip(), err=True)
    click.echo(f"junk skipped: {summary['junk']}; unknown files skipped: {summary['unknown']}", err=True)
    for note in summary["notes"]:
        click.echo(note, err=True)
    where = "stdout" if output == "-" else output
    resumed = f", {counts['skipped']} already present (resumed)" if counts["skipped"] else ""
    click.echo(f"{counts['written']} samples written to {where}{resumed}", err=True)
