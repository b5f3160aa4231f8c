"""`reid refine`: DLCR prediction refinement with test-time query variants (CLI glue; the library is
reidtools.metrics.refine and reidtools.metrics.variants)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, progress_enabled, seed_option
from reidtools.commands._protocol import protocol_options, rerank_options, write_result_json

MODEL_FORMATS = ("auto", "run", "onnx", "torchreid", "fastreid", "cal", "clipreid", "transreid")
PROTOCOL_NAMES = ("market", "cc", "sc", "general", "prcc", "sysu-all", "sysu-indoor", "llcm-v2i", "llcm-i2v")


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
def cli(inputs, gallery, variants, protocol, model, model_format, views, top, variant_rule, json_out, rerank, k1, k2, lambda_,
        rerank_max_gb, prcc_query, prcc_gallery, num_trials, batch_size, device, seed):
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
    import logging
    import sys

    from reidtools.errors import ReidError
    from reidtools.metrics import evaluate
    from reidtools.metrics.features import check_dims, load_set
    from reidtools.metrics.protocols import PROTOCOLS
    from reidtools.metrics.refine import coverage, evaluate_refined
    from reidtools.metrics.report import table
    from reidtools.metrics.variants import load_variants
    from reidtools.shards import expand_inputs

    log = logging.getLogger("reidtools")
    qshards, gshards = expand_inputs(list(inputs)), expand_inputs(list(gallery))
    vshards = expand_inputs(list(variants))
    needs = PROTOCOLS[protocol].needs
    if model is not None:
        from reidtools.reid.extract import ModelSource

        model = ModelSource(model, model_format)   # opened once for queries, gallery and variants
    common = dict(protocol=protocol, needs=needs, model=model, batch_size=batch_size, device=device,
                  progress=progress_enabled())
    qf, qmeta, _ = load_set(qshards, role="query", **common)
    gf, gmeta, _ = load_set(gshards, role="gallery", **common)
    check_dims(qf, gf, qmeta, gmeta)
    view_set, counts = load_variants(vshards, qmeta.keys, qmeta.where, views=views, dim=qf.shape[1], model=model,
                                     batch_size=batch_size, device=device, progress=progress_enabled())
    log.info("%d query, %d gallery samples, %d variants (%d used), %d-d features", len(qmeta), len(gmeta),
             counts["variants"], counts["variants_used"], qf.shape[1])
    rr = None
    if rerank:
        from reidtools.metrics.rerank import default_max_gb

        max_gb = rerank_max_gb if rerank_max_gb is not None else default_max_gb()
        rr = {"k1": k1, "k2": k2, "lambda": lambda_, "max_bytes": int(max_gb * 2**30)}
    opts = dict(seed=seed, num_trials=num_trials, prcc_query=prcc_query, prcc_gallery=prcc_gallery, rerank=rr)
    try:
        plain = evaluate(qf, gf, qmeta, gmeta, protocol, distance="cosine", progress=progress_enabled(), **opts)
        result = evaluate_refined(qf, gf, qmeta, gmeta, view_set, protocol, top=top, rule=variant_rule,
                                  progress=progress_enabled(), **opts)
    except ValueError as exc:
        raise ReidError(str(exc)) from None
    selected = PROTOCOLS[protocol].trials(qmeta, gmeta, {"seed": seed, "num_trials": 1, "prcc_query": prcc_query,
                                                         "prcc_gallery": prcc_gallery})[0][0]
    cov = coverage(view_set, selected)
    if cov["queries_unrefined"]:
        log.warning("%d of %d queries have no variant and keep their original ranking",
                    cov["queries_unrefined"], cov["queries"])
    result["refine"] = {"rule": variant_rule, "views": views, "top": top, **cov, **counts}
    result["unrefined"] = plain
    click.echo("refined (" + variant_rule + f" rule, {views} views, top {top}):\n" + table(result), err=True)
    click.echo("unrefined:\n" + table(plain), err=True)
    click.echo(f"refined queries {cov['queries_refined']} of {cov['queries']}  "
               f"rank1 {100 * (result['rank1'] - plain['rank1']):+.2f}  mAP {100 * (result['mAP'] - plain['mAP']):+.2f}",
               err=True)
    if json_out:
        write_result_json(result, json_out)
    sys.stdout.flush()
