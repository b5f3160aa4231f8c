"""Training options, their defaults, and where each default comes from (recorded in config.yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from reidtools.errors import ReidError

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
    mix: str = "progressive"
    progressive_epochs: list[int] = field(default_factory=lambda: [5, 10, 15])
    progressive_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.5
    mixed_precision: str = "no"
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    # DCAC (seed 003; --method dcac)
    diffusion_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    condition: str = "correlation"
    condition_tau: float = 1.0
    dif_weight: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 1.0
    lora_targets: str = "paper"
    diffusion_size: int = 128
    pcl_weight: float = 1.0
    pcl_temperature: float = 0.01
    pcl_momentum: float = 0.2
    seed: int = 0
    log_every: int = 50

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
    "mix": "DLCR progressive learning (concat = the ablation baseline)",
    "progressive_epochs": "DLCR released config [5, 10, 15]",
    "progressive_fractions": "DLCR released config [0.25, 0.5, 0.75], then 1.0",
    "flip": "BoT / Simple-CCReID 0.5",
    "pad": "BoT pad 10 + random crop",
    "erasing": "BoT / Simple-CCReID random erasing 0.5",
    "mixed_precision": "reidtools (fp32)",
    "grad_accum": "reidtools (1)",
    "gradient_checkpointing": "reidtools (off)",
    "diffusion_model": "DCAC: stable-diffusion-v1-5 (VAE + U-Net, frozen)",
    "condition": "DCAC eq. 12 correlation-aware (Table 7 ablations: class, instance; class-released = released code's rescaled one-hot)",
    "condition_tau": "DCAC released base config 1.0 (paper: 0.1 CUHK03, 0.6 Market/Duke, 1.0 MSMT17 and multi-source)",
    "dif_weight": "DCAC eq. 13 lambda = 1",
    "lora_rank": "DCAC: r = 8 (32 for MSMT17 and multi-source)",
    "lora_alpha": "DCAC eq. 9 scale 1/r (released loralib alpha 1.0)",
    "lora_targets": "DCAC §4.2 text: attention q/k/v/out + both feed-forward Linears (released: GEGLU projection only)",
    "diffusion_size": "DCAC released code: 128x128 diffusion input",
    "pcl_weight": "DCAC eq. 8 (released PCL_LOSS_WEIGHT 1.0)",
    "pcl_temperature": "DCAC tau = 0.01",
    "pcl_momentum": "DCAC gamma = 0.2",
    "seed": "reidtools (0)",
    "log_every": "reidtools (50 steps)",
}


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
                setattr(cfg, name, value)
                out[name] = why
    if cfg.backbone not in BACKBONES:
        raise ReidError(f"--backbone {cfg.backbone!r} is not one of {', '.join(BACKBONES)}")
    if cfg.pretrained is None:
        cfg.pretrained = DEFAULT_PRETRAINED[cfg.backbone]
    if cfg.triplet_weight is None:
        cfg.triplet_weight = 0.0 if cfg.uses_cal() else 1.0
    if cfg.pooling is None:
        cfg.pooling = "maxavg" if cfg.uses_cal() else "avg"
    if cfg.hsal_lambda is None:
        cfg.hsal_lambda = 0.1 if cfg.method == "cal+hsal" else (cfg.triplet_weight or 1.0)
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
        if cfg.lora_rank < 1 or cfg.diffusion_size < 8 or cfg.diffusion_size % 8:
            raise ReidError("--lora-rank must be >= 1 and --diffusion-size a multiple of 8")
    for f in fields(TrainConfig):
        out.setdefault(f.name, SOURCES.get(f.name, "reidtools"))
    return cfg, out


# --method dcac: DCAC's values (paper section 5.2 and the released adam.yaml) for options left at default
DCAC_DEFAULTS = {
    "backbone": ("clip-b16", "DCAC: CLIP ViT-B/16 image encoder, 512-d projected feature"),
    "batch_p": (16, "DCAC: batch 64 = 16 identities x 4 images"),
    "batch_k": (4, "DCAC: NUM_INSTANCE 4"),
    "lr": (5e-6, "DCAC released adam.yaml BASE_LR 5e-6"),
    "weight_decay": (1e-4, "DCAC released adam.yaml WEIGHT_DECAY 1e-4"),
    "milestones": ([30, 50], "DCAC released adam.yaml STEPS [30, 50]"),
    "warmup_epochs": (10, "DCAC released adam.yaml linear warm-up 10 epochs from 0.1 lr"),
    "triplet_weight": (0.0, "DCAC: no triplet loss (L_ReID = L_id + L_pcl, eq. 8)"),
}


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Step decay at the milestones, after an optional linear warm-up from lr/10 (BoT)."""
    lr = cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        lr *= 0.1 + 0.9 * epoch / cfg.warmup_epochs
    return lr
