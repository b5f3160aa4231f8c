"""The run folder: what `reid train` writes and `reid eval --model` / `reid refine` read.

    RUN/model.safetensors        final weights (backbone, BNNeck, classifiers)
    RUN/config.yaml              resolved options + the source of each default, backbone config,
                                 number of identity / clothes classes
    RUN/labels.json              dataset pid -> label, clothes id -> label
    RUN/log.jsonl                one JSON object per line: dataset, step and epoch records
    RUN/checkpoints/epoch-NNNN/  model.safetensors, optimizer.pt, rng-RANK.safetensors, state.json
"""

from __future__ import annotations

import json
import os
import shutil

import yaml

from reidtools.errors import ReidError

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
LABELS = "labels.json"
LOG = "log.jsonl"
CKPT_DIR = "checkpoints"


def write_config(run_dir: str, data: dict) -> None:
    os.makedirs(run_dir, exist_ok=True)
    tmp = os.path.join(run_dir, CONFIG + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    os.replace(tmp, os.path.join(run_dir, CONFIG))


def read_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise ReidError(f"{run_dir!r} is not a run folder (no {CONFIG}); train one with `reid train`")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict) or "options" not in data:
        raise ReidError(f"{path}: not a reid train config")
    return data


def write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def append_log(run_dir: str, record: dict) -> None:
    with open(os.path.join(run_dir, LOG), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


def read_log(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def save_weights(path: str, state_dict: dict) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tmp = path + ".tmp"
    save_file(tensors, tmp)
    os.replace(tmp, path)


def load_weights(path: str) -> dict:
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise ReidError(f"{path}: missing weights file")
    return load_file(path)


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_dir(run_dir: str, epoch: int) -> str:
    return os.path.join(run_dir, CKPT_DIR, f"epoch-{epoch:04d}")


def latest_checkpoint(run_dir: str) -> str | None:
    """The newest complete checkpoint (its state.json is written last)."""
    root = os.path.join(run_dir, CKPT_DIR)
    if not os.path.isdir(root):
        return None
    done = sorted(d for d in os.listdir(root)
                  if d.startswith("epoch-") and os.path.isfile(os.path.join(root, d, "state.json")))
    return os.path.join(root, done[-1]) if done else None


def save_checkpoint(run_dir: str, epoch: int, *, model_state: dict, optimizer_state: dict | None,
                    state: dict, keep: int = 1) -> str:
    import torch

    path = checkpoint_dir(run_dir, epoch)
    os.makedirs(path, exist_ok=True)
    save_weights(os.path.join(path, WEIGHTS), model_state)
    if optimizer_state is not None:
        tmp = os.path.join(path, "optimizer.pt.tmp")
        torch.save(optimizer_state, tmp)
        os.replace(tmp, os.path.join(path, "optimizer.pt"))
    write_json(os.path.join(path, "state.json"), state)
    root = os.path.join(run_dir, CKPT_DIR)
    old = sorted(d for d in os.listdir(root) if d.startswith("epoch-"))[:-keep] if keep > 0 else []
    for d in old:
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    return path


def save_rng(path: str, rank: int) -> None:
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    save_weights(os.path.join(path, f"rng-{rank}.safetensors"), tensors)


def load_rng(path: str, rank: int) -> None:
    import torch

    file = os.path.join(path, f"rng-{rank}.safetensors")
    if not os.path.isfile(file):
        raise ReidError(f"{path}: no random state for process {rank} (resumed with more processes than trained?)")
    tensors = load_weights(file)
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def load_optimizer(path: str) -> dict | None:
    import torch

    file = os.path.join(path, "optimizer.pt")
    if not os.path.isfile(file):
        return None
    return torch.load(file, map_location="cpu", weights_only=True)
