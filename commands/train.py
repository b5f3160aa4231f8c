"""`reid train`: CLI glue over reidtools.reid.trainer (no algorithm here)."""

from __future__ import annotations

import math

import click

from reidtools.commands._options import command, progress_enabled
from reidtools.commands.eval import PROTOCOL_NAMES


def _items(value) -> list[str]:
    # "5,10,15" on the command line; [5, 10, 15] from a --config YAML list
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value).strip("[]() ").replace(",", " ").split()


def _ints(ctx, param, value) -> list[int]:
    try:
        return [int(v) for v in _items(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of integers (e.g. 20,40)", ctx, param) from None


def _floats(ctx, param, value) -> list[float]:
    try:
        out = [float(v) for v in _items(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of numbers (e.g. 0.25,0.5)", ctx, param) from None
    if not all(math.isfinite(v) for v in out):
        raise click.BadParameter(f"{value!r}: every value must be a finite number", ctx, param)
    return out


def _finite(ctx, param, value):
    # click's FLOAT accepts "nan" and "inf", which would only fail (or silently train nothing) later
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx, param)
    return value


def _at_least(minimum: int):
    def check(ctx, param, value):
        if value is not None and value < minimum:
            raise click.BadParameter(f"{value}: must be at least {minimum}", ctx, param)
        return value
    return check


def _batch(ctx, param, value) -> tuple[int, int]:
    try:
        p, k = (int(v) for v in str(value).lower().replace("×", "x").split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not PxK (e.g. 8x4)", param_hint="--batch") from None
    if p < 1 or k < 1:
        raise click.BadParameter(f"{value!r}: P and K must be positive", param_hint="--batch")
    return p, k


def _size(ctx, param, value) -> tuple[int, int]:
    from reidtools.commands._options import parse_size

    return parse_size(str(value), "--size")


def _sources(ctx: click.Context, names) -> dict[str, str]:
    """'command line' / 'config file' for the options the user set (config.yaml records the rest's source)."""
    from click.core import ParameterSource

    out = {}
    for name in names:
        src = ctx.get_parameter_source(name)
        where = {ParameterSource.COMMANDLINE: "command line", ParameterSource.DEFAULT_MAP: "config file"}.get(src)
        if where:
            out.update({f: where for f in (("batch_p", "batch_k") if name == "batch" else (name,))})
    return out


@command("train", short_help="Train a ReID model on real and generated shards.")
@click.argument("inputs", nargs=-1, required=True, metavar="TRAIN_SHARDS...")
@click.option("-o", "--output", required=True, metavar="RUN_DIR",
              help="Run folder to create (model.safetensors, config.yaml, log.jsonl, checkpoints/).")
@click.option("--generated", multiple=True, metavar="SHARDS",
              help="Generated shards (samples with `source`); repeatable, globs/braces allowed.")
@click.option("--method", type=click.Choice(["baseline", "cal", "hsal", "cal+hsal", "dcac"]), default="baseline",
              help="Losses: baseline (CE + triplet), cal (CE + clothes-adversarial), hsal / cal+hsal (+ HSGL hard-sample triplet), "
                   "dcac (CE + prototypical contrastive + diffusion loss through a LoRA Stable Diffusion; DCAC's defaults for "
                   "backbone, batch, lr, schedule; see docs/dcac.md).")
@click.option("--backbone", type=click.Choice(["resnet50", "vit-b16", "clip-b16", "resnet-small", "resnet-tiny", "vit-tiny", "clip-tiny"]),
              default="resnet50",
              help="ResNet-50 (last stride 1), CLIP ViT-B/16 image encoder (vit-b16: 768-d class token; clip-b16: 512-d "
                   "projected, default of dcac); resnet-small for CPU demos, tiny configs for tests.")
@click.option("--pretrained", default=None, metavar="none|ID|DIR",
              help="Backbone weights: `none`, a Hugging Face id or a folder [default: microsoft/resnet-50 or openai/clip-vit-base-patch16; none for tiny].")
@click.option("--epochs", type=int, default=60, callback=_at_least(1), help="Epochs (Simple-CCReID).")
@click.option("--batch", default="8x4", callback=_batch, metavar="PxK", help="P identities x K images per batch (Simple-CCReID) [dcac: 16x4].")
@click.option("--size", default="256x128", callback=_size, metavar="HxW", help="Input size (BoT).")
@click.option("--lr", type=float, default=3.5e-4, callback=_finite, help="Adam learning rate [dcac: 5e-6].")
@click.option("--weight-decay", type=float, default=5e-4, callback=_finite, help="Adam weight decay [dcac: 1e-4].")
@click.option("--milestones", default="20,40", callback=_ints, help="Epochs where the lr is multiplied by --gamma [dcac: 30,50].")
@click.option("--gamma", type=float, default=0.1, callback=_finite, help="Step decay factor.")
@click.option("--warmup-epochs", type=int, default=0, help="Linear warm-up from lr/10 (BoT uses 10) [dcac: 10].")
@click.option("--label-smooth", type=float, default=0.1, callback=_finite, help="Label smoothing epsilon of the identity loss.")
@click.option("--margin", type=float, default=0.3, callback=_finite, help="Triplet margin.")
@click.option("--distance", type=click.Choice(["euclidean", "cosine"]), default="euclidean", help="Triplet/HSAL distance.")
@click.option("--triplet-weight", type=float, default=None, callback=_finite, help="Triplet weight [default: 1 for baseline/hsal, 0 for cal].")
@click.option("--pooling", type=click.Choice(["avg", "maxavg"]), default=None, help="ResNet pooling [default: avg; maxavg for cal].")
@click.option("--cal-start-epoch", type=int, default=25, help="Epoch (0-based) from which the clothes classifier and adversarial loss run.")
@click.option("--cal-scale", type=float, default=16.0, callback=_finite, help="CAL cosine scale.")
@click.option("--cal-epsilon", type=float, default=0.1, callback=_finite, help="CAL epsilon.")
@click.option("--hsal-alpha", type=float, default=0.05, callback=_finite, help="HSAL distance adjustment alpha (eqs. 6-7).")
@click.option("--hsal-lambda", type=float, default=None, callback=_finite, help="Weight of L_hatrip (eq. 12) [default: 0.1 for cal+hsal, the triplet weight for hsal].")
@click.option("--hsal-margin", type=float, default=None, callback=_finite,
              help="HSAL triplet margin of eq. 11 (HSGL gives no value) [default: --margin, 0.3; released CAL-based code: 0].")
@click.option("--hsal-features", type=click.Choice(["pre-bn", "post-bn"]), default="pre-bn",
              help="Feature HSAL measures distances on: the pooled feature before the BNNeck (as the triplet; "
                   "HSGL does not say) or after it (released code).")
@click.option("--mix", type=click.Choice(["progressive", "concat"]), default="progressive",
              help="How generated samples enter batches: DLCR progressive pairing, or plain concatenation.")
@click.option("--progressive-epochs", default="5,10,15", callback=_ints, help="Epoch thresholds of the progressive schedule.")
@click.option("--progressive-fractions", default="0.25,0.5,0.75", callback=_floats, help="Fractions of each image's variants before each threshold (then 1.0).")
@click.option("--erasing", type=float, default=0.5, callback=_finite, help="Random erasing probability.")
@click.option("--pad", type=int, default=None, callback=_at_least(0), metavar="PX",
              help="Zero padding before the random crop [default: BoT's 10 px at width 128, scaled to --size: 10*W//128].")
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default="no", help="accelerate mixed precision.")
@click.option("--grad-accum", type=int, default=1, callback=_at_least(1), help="Gradient accumulation steps.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward (backbone and DCAC U-Net) to save memory.")
@click.option("--diffusion-model", default="stable-diffusion-v1-5/stable-diffusion-v1-5", metavar="ID|DIR",
              help="dcac: Stable Diffusion (diffusers layout: vae/, unet/, scheduler/) whose frozen U-Net gets LoRA adapters.")
@click.option("--condition", type=click.Choice(["correlation", "class", "class-released", "instance"]), default="correlation",
              help="dcac: diffusion condition (eq. 12 correlation-aware; Table 7 ablations; class-released = released code's e_y).")
@click.option("--condition-tau", type=float, default=None, callback=_finite,
              help="dcac: tau_c of eq. 12 (paper: 0.1 CUHK03, 0.6 Market/Duke, 1.0 MSMT17 and multi-source) "
                   "[default: from the training shards' `dataset` field, as the paper].")
@click.option("--dif-weight", type=float, default=1.0, callback=_finite, help="dcac: lambda of eq. 13.")
@click.option("--lora-rank", type=int, default=None, callback=_at_least(1),
              help="dcac: LoRA rank (paper: 8; 32 for MSMT17 and multi-source) [default: from the training shards' `dataset` field].")
@click.option("--lora-alpha", type=float, default=1.0, callback=_finite, help="dcac: LoRA alpha (scale alpha/r; eq. 9 uses 1/r).")
@click.option("--lora-targets", type=click.Choice(["paper", "released"]), default="paper",
              help="dcac: LoRA on attention q/k/v/out + both feed-forward Linears (paper text) or + the GEGLU projection only (released code).")
@click.option("--diffusion-size", type=int, default=128, help="dcac: side of the square diffusion input (paper §5.2: 128x128).")
@click.option("--pcl-weight", type=float, default=1.0, callback=_finite, help="dcac: weight of the prototypical contrastive loss.")
@click.option("--pcl-temperature", type=float, default=0.01, callback=_finite, help="dcac: PCL temperature tau (eq. 6).")
@click.option("--pcl-momentum", type=float, default=0.2, callback=_finite, help="dcac: memory momentum gamma (eq. 7).")
@click.option("--init", metavar="RUN_DIR", default=None,
              help="Start from the backbone (and BNNeck) weights of a `reid train` run; classifiers are new "
                   "(e.g. HSGL: pretrain on coarse samples, then fine-tune). Recorded in config.yaml.")
@click.option("--eval-every", type=int, default=0, callback=_at_least(0), metavar="N",
              help="Evaluate --query against --gallery every N epochs (and after the last); metrics go to "
                   "log.jsonl, the best weights to best.safetensors (0: no evaluation).")
@click.option("--query", multiple=True, metavar="SHARDS", help="--eval-every: query shards (repeatable).")
@click.option("-g", "--gallery", multiple=True, metavar="SHARDS", help="--eval-every: gallery shards (repeatable).")
@click.option("-p", "--protocol", type=click.Choice(PROTOCOL_NAMES), default="market",
              help="--eval-every: benchmark protocol, as `reid eval -p` (e.g. cc or sc for clothes-changing sets).")
@click.option("--best-metric", type=click.Choice(["mAP", "rank1"]), default="mAP",
              help="--eval-every: the metric that picks best.safetensors (ties keep the earlier epoch).")
@click.option("--report-to", type=click.Choice(["none", "tensorboard", "wandb"]), default="none",
              help="Also send losses and metrics to an accelerate tracker (logs under RUN/trackers; wandb runs "
                   "offline unless WANDB_MODE is set; tensorboard needs the `tensorboard` extra).")
@click.option("--workers", type=int, default=2, callback=_at_least(0), help="Image decoding worker processes per training process.")
@click.option("--cpu", is_flag=True, help="Train on the CPU even if a GPU is present.")
@click.option("--resume", is_flag=True, help="Continue the run in -o from its last checkpoint.")
@click.option("--keep-checkpoints", type=int, default=1, callback=_at_least(0), help="How many epoch checkpoints to keep.")
@click.option("--log-every", type=int, default=50, callback=_at_least(0), help="Write a step record to log.jsonl every N steps (0: epochs only).")
@click.option("--seed", type=int, default=0, help="Seed of initialisation, sampling and augmentation.")
def cli(inputs, output, generated, resume, **options):
    """Train a ReID model on real and generated shards.

    Writes a run folder (-o RUN): model.safetensors, config.yaml (every option with the source of its
    default), labels.json, log.jsonl (dataset, step and epoch records: losses, lr, images/s, hard-pair
    counts) and checkpoints/ for --resume. `reid eval --model RUN` evaluates it.

    Multi-GPU: `accelerate launch -m reidtools train ...` (one process per GPU, each reading its own
    share of the shards). See docs/train.md.
    """
    from reidtools.reid.config import TrainConfig
    from reidtools.reid.trainer import run_train

    sources = _sources(click.get_current_context(), options)
    p, k = options.pop("batch")
    cfg = TrainConfig(batch_p=p, batch_k=k, **options)
    run_train(cfg, sources, inputs, output, generated_inputs=generated, resume=resume, progress=progress_enabled())
