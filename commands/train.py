"""`reid train`: CLI glue over reidtools.reid.trainer (no algorithm here)."""

from __future__ import annotations

import click

from reidtools.commands._options import command, progress_enabled


def _items(value) -> list[str]:
    # "5,10,15" on the command line; [5, 10, 15] from a --config YAML list
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value).strip("[]() ").replace(",", " ").split()


def _ints(value) -> list[int]:
    return [int(v) for v in _items(value)]


def _floats(value) -> list[float]:
    return [float(v) for v in _items(value)]


def _batch(value: str) -> tuple[int, int]:
    try:
        p, k = (int(v) for v in str(value).lower().replace("×", "x").split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not PxK (e.g. 8x4)", param_hint="--batch") from None
    if p < 1 or k < 1:
        raise click.BadParameter(f"{value!r}: P and K must be positive", param_hint="--batch")
    return p, k


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
@click.option("--epochs", type=int, default=60, help="Epochs (Simple-CCReID).")
@click.option("--batch", default="8x4", metavar="PxK", help="P identities x K images per batch (Simple-CCReID) [dcac: 16x4].")
@click.option("--size", default="256x128", metavar="HxW", help="Input size (BoT).")
@click.option("--lr", type=float, default=3.5e-4, help="Adam learning rate [dcac: 5e-6].")
@click.option("--weight-decay", type=float, default=5e-4, help="Adam weight decay [dcac: 1e-4].")
@click.option("--milestones", default="20,40", help="Epochs where the lr is multiplied by --gamma [dcac: 30,50].")
@click.option("--gamma", type=float, default=0.1, help="Step decay factor.")
@click.option("--warmup-epochs", type=int, default=0, help="Linear warm-up from lr/10 (BoT uses 10) [dcac: 10].")
@click.option("--label-smooth", type=float, default=0.1, help="Label smoothing epsilon of the identity loss.")
@click.option("--margin", type=float, default=0.3, help="Triplet margin.")
@click.option("--distance", type=click.Choice(["euclidean", "cosine"]), default="euclidean", help="Triplet/HSAL distance.")
@click.option("--triplet-weight", type=float, default=None, help="Triplet weight [default: 1 for baseline/hsal, 0 for cal].")
@click.option("--pooling", type=click.Choice(["avg", "maxavg"]), default=None, help="ResNet pooling [default: avg; maxavg for cal].")
@click.option("--cal-start-epoch", type=int, default=25, help="Epoch (0-based) from which the clothes classifier and adversarial loss run.")
@click.option("--cal-scale", type=float, default=16.0, help="CAL cosine scale.")
@click.option("--cal-epsilon", type=float, default=0.1, help="CAL epsilon.")
@click.option("--hsal-alpha", type=float, default=0.05, help="HSAL distance adjustment alpha (eqs. 6-7).")
@click.option("--hsal-lambda", type=float, default=None, help="Weight of L_hatrip (eq. 12) [default: 0.1 for cal+hsal, the triplet weight for hsal].")
@click.option("--mix", type=click.Choice(["progressive", "concat"]), default="progressive",
              help="How generated samples enter batches: DLCR progressive pairing, or plain concatenation.")
@click.option("--progressive-epochs", default="5,10,15", help="Epoch thresholds of the progressive schedule.")
@click.option("--progressive-fractions", default="0.25,0.5,0.75", help="Fractions of each image's variants before each threshold (then 1.0).")
@click.option("--erasing", type=float, default=0.5, help="Random erasing probability.")
@click.option("--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default="no", help="accelerate mixed precision.")
@click.option("--grad-accum", type=int, default=1, help="Gradient accumulation steps.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward (backbone and DCAC U-Net) to save memory.")
@click.option("--diffusion-model", default="stable-diffusion-v1-5/stable-diffusion-v1-5", metavar="ID|DIR",
              help="dcac: Stable Diffusion (diffusers layout: vae/, unet/, scheduler/) whose frozen U-Net gets LoRA adapters.")
@click.option("--condition", type=click.Choice(["correlation", "class", "class-released", "instance"]), default="correlation",
              help="dcac: diffusion condition (eq. 12 correlation-aware; Table 7 ablations; class-released = released code's e_y).")
@click.option("--condition-tau", type=float, default=1.0,
              help="dcac: tau_c of eq. 12 (paper: 0.1 CUHK03, 0.6 Market/Duke, 1.0 MSMT17 and multi-source).")
@click.option("--dif-weight", type=float, default=1.0, help="dcac: lambda of eq. 13.")
@click.option("--lora-rank", type=int, default=8, help="dcac: LoRA rank (paper: 8; 32 for MSMT17 and multi-source).")
@click.option("--lora-alpha", type=float, default=1.0, help="dcac: LoRA alpha (scale alpha/r; eq. 9 uses 1/r).")
@click.option("--lora-targets", type=click.Choice(["paper", "released"]), default="paper",
              help="dcac: LoRA on attention q/k/v/out + both feed-forward Linears (paper text) or + the GEGLU projection only (released code).")
@click.option("--diffusion-size", type=int, default=128, help="dcac: side of the square diffusion input (released code: 128).")
@click.option("--pcl-weight", type=float, default=1.0, help="dcac: weight of the prototypical contrastive loss.")
@click.option("--pcl-temperature", type=float, default=0.01, help="dcac: PCL temperature tau (eq. 6).")
@click.option("--pcl-momentum", type=float, default=0.2, help="dcac: memory momentum gamma (eq. 7).")
@click.option("--workers", type=int, default=2, help="Image decoding worker processes per training process.")
@click.option("--cpu", is_flag=True, help="Train on the CPU even if a GPU is present.")
@click.option("--resume", is_flag=True, help="Continue the run in -o from its last checkpoint.")
@click.option("--keep-checkpoints", type=int, default=1, help="How many epoch checkpoints to keep.")
@click.option("--log-every", type=int, default=50, help="Write a step record to log.jsonl every N steps (0: epochs only).")
@click.option("--seed", type=int, default=0, help="Seed of initialisation, sampling and augmentation.")
def cli(inputs, output, generated, method, backbone, pretrained, epochs, batch, size, lr, weight_decay, milestones,
        gamma, warmup_epochs, label_smooth, margin, distance, triplet_weight, pooling, cal_start_epoch, cal_scale,
        cal_epsilon, hsal_alpha, hsal_lambda, mix, progressive_epochs, progressive_fractions, erasing,
        mixed_precision, grad_accum, gradient_checkpointing, diffusion_model, condition, condition_tau, dif_weight,
        lora_rank, lora_alpha, lora_targets, diffusion_size, pcl_weight, pcl_temperature, pcl_momentum, workers, cpu, resume,
        keep_checkpoints, log_every, seed):
    """Train a ReID model on real and generated shards.

    Writes a run folder (-o RUN): model.safetensors, config.yaml (every option with the source of its
    default), labels.json, log.jsonl (dataset, step and epoch records: losses, lr, images/s, hard-pair
    counts) and checkpoints/ for --resume. `reid eval --model RUN` evaluates it.

    Multi-GPU: `accelerate launch -m reidtools train ...` (one process per GPU, each reading its own
    share of the shards). See docs/train.md.
    """
    from click.core import ParameterSource

    from reidtools.commands._options import parse_size
    from reidtools.reid.config import TrainConfig, resolve
    from reidtools.reid.trainer import train

    ctx = click.get_current_context()
    p, k = _batch(batch)
    try:
        cfg = TrainConfig(method=method, backbone=backbone, pretrained=pretrained, epochs=epochs, batch_p=p, batch_k=k,
                          size=parse_size(size, "--size"), lr=lr, weight_decay=weight_decay,
                          milestones=_ints(milestones), gamma=gamma, warmup_epochs=warmup_epochs,
                          label_smooth=label_smooth, margin=margin, distance=distance, triplet_weight=triplet_weight,
                          pooling=pooling, cal_start_epoch=cal_start_epoch, cal_scale=cal_scale, cal_epsilon=cal_epsilon,
                          hsal_alpha=hsal_alpha, hsal_lambda=hsal_lambda, mix=mix,
                          progressive_epochs=_ints(progressive_epochs),
                          progressive_fractions=_floats(progressive_fractions), erasing=erasing,
                          mixed_precision=mixed_precision, grad_accum=grad_accum,
                          gradient_checkpointing=gradient_checkpointing, diffusion_model=diffusion_model,
                          condition=condition, condition_tau=condition_tau, dif_weight=dif_weight, lora_rank=lora_rank,
                          lora_alpha=lora_alpha, lora_targets=lora_targets, diffusion_size=diffusion_size, pcl_weight=pcl_weight,
                          pcl_temperature=pcl_temperature, pcl_momentum=pcl_momentum, seed=seed, log_every=log_every)
    except ValueError as exc:
        raise click.UsageError(f"bad list option ({exc})") from None
    sources = {}
    for name, field in (("batch", ("batch_p", "batch_k")),):
        src = ctx.get_parameter_source(name)
        if src in (ParameterSource.COMMANDLINE, ParameterSource.DEFAULT_MAP):
            sources.update({f: "command line" if src == ParameterSource.COMMANDLINE else "config file" for f in field})
    for name in cfg.to_dict():
        try:
            src = ctx.get_parameter_source(name)
        except KeyError:
            continue
        if src == ParameterSource.COMMANDLINE:
            sources[name] = "command line"
        elif src == ParameterSource.DEFAULT_MAP:
            sources[name] = "config file"
    if workers < 0:
        raise click.BadParameter("must be >= 0", param_hint="--workers")
    cfg, sources = resolve(cfg, sources)
    train(cfg, sources, inputs, output, generated_inputs=generated, resume=resume, workers=workers, cpu=cpu,
          progress=progress_enabled(), keep_checkpoints=keep_checkpoints)
