"""`reid eval` and `reid refine` as library calls: ranking metrics under a protocol, DLCR's prediction
refinement, CMC curve comparison and generation quality."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")


@dataclass(kw_only=True)
class RankingOptions:
    """What `commands/_protocol.py`'s shared options set, for both eval and refine: k-reciprocal
    re-ranking (Zhong et al. 2017 defaults) and the protocols' trial details."""
    rerank: bool = False
    k1: int = 20
    k2: int = 6
    lambda_: float = 0.3
    rerank_max_gb: float | None = None
    prcc_query: str = "cc"
    prcc_gallery: str = "multi-shot"
    num_trials: int = 10


@dataclass(kw_only=True)
class EvalRun(RankingOptions):
    inputs: tuple                        # query shards
    gallery: tuple
    protocol: str = "market"
    distance: str = "cosine"
    model: object = None                 # a path, or a reid.extract.ModelSource
    model_format: str = "auto"
    batch_size: int = 128
    device: str | None = None
    json_out: str | None = None
    plot: str | None = None
    save_features: str | None = None
    tracklets: str | None = None
    clip_len: int = 8
    ranks_out: str | None = None
    ranks_k: int = 10
    seed: int = 0


def write_result_json(result: dict, json_out: str) -> None:
    """`--json FILE|-`: the metrics object to FILE, or to stdout (then stdout holds only JSON)."""
    text = json.dumps(result, indent=2)
    if json_out == "-":
        sys.stdout.write(text + "\n")
        return
    try:
        with open(json_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise ReidError(f"--json: cannot write {json_out!r} ({exc.strerror})") from None


def _model(run):
    """--model opened once (a run folder, .onnx or published checkpoint), shared by every set."""
    if run.model is None:
        return None
    from reidtools.reid.extract import ModelSource

    return ModelSource(run.model, run.model_format)


def _rerank(run) -> dict | None:
    if not run.rerank:
        return None
    from reidtools.metrics.rerank import default_max_gb

    max_gb = run.rerank_max_gb if run.rerank_max_gb is not None else default_max_gb()
    return {"k1": run.k1, "k2": run.k2, "lambda": run.lambda_, "max_bytes": int(max_gb * 2**30)}


def run_eval(run: EvalRun, *, progress: bool = True) -> dict:
    """Features (feat.npy or --model), optional tracklet pooling, the protocol's metrics, and the
    requested outputs (table on stderr, --json, --plot, --ranks, --save-features)."""
    from reidtools.metrics import evaluate
    from reidtools.metrics.features import check_dims, load_set, save_features as write_features
    from reidtools.metrics.plot import curve_label, plot_cmc
    from reidtools.metrics.protocols import PROTOCOLS
    from reidtools.metrics.report import table
    from reidtools.shards import expand_inputs

    qshards, gshards = expand_inputs(list(run.inputs)), expand_inputs(list(run.gallery))
    needs = PROTOCOLS[run.protocol].needs
    model = _model(run)
    common = dict(protocol=run.protocol, needs=needs, model=model, batch_size=run.batch_size, device=run.device,
                  progress=progress)
    qf, qmeta, qdicts = load_set(qshards, role="query", **common)
    gf, gmeta, gdicts = load_set(gshards, role="gallery", **common)
    check_dims(qf, gf, qmeta, gmeta)
    log.info("%d query and %d gallery samples, %d-d features", len(qmeta), len(gmeta), qf.shape[1])
    if run.save_features:
        written = write_features(run.save_features, "query", qf, qmeta, qdicts)
        written += write_features(run.save_features, "gallery", gf, gmeta, gdicts)
        log.info("saved features: %s", ", ".join(written))
    if run.tracklets:
        from reidtools.metrics.tracklets import pool

        qf, qmeta = pool(qf, qmeta, qdicts, run.tracklets, run.clip_len)
        gf, gmeta = pool(gf, gmeta, gdicts, run.tracklets, run.clip_len)
        log.info("pooled (%s) into %d query and %d gallery tracklets", run.tracklets, len(qmeta), len(gmeta))
    rr = _rerank(run)
    try:
        result = evaluate(qf, gf, qmeta, gmeta, run.protocol, distance=run.distance, seed=run.seed,
                          num_trials=run.num_trials, prcc_query=run.prcc_query, prcc_gallery=run.prcc_gallery,
                          rerank=rr, progress=progress, copy=False, topk=run.ranks_k if run.ranks_out else 0)
    except ValueError as exc:
        raise ReidError(str(exc)) from None
    ranked = result.pop("ranked", None)
    if run.tracklets:
        result["tracklets"] = {"pool": run.tracklets,
                               **({"clip_len": run.clip_len} if run.tracklets == "cal" else {})}
    sys.stderr.write(table(result) + "\n")
    if ranked is not None:
        from reidtools.metrics import ranklist

        ranklist.write(ranklist.to_json(ranked, qmeta, gmeta, protocol=run.protocol, distance=run.distance,
                                        rerank=run.rerank), run.ranks_out)
        log.info("wrote %s (top %d of %d queries)", run.ranks_out, ranked.cols.shape[1], len(ranked.query))
    if run.json_out:
        write_result_json(result, run.json_out)
    if run.plot:
        plot_cmc([(curve_label(result, "reid eval"), result["cmc"])], run.plot)
        log.info("wrote %s", run.plot)
    sys.stdout.flush()
    return result


@dataclass(kw_only=True)
class RefineRun(RankingOptions):
    inputs: tuple                        # query shards
    gallery: tuple
    variants: tuple                      # `reid inpaint` output on the queries, matched by `source`
    protocol: str
    model: object = None
    model_format: str = "auto"
    views: int = 4                       # DLCR's released code
    top: int = 5                         # idem
    variant_rule: str = "released"
    json_out: str | None = None
    batch_size: int = 128
    device: str | None = None
    seed: int = 0


def run_refine(run: RefineRun, *, progress: bool = True) -> dict:
    """DLCR's prediction refinement (docs/refine.md): refined metrics with the unrefined ones beside."""
    from reidtools.metrics import evaluate
    from reidtools.metrics.features import check_dims, load_set
    from reidtools.metrics.protocols import PROTOCOLS
    from reidtools.metrics.refine import coverage, evaluate_refined
    from reidtools.metrics.report import table
    from reidtools.metrics.variants import load_variants
    from reidtools.shards import expand_inputs

    qshards, gshards = expand_inputs(list(run.inputs)), expand_inputs(list(run.gallery))
    vshards = expand_inputs(list(run.variants))
    model = _model(run)
    common = dict(protocol=run.protocol, needs=PROTOCOLS[run.protocol].needs, model=model, batch_size=run.batch_size,
                  device=run.device, progress=progress)
    qf, qmeta, _ = load_set(qshards, role="query", **common)
    gf, gmeta, _ = load_set(gshards, role="gallery", **common)
    check_dims(qf, gf, qmeta, gmeta)
    view_set, counts = load_variants(vshards, qmeta.keys, qmeta.where, views=run.views, dim=qf.shape[1], model=model,
                                     batch_size=run.batch_size, device=run.device, progress=progress)
    log.info("%d query, %d gallery samples, %d variants (%d used), %d-d features", len(qmeta), len(gmeta),
             counts["variants"], counts["variants_used"], qf.shape[1])
    opts = dict(seed=run.seed, num_trials=run.num_trials, prcc_query=run.prcc_query, prcc_gallery=run.prcc_gallery,
                rerank=_rerank(run))
    try:
        plain = evaluate(qf, gf, qmeta, gmeta, run.protocol, distance="cosine", progress=progress, **opts)
        result = evaluate_refined(qf, gf, qmeta, gmeta, view_set, run.protocol, top=run.top, rule=run.variant_rule,
                                  progress=progress, **opts)
    except ValueError as exc:
        raise ReidError(str(exc)) from None
    selected = PROTOCOLS[run.protocol].trials(qmeta, gmeta, {"seed": run.seed, "num_trials": 1,
                                                             "prcc_query": run.prcc_query,
                                                             "prcc_gallery": run.prcc_gallery})[0][0]
    cov = coverage(view_set, selected)
    if cov["queries_unrefined"]:
        log.warning("%d of %d queries have no variant and keep their original ranking",
                    cov["queries_unrefined"], cov["queries"])
    result["refine"] = {"rule": run.variant_rule, "views": run.views, "top": run.top, **cov, **counts}
    result["unrefined"] = plain
    sys.stderr.write(f"refined ({run.variant_rule} rule, {run.views} views, top {run.top}):\n" + table(result) + "\n")
    sys.stderr.write("unrefined:\n" + table(plain) + "\n")
    sys.stderr.write(f"refined queries {cov['queries_refined']} of {cov['queries']}  "
                     f"rank1 {100 * (result['rank1'] - plain['rank1']):+.2f}  "
                     f"mAP {100 * (result['mAP'] - plain['mAP']):+.2f}\n")
    if run.json_out:
        write_result_json(result, run.json_out)
    sys.stdout.flush()
    return result


def compare_curves(paths: list[str], plot: str) -> None:
    """`--compare`: overlay the CMC curves of `reid eval --json` results."""
    from reidtools.metrics.plot import curve_label, plot_cmc

    curves = []
    for path in paths:
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


def generation_quality(generated, real, extractor, *, model_format: str = "auto", distance: str = "cosine",
                       batch_size: int = 128, device: str | None = None, json_out: str | None = None,
                       progress: bool = True) -> dict:
    """`--generated/--real`: Fréchet distance and identity preservation (reidtools.metrics.generation)."""
    from reidtools.metrics.generation import evaluate_generation, generation_table
    from reidtools.shards import expand_inputs

    if extractor and model_format != "auto":
        from reidtools.reid.extract import ModelSource

        extractor = ModelSource(extractor, model_format)
    result = evaluate_generation(expand_inputs(list(real)), expand_inputs(list(generated)), extractor,
                                 metric=distance, batch_size=batch_size, device=device, progress=progress)
    sys.stderr.write(generation_table(result) + "\n")
    if json_out:
        write_result_json(result, json_out)
    return result
