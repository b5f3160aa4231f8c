"""`reid show`: a contact-sheet PNG of samples (CLI glue; the library is reidtools.data.sheet)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, inputs_argument, parse_size, seed_option


def _parse_ids(ctx, param, value):
    if not value:
        return None
    try:
        return {int(v) for v in value.split(",") if v.strip()}
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integer ids") from None


@command("show", short_help="Draw a contact sheet of samples, with masks and generated variants.")
@inputs_argument
@click.option("-o", "--output", required=True, metavar="PNG|-", help="The sheet (PNG); - writes it to stdout.")
@click.option("--n", "n", type=click.IntRange(min=1), default=32, help="Number of samples (originals) to show.")
@click.option("--per-row", type=click.IntRange(min=1), default=8, help="Tiles per row (without variants).")
@click.option("--ids", callback=_parse_ids, metavar="PID,PID,...", default=None, help="Show only these identities.")
@click.option("--overlay", type=click.Choice(["auto", "mask", "parse", "none"]), default="auto",
              help="Colour-code mask.png or parse.png over the image; auto = mask, else parse, when present.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, help="Overlay opacity.")
@click.option("--variants", type=click.IntRange(min=0), default=4,
              help="Generated samples (json `source`) shown right of their source, per original; 0 = none.")
@click.option("--tile", default="128x64", metavar="HxW", help="Tile size (images are resized to it).")
@seed_option
def cli(inputs, output, n, per_row, ids, overlay, alpha, variants, tile, seed):
    """Draw a contact sheet of samples, with masks and generated variants.

    Picks --n samples (a seeded choice that does not depend on input order), draws each as a tile
    labelled with its identity, camera and clothes id, overlays `mask.png` (red) or `parse.png`
    (one colour per label) when present, and places generated samples (json `source`) to the right
    of the sample they came from, marked with an orange bar.
    """
    import sys

    from reidtools.data.sheet import render_sheet, select
    from reidtools.errors import ReidError
    from reidtools.shards import expand_inputs

    th, tw = parse_size(tile, "--tile")
    groups = select(expand_inputs(inputs), n, seed=seed, ids=ids, variants=variants)
    if not groups:
        raise ReidError("no samples to show" + (f" for --ids {','.join(map(str, sorted(ids)))}" if ids else ""))
    sheet = render_sheet(groups, per_row=per_row, tile=(th, tw), overlay=overlay, alpha=alpha)
    if output == "-":
        sheet.save(sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
    else:
        try:
            sheet.save(output, format="PNG")
        except OSError as exc:
            raise ReidError(f"cannot write {output!r} ({exc})") from None
    shown = sum(1 + len(g.variants) for g in groups)
    click.echo(f"{shown} samples ({len(groups)} originals) drawn into {output if output != '-' else 'stdout'}", err=True)
