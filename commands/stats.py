"""`reid stats`: counts per split, identity, camera, clothes and modality, or a summary of a map
command's per-shard run records (the library is reidtools.data.stats)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, inputs_argument


@command("stats", short_help="Count samples per split, identity, camera, clothes and modality.")
@inputs_argument
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON instead of a table.")
@click.option("--verify/--no-verify", default=True,
              help="Decode every image and label map (a corrupt one is an error naming shard and key).")
@click.option("--run", "run_records", is_flag=True,
              help="Summarise the run records (NAME.stats.json) that map commands write beside their output "
                   "shards, instead of reading the shards: INPUTS are output folders or record files.")
def cli(inputs, as_json, verify, run_records):
    """Count samples per split, identity, camera, clothes and modality.

    Prints, per split and in total: images, generated samples (those with a `source`), distinct
    identities, cameras and clothes ids, images per modality, and which fields (`jpg`, `parse.png`,
    ...) and annotations (`pose`, `caption`, ...) the samples carry. The report is the command's
    output, so it goes to stdout (a table, or JSON with --json). Every image is decoded unless
    --no-verify, so `reid stats` doubles as an integrity check.

    With --run, INPUTS are output folders of map commands (mask, pose, caption, inpaint, tryoff,
    tryon, filter): the report lists each shard's record (done/failed, samples in and out,
    elapsed seconds), the failure reasons, and output shards that have no record.
    """
    import json

    if run_records:
        from reidtools.data.stats import format_run_table, run_stats

        stats = run_stats(inputs)
        click.echo(json.dumps(stats, indent=2) if as_json else format_run_table(stats))
        return

    from reidtools.data.stats import dataset_stats, format_table
    from reidtools.shards import expand_inputs

    stats = dataset_stats(expand_inputs(inputs), verify=verify)
    click.echo(json.dumps(stats, indent=2) if as_json else format_table(stats))
