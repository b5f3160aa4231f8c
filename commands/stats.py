"""`reid stats`: counts per split, identity, camera, clothes and modality (the library is reidtools.data.stats)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, inputs_argument


@command("stats", short_help="Count samples per split, identity, camera, clothes and modality.")
@inputs_argument
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON instead of a table.")
@click.option("--verify/--no-verify", default=True,
              help="Decode every image and label map (a corrupt one is an error naming shard and key).")
def cli(inputs, as_json, verify):
    """Count samples per split, identity, camera, clothes and modality.

    Prints, per split and in total: images, generated samples (those with a `source`), distinct
    identities, cameras and clothes ids, images per modality, and which fields (`jpg`, `parse.png`,
    ...) and annotations (`pose`, `caption`, ...) the samples carry. The report is the command's
    output, so it goes to stdout (a table, or JSON with --json). Every image is decoded unless
    --no-verify, so `reid stats` doubles as an integrity check.
    """
    import json

    from reidtools.data.stats import dataset_stats, format_table
    from reidtools.shards import expand_inputs

    stats = dataset_stats(expand_inputs(inputs), verify=verify)
    click.echo(json.dumps(stats, indent=2) if as_json else format_table(stats))
