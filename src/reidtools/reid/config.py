"""Training options, their defaults, and where each default comes from (recorded in config.yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from reidtools.errors import ReidError, UsageError

METHODS = ("baseline", "cal", "hsal", "cal+hsal", "dcac")
MIXES = ("progressive", "concat")
DISTANCES = ("euclidean", "cosine")
PRECISIONS = ("no", "fp16", "bf16")


@dataclass
class TrainConfig:
    method: str = "baseline"
    backbone: str = "resnet50"
    pretrained: str | None = None          # None: the backbone's default (see below)
    epochs: int = 60
    batch_p: int = 8
    batch_k: int = 4
    size: tuple[int, int] = (256, 128)
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [20, 40])
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smooth: float = 0.1
    margin: float = 0.3
    distance: str = "euclidean"
    triplet_weight: float | None = None
    pooling: str | None = None
    cal_start_epoch: int = 25
    cal_scale: float = 16.0
    cal_epsilon: float = 0.1
    hsal_alpha: float = 0.05
    hsal_lambda: float | None = None
    hsal_margin: float | None = None       # None: --margin
    hsal_features: str = "pre-bn"
    mix: str = "progressive"
    progressive_epochs: list[int] = field(default_factory=lambda: [5, 10, 15])
    progressive_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    flip: float = 0.5
    pad: int | None = None                 # None: BoT's 10 px at width 128, scaled to --size
    erasing: float = 0.5
    mixed_precision: str = "no"
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    # DCAC (seed 003; --method dcac)
    diffusion_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    condition: str = "correlation"
    condition_tau: float | None = None     # None: from the training datasets (dcac_dataset_defaults)
    dif_weight: float = 1.0
    lora_rank: int | None = None           # None: from the training datasets
    lora_alpha: float = 1.0
    lora_targets: str = "paper"
    diffusion_size: int = 128
    pcl_weight: float = 1.0
    pcl_temperature: float = 0.01
    pcl_momentum: float = 0.2
    seed: int = 0
    log_every: int = 50
    # starting point and watching (none of these changes the optimisation of an epoch)
    init: str | None = None                # a run folder whose backbone weights start this run
    eval_every: int = 0
    query: list[str] = field(default_factory=list)
    gallery: list[str] = field(default_factory=list)
    protocol: str = "market"
    best_metric: str = "mAP"
    report_to: str = "none"
    # how the run is executed
    workers: int = 2
    cpu: bool = False
    keep_checkpoints: int = 1

    def uses_cal(self) -> bool:
        return self.method in ("cal", "cal+hsal")

    def uses_hsal(self) -> bool:
        return self.method in ("hsal", "cal+hsal")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "size" in kw:
            kw["size"] = tuple(kw["size"])
        return cls(**kw)


# Where each default comes from.
SOURCES = {
    "method": "reidtools (baseline = ResNet-50 BoT-style CE + triplet)",
    "backbone": "BoT / Simple-CCReID (ResNet-50, last stride 1)",
    "pretrained": "ImageNet ResNet-50 (microsoft/resnet-50) for resnet50, CLIP (openai/clip-vit-base-patch16) for vit-b16 as DCAC; none for tiny configs",
    "epochs": "Simple-CCReID (CAL) MAX_EPOCH 60",
    "batch_p": "Simple-CCReID: batch 32 = 8 identities x 4 images",
    "batch_k": "Simple-CCReID: NUM_INSTANCES 4",
    "size": "BoT 256x128 (Simple-CCReID uses 384x192)",
    "lr": "Simple-CCReID / BoT Adam 3.5e-4",
    "weight_decay": "Simple-CCReID / BoT 5e-4",
    "milestones": "Simple-CCReID STEPSIZE [20, 40]",
    "gamma": "Simple-CCReID DECAY_RATE 0.1",
    "warmup_epochs": "Simple-CCReID: no warm-up (BoT uses 10)",
    "label_smooth": "BoT / Simple-CCReID epsilon 0.1",
    "margin": "BoT / Simple-CCReID triplet margin 0.3",
    "distance": "BoT Euclidean",
    "triplet_weight": "1.0 for baseline/hsal (BoT); 0 for cal/cal+hsal (Simple-CCReID CAL PAIR_LOSS_WEIGHT 0)",
    "pooling": "avg for baseline/hsal (BoT); maxavg for cal/cal+hsal (Simple-CCReID CAL); class token for ViT",
    "cal_start_epoch": "Simple-CCReID START_EPOCH_CC / START_EPOCH_ADV 25",
    "cal_scale": "CAL clothes-adversarial scale 16",
    "cal_epsilon": "CAL epsilon 0.1",
    "hsal_alpha": "HSGL released code (distance factor 1.05)",
    "hsal_lambda": "HSGL eq. 12: 0.1 for non-metric baselines (cal+hsal); lambda_orig = the triplet weight for metric baselines (hsal)",
    "hsal_margin": "reidtools: the triplet --margin (0.3, BoT); HSGL eq. 11 names a margin without a value; released CAL-based code 0.0",
    "hsal_features": "reidtools: pre-BN pooled feature, as BoT's triplet (HSGL Alg. 1 line 27 F = M(B) does not say; released code: post-BN)",
    "mix": "DLCR progressive learning (concat = the ablation baseline)",
    "progressive_epochs": "DLCR released config [5, 10, 15]",
    "progressive_fractions": "DLCR released config [0.25, 0.5, 0.75], then 1.0",
    "flip": "BoT / Simple-CCReID 0.5",
    "pad": "BoT: pad 10 + random crop at 256x128, scaled with the input width (10 * W // 128)",
    "erasing": "BoT / Simple-CCReID random erasing 0.5",
    "mixed_precision": "reidtools (fp32)",
    "grad_accum": "reidtools (1)",
    "gradient_checkpointing": "reidtools (off)",
    "diffusion_model": "DCAC: stable-diffusion-v1-5 (VAE + U-Net, frozen)",
    "condition": "DCAC eq. 12 correlation-aware (Table 7 ablations: class, instance; class-released = released code's rescaled one-hot)",
    "condition_tau": "DCAC §5.2 by training dataset (0.1 CUHK03, 0.6 Market/Duke, 1.0 MSMT17 and multi-source)",
    "dif_weight": "DCAC eq. 13 lambda = 1",
    "lora_rank": "DCAC §5.2 by training dataset (8; 32 for MSMT17 and multi-source)",
    "lora_alpha": "DCAC eq. 9 scale 1/r (released loralib alpha 1.0)",
    "lora_targets": "DCAC §4.2 text: attention q/k/v/out + both feed-forward Linears (released: GEGLU projection only)",
    "diffusion_size": "DCAC §5.2: \"The input image size for diffusion is 128 x 128\" (released code: 128)",
    "pcl_weight": "DCAC eq. 8 (released PCL_LOSS_WEIGHT 1.0)",
    "pcl_temperature": "DCAC tau = 0.01",
    "pcl_momentum": "DCAC gamma = 0.2",
    "seed": "reidtools (0)",
    "log_every": "reidtools (50 steps)",
    "init": "reidtools (none: the --pretrained backbone)",
    "eval_every": "reidtools (0: no evaluation during training)",
    "query": "reidtools (none)",
    "gallery": "reidtools (none)",
    "protocol": "reid eval's default (market)",
    "best_metric": "reidtools (mAP)",
    "report_to": "reidtools (none: log.jsonl only)",
    "workers": "reidtools (2 decoding processes)",
    "cpu": "reidtools (GPU when present)",
    "keep_checkpoints": "reidtools (1)",
}

BEST_METRICS = ("mAP", "rank1")
HSAL_FEATURES = ("pre-bn", "post-bn")
REPORTERS = ("none", "tensorboard", "wandb")

# DCAC §5.2: "The rank r of the LoRA adapters is set to 8 for all single-source experiments except for
# those trained on MSMT17. For single-source experiments trained on MSMT17 and all multi-source
# experiments, r is set to 32. [...] tau_c [...] is set to 0.1 for training on CUHK03-NP, 0.6 for
# training on Market1501 and DukeMTMC-reID, and 1.0 for training on MSMT17 and multi-source settings."
# Keys are the `dataset` field `reid pack` writes.
DCAC_BY_DATASET = {"cuhk03np": (0.1, 8), "cuhk03": (0.1, 8), "market1501": (0.6, 8), "dukemtmc": (0.6, 8),
                   "msmt17": (1.0, 32)}
DCAC_MULTI_SOURCE = (1.0, 32)
DCAC_OTHER = (1.0, 8)   # a dataset §5.2 does not list: the released base config (TAU 1.0, rank 8)


def dcac_dataset_defaults(cfg: "TrainConfig", sources: dict[str, str], datasets) -> None:
    """Fill --condition-tau and --lora-rank the user left unset from the training sources' `dataset`
    field (DCAC §5.2), recording why in `sources`. Applies whatever the method (the values are
    recorded; only --method dcac uses them)."""
    names = sorted(str(d) for d in datasets)
    if len(names) > 1:
        (tau, rank), why = DCAC_MULTI_SOURCE, f"multi-source ({', '.join(names)})"
    elif names and names[0].lower() in DCAC_BY_DATASET:
        (tau, rank), why = DCAC_BY_DATASET[names[0].lower()], f"trained on {names[0]}"
    else:
        (tau, rank) = DCAC_OTHER
        why = f"dataset {names[0] if names else '?'!r} is not one §5.2 names: released base config"
    if cfg.condition_tau is None:
        cfg.condition_tau = tau
        sources["condition_tau"] = f"DCAC §5.2, {why}: tau_c = {tau}"
    if cfg.lora_rank is None:
        cfg.lora_rank = rank
        sources["lora_rank"] = f"DCAC §5.2, {why}: r = {rank}"


def resolve(cfg: TrainConfig, sources: dict[str, str]) -> tuple[TrainConfig, dict[str, str]]:
    """Fill the method- and backbone-dependent defaults; validate; return (config, source per option).

    `sources` names options set by the user ('command line' / 'config file'); others get SOURCES."""
    from reidtools.reid.backbones import BACKBONES, DEFAULT_PRETRAINED
    from reidtools.reid.progressive import check_schedule

    out = dict(sources)
    if cfg.method not in METHODS:
        raise ReidError(f"--method {cfg.method!r} is not one of {', '.join(METHODS)}")
    if cfg.method == "dcac":   # the paper's recipe for every option the user left at its default
        for name, (value, why) in DCAC_DEFAULTS.items():
            if name not in sources:
                setattr(cfg, name, list(value) if isinstance(value, list) else value)   # never share the table's list
                out[name] = why
    if cfg.backbone not in BACKBONES:
        raise ReidError(f"--backbone {cfg.backbone!r} is not one of {', '.join(BACKBONES)}")
    if cfg.pretrained is None:
        cfg.pretrained = DEFAULT_PRETRAINED[cfg.backbone]
    if cfg.pad is None:
        # BoT's 10 px is a ~8% shift at width 128; kept at 10 px, a 64x32 input would move by a third
        # of its width and the identity cues fall outside the crop
        cfg.pad = 10 * cfg.size[1] // 128
    if cfg.pad < 0:
        raise UsageError(f"--pad {cfg.pad}: must be >= 0")
    if cfg.triplet_weight is None:
        cfg.triplet_weight = 0.0 if cfg.uses_cal() else 1.0
    if cfg.pooling is None:
        cfg.pooling = "maxavg" if cfg.uses_cal() else "avg"
    if cfg.hsal_lambda is None:
        cfg.hsal_lambda = 0.1 if cfg.method == "cal+hsal" else (cfg.triplet_weight or 1.0)
    if cfg.hsal_margin is None:
        cfg.hsal_margin = cfg.margin
        if "margin" in sources:
            out["hsal_margin"] = f"--margin ({sources['margin']})"
    if cfg.hsal_features not in HSAL_FEATURES:
        raise UsageError(f"--hsal-features {cfg.hsal_features!r} is not one of {', '.join(HSAL_FEATURES)}")
    if cfg.best_metric not in BEST_METRICS:
        raise UsageError(f"--best-metric {cfg.best_metric!r} is not one of {', '.join(BEST_METRICS)}")
    if cfg.report_to not in REPORTERS:
        raise UsageError(f"--report-to {cfg.report_to!r} is not one of {', '.join(REPORTERS)}")
    if cfg.eval_every < 0:
        raise UsageError("--eval-every must be >= 0")
    cfg.query, cfg.gallery = [str(q) for q in cfg.query], [str(g) for g in cfg.gallery]
    if cfg.eval_every and not (cfg.query and cfg.gallery):
        raise UsageError("--eval-every needs --query SHARDS and --gallery SHARDS")
    if (cfg.query or cfg.gallery) and not cfg.eval_every:
        raise UsageError("--query/--gallery are evaluated every --eval-every N epochs: give --eval-every")
    if cfg.init is not None:
        cfg.init = str(cfg.init)
    if cfg.mix not in MIXES:
        raise ReidError(f"--mix {cfg.mix!r} is not one of {', '.join(MIXES)}")
    if cfg.distance not in DISTANCES:
        raise ReidError(f"--distance {cfg.distance!r} is not one of {', '.join(DISTANCES)}")
    if cfg.mixed_precision not in PRECISIONS:
        raise ReidError(f"--mixed-precision {cfg.mixed_precision!r} is not one of {', '.join(PRECISIONS)}")
    if cfg.pooling not in ("avg", "maxavg"):
        raise ReidError(f"--pooling {cfg.pooling!r} is not avg or maxavg")
    if cfg.epochs < 1 or cfg.grad_accum < 1:
        raise ReidError("--epochs and --grad-accum must be at least 1")
    check_schedule(cfg.progressive_epochs, cfg.progressive_fractions)
    if cfg.method == "dcac":
        from reidtools.reid.backbones import family
        from reidtools.reid.dcac import CONDITIONS

        if family(cfg.backbone) != "vit":
            raise ReidError(f"--backbone {cfg.backbone}: --method dcac needs a CLIP ViT backbone (clip-b16)")
        from reidtools.reid.dcac import LORA_TARGETS

        if cfg.lora_targets not in LORA_TARGETS:
            raise ReidError(f"--lora-targets {cfg.lora_targets!r} is not one of {', '.join(LORA_TARGETS)}")
        if cfg.condition not in CONDITIONS:
            raise ReidError(f"--condition {cfg.condition!r} is not one of {', '.join(CONDITIONS)}")
        if (cfg.lora_rank is not None and cfg.lora_rank < 1) or cfg.diffusion_size < 8 or cfg.diffusion_size % 8:
            raise ReidError("--lora-rank must be >= 1 and --diffusion-size a multiple of 8")
        if cfg.condition_tau is not None and cfg.condition_tau <= 0:
            raise ReidError(f"--condition-tau {cfg.condition_tau}: must be positive")
    for f in fields(TrainConfig):
        out.setdefault(f.name, SOURCES.get(f.name, "reidtools"))
    return cfg, out


# --method dcac: DCAC's values (paper section 5.2 and the released adam.yaml) for options left at default.
# epochs and size equal the general defaults; listed so that a dcac run records §5.2 as their source.
DCAC_DEFAULTS = {
    "backbone": ("clip-b16", "DCAC §5.2: CLIP ViT-B/16 image encoder, 512-d projected feature"),
    "size": ((256, 128), "DCAC §5.2: Re-ID input 256 x 128"),
    "epochs": (60, "DCAC §5.2: 60 epochs (released adam.yaml MAX_EPOCHS 60)"),
    "batch_p": (16, "DCAC §5.2: batch 64 = 16 identities x 4 images"),
    "batch_k": (4, "DCAC §5.2: 4 samples per ID (released NUM_INSTANCE 4)"),
    "lr": (5e-6, "DCAC §5.2: Adam, base learning rate 5e-6 (released adam.yaml BASE_LR)"),
    "weight_decay": (1e-4, "DCAC §5.2: weight decay 1e-4 (released adam.yaml WEIGHT_DECAY)"),
    "milestones": ([30, 50], "DCAC §5.2: x 0.1 at the 30th and 50th epoch (released adam.yaml STEPS [30, 50])"),
    "warmup_epochs": (10, "DCAC §5.2: linear warm-up over the first 10 epochs from 5e-7 = 0.1 lr"),
    "triplet_weight": (0.0, "DCAC: no triplet loss (L_ReID = L_id + L_pcl, eq. 8)"),
}


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Step decay at the milestones, after an optional linear warm-up from lr/10 (BoT)."""
    lr = cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        lr *= 0.1 + 0.9 * epoch / cfg.warmup_epochs
    return lr
