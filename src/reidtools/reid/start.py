"""Where a training run starts from: `--init RUN` (another run's backbone, new heads) and
`--resume` (which options may change, and how a change is recorded)."""

from __future__ import annotations

import logging

from reidtools.errors import ReidError
from reidtools.reid import run as runio

log = logging.getLogger("reidtools")

# options that may change on --resume (everything else must match the run's config.yaml); --lr too:
# a NaN loss asks for a lower one, and the change is recorded in config.yaml's `resumes`
RESUMABLE = {"epochs", "log_every", "lr", "workers", "cpu", "keep_checkpoints", "eval_every", "query", "gallery",
             "protocol", "best_metric", "report_to"}


def apply_init(model, init: dict) -> dict:
    """--init: copy the backbone (and the BNNeck where its size matches) of another run into `model`;
    the identity classifier (and CAL's clothes classifier, DCAC's head) stay newly initialised.
    Returns what config.yaml records."""
    state = init["state"]
    parts = {"backbone": model.backbone, "bnneck": model.bnneck}
    loaded, skipped = [], []
    for name, module in parts.items():
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        own = module.state_dict()
        if set(sub) != set(own) or any(sub[k].shape != own[k].shape for k in own):
            if name == "backbone":
                raise ReidError(f"--init {init['run']}: its backbone weights do not fit --backbone "
                                f"{model.backbone.name} (different architecture)")
            skipped.append(name)   # e.g. a maxavg-pooled run initialising an avg-pooled one
            continue
        module.load_state_dict(sub)
        loaded.append(name)
    if skipped:
        log.info("--init %s: %s not loaded (feature size differs)", init["run"], ", ".join(skipped))
    return {"run": init["run"], "weights_sha256": init["sha256"], "loaded": loaded,
            "new": sorted(set(["classifier", *skipped]))}


def check_resume(saved: dict, cfg) -> dict:
    """Refuse a resume that changes what the checkpoint was trained with; return {option: (was, now)}
    of the options that may change (RESUMABLE) and did."""
    current = cfg.to_dict()
    diff = [k for k, v in current.items() if k not in RESUMABLE and k in saved and saved[k] != v
            and not (k == "pretrained")]
    if diff:
        k = diff[0]
        flag = "--" + k.replace("_", "-")
        raise ReidError(f"--resume: option {k!r} ({flag}) is {current[k]!r} but the run was trained with {saved[k]!r} "
                        "(on resume only --epochs, --lr, --log-every, --workers, --keep-checkpoints and the "
                        "--eval-every/--report-to options may change; train into a new -o folder to change it)")
    return {k: (saved[k], v) for k, v in current.items() if k in RESUMABLE and k in saved and saved[k] != v}


def record_resume_changes(run_dir: str, changed: dict, epoch: int) -> None:
    """config.yaml keeps what each changed option was and from which epoch the new value applies."""
    data = runio.read_config(run_dir)
    entry = {"after_epoch": epoch, "changed": {k: {"from": a, "to": b} for k, (a, b) in changed.items()}}
    data.setdefault("resumes", []).append(entry)
    for k, (a, b) in changed.items():
        data["options"][k] = b
        data.setdefault("sources", {})[k] = f"command line (changed on resume after epoch {epoch}; was {a!r})"
    runio.write_config(run_dir, data)
    runio.append_log(run_dir, {"type": "resume", "epoch": epoch, **entry})
