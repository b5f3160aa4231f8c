"""`reid mask`: clothing masks and parse maps (CLI glue; the library is reidtools.vision)."""

from __future__ import annotations

import click

from reidtools.commands._options import (command, inputs_argument, output_option, overwrite_option, progress_enabled,
                                         resolve_task, seed_option, task_options)


@command("mask", short_help="Write clothing masks and human parsing maps.")
@inputs_argument
@output_option()
@overwrite_option
@click.option("--engine", type=click.Choice(["labels", "schp-onnx", "segformer", "pose"]), default="labels",
              help="labels: the sample's own parse.png; schp-onnx: an SCHP .onnx file; segformer: a "
                   "transformers model; pose: MediaPipe keypoints + person mask (the pose extra).")
@click.option("--model", default=None, metavar="ID|FOLDER|FILE.onnx",
              help="schp-onnx: the .onnx file (required); segformer: hub id or folder "
                   "[default: mattmdjaga/segformer_b2_clothes].")
@click.option("--labels", type=click.Choice(["lip", "atr"]), default=None,
              help="Label set of the parse maps [default: from the model / the sample's parse_labels].")
@click.option("--keep", default=None, metavar="LABELS",
              help="Comma-separated labels to keep (not repaint), on top of DLCR's rule.")
@click.option("--repaint", default=None, metavar="LABELS",
              help="Comma-separated labels to repaint, on top of DLCR's rule.")
@click.option("--dilate", "dilate_px", type=click.IntRange(min=0), default=0, help="Grow the mask by N pixels.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Images per model call.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto: a GPU where torch sees one, else the CPU).")
@task_options
@seed_option
def cli(shard_index, num_shards, **options) -> None:
    """Write clothing masks and human parsing maps.

    Writes `mask.png` (L; 255 = clothing a generator may repaint, 0 = identity to keep), `parse.png`
    (the parse map; model engines) and `parse_labels` (lip/atr) plus a `mask` record in the
    metadata. The default rule is DLCR's ID-preserving mask: keep background, hat, hair, face,
    both arms and both legs; repaint everything else (the same names for ATR). --keep/--repaint
    move labels between the two sides. The pose engine also writes `pose`.
    """
    from reidtools.vision.engines import MaskRun, run_mask

    index, count = resolve_task(shard_index, num_shards)
    run_mask(MaskRun(shard_index=index, num_shards=count, **options), progress=progress_enabled())
