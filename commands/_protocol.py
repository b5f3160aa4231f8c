"""Options shared by `reid eval` and `reid refine`: protocol details and k-reciprocal re-ranking."""

from __future__ import annotations

from typing import Callable

import click

# what --model may be (see docs/export.md) and the protocols of reidtools.metrics.protocols
MODEL_FORMATS = ("auto", "run", "onnx", "torchreid", "fastreid", "cal", "clipreid", "transreid")
PROTOCOL_NAMES = ("market", "cc", "sc", "general", "prcc", "sysu-all", "sysu-indoor", "llcm-v2i", "llcm-i2v")


def rerank_options(fn: Callable) -> Callable:
    """--k1/--k2/--lambda/--rerank-max-gb (Zhong et al. 2017 defaults)."""
    for decorator in reversed([
        click.option("--k1", type=click.IntRange(min=1), default=20, help="Re-ranking k1 (TransReID/CLIP-ReID use 50)."),
        click.option("--k2", type=click.IntRange(min=1), default=6, help="Re-ranking k2 (TransReID/CLIP-ReID use 15)."),
        click.option("--lambda", "lambda_", type=click.FloatRange(0.0, 1.0), default=0.3,
                     help="Re-ranking weight of the original distance."),
        click.option("--rerank-max-gb", type=click.FloatRange(min=0.0, min_open=True), default=None,
                     help="Refuse --rerank when its estimated peak memory exceeds this [default: 80% of available RAM]."),
    ]):
        fn = decorator(fn)
    return fn


def protocol_options(fn: Callable) -> Callable:
    """--prcc-query/--prcc-gallery/--trials."""
    for decorator in reversed([
        click.option("--prcc-query", type=click.Choice(["cc", "sc"]), default="cc",
                     help="prcc: cc = camera C queries (clothes changed), sc = camera B (same clothes)."),
        click.option("--prcc-gallery", type=click.Choice(["multi-shot", "single-shot"]), default="multi-shot",
                     help="prcc: the whole camera-A gallery, or one random image per identity per trial."),
        click.option("--trials", "num_trials", type=click.IntRange(min=1), default=10,
                     help="Number of random-gallery trials (sysu-*, llcm-*, prcc single-shot); trial t uses seed+t."),
    ]):
        fn = decorator(fn)
    return fn
