"""Watching a training run: evaluation every N epochs (`reid train --eval-every N --query Q
--gallery G -p PROTOCOL`), the best weights kept as best.safetensors, and accelerate trackers.

Evaluation is `reid eval`'s own code (metrics.features.load_set, metrics.evaluate) fed with the
model being trained through extract's FeatureModel: the BNNeck output, flip-averaged, at the run's
--size, as `reid eval --model RUN` computes it after training. So the logged metrics are the ones
`reid eval --model RUN` reports for the same weights.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
TRACKERS = "trackers"
# what an eval record keeps of `reid eval`'s result (fractions)
KEPT = ("mAP", "mINP", "rank1", "rank5", "rank10")


class Validator:
    """Evaluates a ReidModel on the query/gallery shards and tracks the best value of one metric."""

    def __init__(self, cfg, best: dict | None = None):
        from reidtools.metrics.protocols import PROTOCOLS
        from reidtools.shards import expand_inputs

        if cfg.protocol not in PROTOCOLS:
            raise ReidError(f"--protocol {cfg.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        self.cfg = cfg
        self.query, self.gallery = expand_inputs(list(cfg.query)), expand_inputs(list(cfg.gallery))
        self.needs = PROTOCOLS[cfg.protocol].needs
        self.best = best   # {"epoch", "metric", "value", ...} of the best evaluation so far

    def due(self, epoch: int) -> bool:
        """Evaluate after 1-based `epoch`: every --eval-every epochs and after the last one."""
        return epoch % self.cfg.eval_every == 0 or epoch == self.cfg.epochs

    def evaluate(self, model, device) -> dict:
        """`reid eval`'s metrics of `model` (left in eval mode; the trainer switches it back)."""
        from reidtools.metrics import evaluate
        from reidtools.metrics.features import check_dims, load_set
        from reidtools.reid.data import IMAGENET_MEAN, IMAGENET_STD
        from reidtools.reid.extract import FeatureModel, Preprocess, RunFeatures

        prep = Preprocess(tuple(self.cfg.size), tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), "bilinear")
        net = FeatureModel(RunFeatures(model, "post-bn"), prep, model.dim, feature="post-bn", flip=True,
                           source="the model being trained")
        common = dict(protocol=self.cfg.protocol, needs=self.needs, model=net, device=str(device), stored=False)
        qf, qmeta, _ = load_set(self.query, role="query", **common)
        gf, gmeta, _ = load_set(self.gallery, role="gallery", **common)
        check_dims(qf, gf, qmeta, gmeta)
        try:
            result = evaluate(qf, gf, qmeta, gmeta, self.cfg.protocol, distance="cosine", seed=self.cfg.seed, copy=False)
        except ValueError as exc:
            raise ReidError(f"--eval-every: {exc}") from None
        return result

    def record(self, result: dict, epoch: int, step: int) -> dict:
        """The log.jsonl eval record; `best` says whether this evaluation is the new best."""
        metric = self.cfg.best_metric
        value = float(result[metric])
        better = self.best is None or value > float(self.best["value"])   # ties keep the earlier epoch
        rec = {"type": "eval", "epoch": epoch, "step": step, "protocol": self.cfg.protocol,
               **{k: float(result[k]) for k in KEPT if result.get(k) is not None},
               **{k: int(result[k]) for k in ("num_query_valid", "num_gallery") if result.get(k) is not None},
               "best": better}
        if better:
            self.best = {"epoch": epoch, "step": step, "metric": metric, "value": value,
                         "protocol": self.cfg.protocol}
        return rec


def save_best(run_dir: str, state: dict, best: dict) -> None:
    """best.safetensors (the ReID model, as model.safetensors) and, in config.yaml, which evaluation
    it is and its SHA-256."""
    from reidtools.reid import run as runio

    digest = runio.save_weights(os.path.join(run_dir, runio.BEST), state)
    data = runio.read_config(run_dir)
    data["best"] = dict(best)
    data.setdefault(runio.DIGESTS, {})[runio.BEST] = digest
    runio.write_config(run_dir, data)


def resumed_best(run_dir: str, cfg, start_epoch: int) -> dict | None:
    """The best evaluation recorded before the checkpoint we resume from (a later one belonged to
    an epoch that is trained again; a different --best-metric or -p starts afresh)."""
    from reidtools.reid import run as runio

    best = runio.read_config(run_dir).get("best")
    if not isinstance(best, dict) or int(best.get("epoch", 0)) > start_epoch:
        return None
    if best.get("metric") != cfg.best_metric or best.get("protocol") != cfg.protocol:
        log.info("--resume: --best-metric/-p changed; best.safetensors is chosen afresh from epoch %d", start_epoch + 1)
        return None
    return best


def tracker_setup(report_to: str, run_dir: str) -> dict:
    """Accelerator keyword arguments for --report-to (checked before training starts)."""
    if report_to == "none":
        return {}
    if report_to == "tensorboard":
        if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
            raise ReidError("--report-to tensorboard needs an event writer: pip install 'reidtools[tensorboard]'")
    elif report_to == "wandb":
        if not importlib.util.find_spec("wandb"):
            raise ReidError("--report-to wandb needs the wandb package: pip install wandb")
        os.environ.setdefault("WANDB_MODE", "offline")   # nothing leaves the machine unless the user says so
    else:
        raise ReidError(f"--report-to {report_to!r} is not one of none, tensorboard, wandb")
    return {"log_with": report_to, "project_dir": os.path.join(run_dir, TRACKERS)}


def tracker_init(acc, report_to: str, run_dir: str, options: dict) -> None:
    if report_to == "none":
        return
    # trackers take flat scalars/strings; lists (milestones, shard lists) become strings
    flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in options.items()}
    kwargs = {"wandb": {"dir": os.path.join(run_dir, TRACKERS)}} if report_to == "wandb" else {}
    try:
        acc.init_trackers(os.path.basename(os.path.abspath(run_dir)) or "reid-train", config=flat, init_kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - tracker libraries raise their own error types
        raise ReidError(f"--report-to {report_to}: cannot start the tracker in {run_dir}/{TRACKERS} "
                        f"({' '.join(str(exc).split())[:200]})") from None


def tracker_values(record: dict) -> dict:
    """The numbers of a log record, named `train/<key>` or `eval/<key>` for the tracker."""
    group = "eval" if record.get("type") == "eval" else "train"
    skip = {"type", "epoch", "step", "best", "protocol"}
    return {f"{group}/{k}": v for k, v in record.items()
            if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)}
