"""`reid refine`: DLCR prediction refinement with test-time query variants (library:
reidtools.metrics.run.run_refine over metrics.refine and metrics.variants)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, progress_enabled, seed_option
from reidtools.commands._protocol import MODEL_FORMATS, PROTOCOL_NAMES, protocol_options, rerank_options


@command("refine", short_help="Refine query predictions with test-time query variants (DLCR).")
@click.argument("inputs", nargs=-1, required=True, metavar="QUERY_SHARDS...")
@click.option("-g", "--gallery", "gallery", multiple=True, required=True, metavar="SHARDS",
              help="Gallery shards (paths, globs, brace patterns, directories); repeat for several.")
@click.option("--variants", "variants", multiple=True, required=True, metavar="SHARDS",
              help="Query variants (`reid inpaint` output on the query shards), matched to queries by `source`.")
@click.option("-p", "--protocol", type=click.Choice(PROTOCOL_NAMES), required=True,
              help="Benchmark protocol, as in `reid eval` (the released DLCR code ran prcc).")
@click.option("--model", metavar="RUN_DIR|FILE", default=None,
              help="A `reid train` run folder, an ONNX file from `reid export` or a published checkpoint "
                   "(see --model-format): extracts features for samples without feat.npy.")
@click.option("--model-format", type=click.Choice(MODEL_FORMATS), default="auto",
              help="What --model is; auto: a folder is a run, *.onnx an export, other "
                   "files published checkpoints recognised by their key names (docs/export.md).")
@click.option("--views", type=click.IntRange(min=0), default=4, show_default=True,
              help="Variants per query (views = the original + this many); 4 in the released code.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Gallery entries per view that take part (top-5 in the released code).")
@click.option("--variant-rule", type=click.Choice(["released"]), default="released", show_default=True,
              help="Refinement rule: the released code's (the paper's Algorithm 1 text was not available).")
@click.option("--json", "json_out", metavar="FILE|-", default=None,
              help="Write the refined metrics (eval's schema) with `unrefined` and `refine` objects to FILE, or -.")
@click.option("--rerank", is_flag=True,
              help="k-reciprocal re-ranking of every view first, then the refinement (see docs/refine.md).")
@rerank_options
@protocol_options
@click.option("--batch-size", type=click.IntRange(min=1), default=128, help="Batch size for --model extraction.")
@click.option("--device", default=None, help="Device for --model extraction [default: best available].")
@seed_option
def cli(**options) -> None:
    """Refine query predictions with test-time query variants (DLCR).

    DLCR's prediction refinement: every query is also seen through its first --views variants
    (the same person inpainted with other clothes); each view's top --top gallery entries vote
    for their identities, and the original top entries are re-scored with the votes (the rule of
    DLCR's released evaluation code; docs/refine.md gives it in full). Features come from each
    sample's `feat.npy`, or from --model. Queries without variants keep their original ranking
    (counted in the output). Metrics are `reid eval`'s, refined, with the un-refined figures under
    `unrefined` for comparison; tables for both go to stderr.

    \b
    Examples:
      reid mask q/ -o qm/ && reid inpaint qm/ -o qv/ --steps 10 --size 384x128 --variants 4
      reid refine q/ -g g/ --variants qv/ --model run/ --protocol prcc --json refined.json
      reid refine q/ -g g/ --variants qv/ --model run/ -p prcc --rerank --json - | jq '.rank1 - .unrefined.rank1'
    """
    from reidtools.metrics.run import RefineRun, run_refine

    run_refine(RefineRun(**options), progress=progress_enabled())
