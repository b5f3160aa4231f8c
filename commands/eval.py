"""`reid eval`: ReID metrics under a benchmark protocol (library: reidtools.metrics.run)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, progress_enabled, seed_option
from reidtools.commands._protocol import MODEL_FORMATS, PROTOCOL_NAMES, protocol_options, rerank_options


@command("eval", short_help="Evaluate a ReID model or saved features under a benchmark protocol.")
@click.argument("inputs", nargs=-1, required=False, metavar="QUERY_SHARDS...")
@click.option("-g", "--gallery", "gallery", multiple=True, metavar="SHARDS",
              help="Gallery shards (paths, globs, brace patterns, directories); repeat for several.")
@click.option("-p", "--protocol", type=click.Choice(PROTOCOL_NAMES), default="market",
              help="Benchmark protocol (see docs/eval.md for each one's source).")
@click.option("--distance", type=click.Choice(["cosine", "euclidean"]), default="cosine",
              help="cosine: 1 - cos of L2-normalised features; euclidean: squared Euclidean.")
@click.option("--model", metavar="RUN_DIR|FILE", default=None,
              help="A `reid train` run folder, an ONNX file from `reid export` or a published checkpoint "
                   "(see --model-format): extracts features for samples without feat.npy.")
@click.option("--model-format", type=click.Choice(MODEL_FORMATS), default="auto",
              help="What --model (and --extractor) is; auto: a folder is a run, *.onnx an export, other "
                   "files published checkpoints recognised by their key names (docs/export.md).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, help="Batch size for --model extraction.")
@click.option("--device", default=None, help="Device for --model extraction [default: best available].")
@click.option("--generated", multiple=True, metavar="SHARDS",
              help="Generation quality instead of ranking: generated shards, compared with --real (repeatable).")
@click.option("--real", multiple=True, metavar="SHARDS", help="Generation quality: the real shards (repeatable).")
@click.option("--extractor", metavar="RUN_DIR|FILE|MODEL", default=None,
              help="Generation quality features: a ReID model as for --model (run folder, .onnx, published "
                   "checkpoint) or a transformers vision model "
                   "[default: the samples' feat.npy]. See docs/invert.md (FID needs Inception features).")
@click.option("--json", "json_out", metavar="FILE|-", default=None,
              help="Write the metrics as JSON (fractions) to FILE, or to stdout with -.")
@click.option("--plot", metavar="PNG", default=None, help="Write the CMC curve (ranks 1-50) to this PNG.")
@click.option("--compare", is_flag=True,
              help="Overlay the CMC curves of the JSON files given as arguments (with --plot); reads no shards.")
@click.option("--save-features", metavar="DIR", default=None,
              help="Also write query-*.tar and gallery-*.tar feature shards (metadata + feat.npy) into DIR.")
@click.option("--tracklets", type=click.Choice(["mean", "cal"]), default=None,
              help="Video ReID: pool frame features per json `tracklet` and rank tracklets; mean, or cal = "
                   "CAL's clip-level test weights (see docs/eval.md).")
@click.option("--clip-len", type=click.IntRange(min=1), default=8,
              help="--tracklets cal: frames per test clip (Simple-CCReID's video config: 8).")
@click.option("--ranks", "ranks_out", metavar="FILE.json", default=None,
              help="Write each query's top-k gallery keys, distances and good/junk/wrong marks (draw with `reid show --ranks`).")
@click.option("--ranks-k", type=click.IntRange(min=1), default=10, help="Gallery items per query in --ranks.")
@click.option("--rerank", is_flag=True, help="Apply k-reciprocal re-ranking (Zhong et al. 2017).")
@rerank_options
@protocol_options
@seed_option
def cli(inputs, gallery, generated, real, extractor, compare, **options) -> None:
    """Evaluate a ReID model or saved features under a benchmark protocol.

    QUERY_SHARDS are the query samples and --gallery the gallery samples (the `split` field is not
    consulted). Features come from each sample's `feat.npy`, or from --model for samples without
    one. Metrics: CMC (ranks 1-50), mAP and mINP, as fractions in --json; a readable table goes to
    stderr. Protocols with random galleries (sysu-*, llcm-*, prcc single-shot) run --trials trials
    and report their mean, with each trial under `trials`.

    \b
    Examples:
      reid eval q/ --gallery g/ --protocol market --json market.json
      reid eval test/ --gallery test/ --protocol sysu-all --json - | jq .mAP
      reid eval q/ -g g/ --rerank --k1 50 --k2 15 --plot cmc.png
      reid eval q/ -g g/ -p cc --ranks ranks.json && reid show --ranks ranks.json -o ranks.png --worst
      reid eval ccvid/query-*.tar -g ccvid/gallery-*.tar -p cc --tracklets cal --json ccvid-cc.json
      reid eval --compare base.json expanded.json --plot cmc.png
      reid eval --generated gen/ --real train/ --extractor runs/reid/ --json quality.json
      reid eval q/ -g g/ --model model.onnx --json onnx.json
      reid eval q/ -g g/ --model osnet_x1_0_market.pth --model-format torchreid
    """
    from reidtools.metrics import run as R

    if compare:
        if not inputs:
            raise click.UsageError("--compare needs the JSON files to overlay as arguments")
        if not options["plot"]:
            raise click.UsageError("--compare needs --plot FILE.png")
        if gallery:
            raise click.UsageError("--compare reads JSON files only; drop --gallery")
        return R.compare_curves(list(inputs), options["plot"])
    if generated or real or extractor:
        if not generated or not real:
            raise click.UsageError("generation quality needs both --generated and --real")
        if inputs or gallery:
            raise click.UsageError("--generated/--real take no QUERY_SHARDS or --gallery")
        return R.generation_quality(generated, real, extractor, progress=progress_enabled(),
                                    **{k: options[k] for k in ("model_format", "distance", "batch_size", "device",
                                                               "json_out")})
    if not inputs:
        raise click.UsageError("missing QUERY_SHARDS")
    if not gallery:
        raise click.UsageError("missing --gallery SHARDS")
    R.run_eval(R.EvalRun(inputs=inputs, gallery=gallery, **options), progress=progress_enabled())
