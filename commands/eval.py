"""`reid eval`: ReID metrics under a benchmark protocol (CLI glue; the library is reidtools.metrics)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, progress_enabled, seed_option
from reidtools.commands._protocol import protocol_options, rerank_options, write_result_json

MODEL_FORMATS = ("auto", "run", "onnx", "torchreid", "fastreid", "cal", "clipreid", "transreid")
PROTOCOL_NAMES = ("market", "cc", "sc", "general", "prcc", "sysu-all", "sysu-indoor", "llcm-v2i", "llcm-i2v")


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
def cli(inputs, gallery, protocol, distance, model, model_format, batch_size, device, generated, real, extractor, json_out, plot, compare, save_features,
        tracklets, clip_len, ranks_out, ranks_k, rerank, k1, k2, lambda_, rerank_max_gb, prcc_query, prcc_gallery, num_trials, seed):
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
    import json
    import logging
    import sys

    from reidtools.errors import ReidError

    log = logging.getLogger("reidtools")
    if compare:
        if not inputs:
            raise click.UsageError("--compare needs the JSON files to overlay as arguments")
        if not plot:
            raise click.UsageError("--compare needs --plot FILE.png")
        if gallery:
            raise click.UsageError("--compare reads JSON files only; drop --gallery")
        from reidtools.metrics.plot import curve_label, plot_cmc

        curves = []
        for path in inputs:
            try:
                with open(path, encoding="utf-8") as fh:
                    res = json.load(fh)
            except OSError as exc:
                raise ReidError(f"{path}: cannot read ({exc.strerror})") from None
            except json.JSONDecodeError as exc:
                raise ReidError(f"{path}: not valid JSON ({exc})") from None
            if not isinstance(res, dict) or not isinstance(res.get("cmc"), list) or "rank1" not in res:
                raise ReidError(f"{path}: not a `reid eval --json` result (no 'cmc' list)")
            curves.append((curve_label(res, path), res["cmc"]))
        plot_cmc(curves, plot)
        log.info("wrote %s (%d curves)", plot, len(curves))
        return
    if generated or real or extractor:
        if extractor and model_format != "auto":
            from reidtools.reid.extract import ModelSource

            extractor = ModelSource(extractor, model_format)
        return _generation_quality(inputs, gallery, generated, real, extractor, distance, batch_size, device, json_out)
    if not inputs:
        raise click.UsageError("missing QUERY_SHARDS")
    if not gallery:
        raise click.UsageError("missing --gallery SHARDS")

    from reidtools.metrics import evaluate
    from reidtools.metrics.features import check_dims, load_set, save_features as write_features
    from reidtools.metrics.plot import curve_label, plot_cmc
    from reidtools.metrics.protocols import PROTOCOLS
    from reidtools.metrics.report import table
    from reidtools.shards import expand_inputs

    qshards, gshards = expand_inputs(list(inputs)), expand_inputs(list(gallery))
    needs = PROTOCOLS[protocol].needs
    if model is not None:
        from reidtools.reid.extract import ModelSource

        model = ModelSource(model, model_format)   # opened once, shared by the query and gallery sets
    common = dict(protocol=protocol, needs=needs, model=model, batch_size=batch_size, device=device,
                  progress=progress_enabled())
    qf, qmeta, qdicts = load_set(qshards, role="query", **common)
    gf, gmeta, gdicts = load_set(gshards, role="gallery", **common)
    check_dims(qf, gf, qmeta, gmeta)
    log.info("%d query and %d gallery samples, %d-d features", len(qmeta), len(gmeta), qf.shape[1])
    if save_features:
        written = write_features(save_features, "query", qf, qmeta, qdicts)
        written += write_features(save_features, "gallery", gf, gmeta, gdicts)
        log.info("saved features: %s", ", ".join(written))
    if tracklets:
        from reidtools.metrics.tracklets import pool

        qf, qmeta = pool(qf, qmeta, qdicts, tracklets, clip_len)
        gf, gmeta = pool(gf, gmeta, gdicts, tracklets, clip_len)
        log.info("pooled (%s) into %d query and %d gallery tracklets", tracklets, len(qmeta), len(gmeta))
    rr = None
    if rerank:
        from reidtools.metrics.rerank import default_max_gb

        max_gb = rerank_max_gb if rerank_max_gb is not None else default_max_gb()
        rr = {"k1": k1, "k2": k2, "lambda": lambda_, "max_bytes": int(max_gb * 2**30)}
    try:
        result = evaluate(qf, gf, qmeta, gmeta, protocol, distance=distance, seed=seed, num_trials=num_trials,
                          prcc_query=prcc_query, prcc_gallery=prcc_gallery, rerank=rr, progress=progress_enabled(),
                          copy=False, topk=ranks_k if ranks_out else 0)
    except ValueError as exc:
        raise ReidError(str(exc)) from None
    ranked = result.pop("ranked", None)
    if tracklets:
        result["tracklets"] = {"pool": tracklets, **({"clip_len": clip_len} if tracklets == "cal" else {})}
    click.echo(table(result), err=True)
    if ranked is not None:
        from reidtools.metrics import ranklist

        ranklist.write(ranklist.to_json(ranked, qmeta, gmeta, protocol=protocol, distance=distance,
                                        rerank=rerank), ranks_out)
        log.info("wrote %s (top %d of %d queries)", ranks_out, ranked.cols.shape[1], len(ranked.query))
    if json_out:
        write_result_json(result, json_out)
    if plot:
        plot_cmc([(curve_label(result, "reid eval"), result["cmc"])], plot)
        log.info("wrote %s", plot)
    sys.stdout.flush()


def _generation_quality(inputs, gallery, generated, real, extractor, distance, batch_size, device, json_out):
    """`--generated/--real`: Fréchet distance and identity preservation (reidtools.metrics.generation)."""
    from reidtools.metrics.generation import evaluate_generation, generation_table
    from reidtools.shards import expand_inputs

    if not generated or not real:
        raise click.UsageError("generation quality needs both --generated and --real")
    if inputs or gallery:
        raise click.UsageError("--generated/--real take no QUERY_SHARDS or --gallery")
    result = evaluate_generation(expand_inputs(list(real)), expand_inputs(list(generated)), extractor,
                                 metric=distance, batch_size=batch_size, device=device,
                                 progress=progress_enabled())
    click.echo(generation_table(result), err=True)
    if json_out:
        write_result_json(result, json_out)
