"""`reid show`: a contact-sheet PNG of samples (CLI glue; the library is reidtools.data.sheet)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, parse_size, seed_option


def _parse_ids(ctx, param, value):
    if not value:
        return None
    try:
        return {int(v) for v in value.split(",") if v.strip()}
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integer ids") from None


@command("show", short_help="Draw a contact sheet of samples, with masks and generated variants.")
@click.argument("inputs", nargs=-1, required=False, metavar="[INPUTS...]")
@click.option("-o", "--output", required=True, metavar="PNG|-", help="The sheet (PNG); - writes it to stdout.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="Number of samples (originals) to show [default: 32]; with --ranks, query rows [default: 16].")
@click.option("--ranks", "ranks", metavar="FILE.json", default=None,
              help="Draw a `reid eval --ranks` file: query rows with their top-k, framed green/red/grey "
                   "(good/wrong/junk). Images come from INPUTS when given, else from the shards the file names.")
@click.option("--worst", is_flag=True, help="With --ranks: worst queries first (see --worst-by).")
@click.option("--worst-by", type=click.Choice(["ap", "rank"]), default="ap",
              help="With --worst: lowest AP first, or latest first good match first.")
@click.option("--per-row", type=click.IntRange(min=1), default=8, help="Tiles per row (without variants).")
@click.option("--ids", callback=_parse_ids, metavar="PID,PID,...", default=None, help="Show only these identities.")
@click.option("--overlay", type=click.Choice(["auto", "mask", "parse", "none"]), default="auto",
              help="Colour-code mask.png or parse.png over the image; auto = mask, else parse, when present.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, help="Overlay opacity.")
@click.option("--variants", type=click.IntRange(min=0), default=4,
              help="Generated samples (json `source`) shown right of their source, per original; 0 = none.")
@click.option("--tile", default="128x64", metavar="HxW", help="Tile size (images are resized to it).")
@seed_option
def cli(inputs, output, n, ranks, worst, worst_by, per_row, ids, overlay, alpha, variants, tile, seed):
    """Draw a contact sheet of samples, with masks and generated variants, or a ranked list.

    Picks --n samples (a seeded choice that does not depend on input order), draws each as a tile
    labelled with its identity, camera and clothes id, overlays `mask.png` (red) or `parse.png`
    (one colour per label) when present, and places generated samples (json `source`) to the right
    of the sample they came from, marked with an orange bar.

    With --ranks FILE.json (from `reid eval --ranks`) it draws --n query rows instead: the query
    (black frame), then its top-k gallery items framed green (good), red (wrong) or grey (junk:
    removed by the protocol), each labelled with its rank among non-junk items and distance.

    \b
    Examples:
      reid show synth/ -o sheet.png --n 8
      reid show --ranks ranks.json -o ranks.png --worst --n 8
      reid show --ranks ranks.json test/ -o ranks.png     # images from test/, not the recorded shards
    """
    import sys

    from reidtools.errors import ReidError
    from reidtools.shards import expand_inputs

    th, tw = parse_size(tile, "--tile")
    if ranks is not None:
        ctx = click.get_current_context()
        given = [f"--{name.replace('_', '-')}" for name in ("ids", "overlay", "alpha", "variants", "per_row")
                 if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
        if given:
            raise click.UsageError(f"{', '.join(given)}: not used with --ranks (a ranked list has fixed rows)")
        sheet, shown = _ranks_sheet(ranks, inputs, n or 16, worst_by if worst else None, (th, tw))
        summary = f"{shown} query rows from {ranks}"
    else:
        if not inputs:
            raise click.UsageError("missing INPUTS (or --ranks FILE.json)")
        if worst:
            raise click.UsageError("--worst needs --ranks")
        from reidtools.data.sheet import render_sheet, select

        groups = select(expand_inputs(inputs), n or 32, seed=seed, ids=ids, variants=variants)
        if not groups:
            raise ReidError("no samples to show" + (f" for --ids {','.join(map(str, sorted(ids)))}" if ids else ""))
        sheet = render_sheet(groups, per_row=per_row, tile=(th, tw), overlay=overlay, alpha=alpha)
        shown = sum(1 + len(g.variants) for g in groups)
        summary = f"{shown} samples ({len(groups)} originals)"
    if output == "-":
        sheet.save(sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
    else:
        try:
            sheet.save(output, format="PNG")
        except OSError as exc:
            raise ReidError(f"cannot write {output!r} ({exc})") from None
    click.echo(f"{summary} drawn into {output if output != '-' else 'stdout'}", err=True)


def _ranks_sheet(path, inputs, n, worst, tile):
    from reidtools.data.ranksheet import load_images, needed, render_ranks
    from reidtools.errors import ReidError
    from reidtools.metrics import ranklist
    from reidtools.shards import expand_inputs

    obj = ranklist.load(path)
    queries = ranklist.order_queries(obj["queries"], worst)[:n]
    if not queries:
        raise ReidError(f"{path}: holds no query")
    images = load_images(needed(queries), expand_inputs(inputs) if inputs else None, path)
    return render_ranks(queries, images, tile=tile), len(queries)
