"""The run folder: what `reid train` writes and `reid eval --model` / `reid refine` read.

    RUN/model.safetensors        final weights (backbone, BNNeck, classifiers)
    RUN/config.yaml              resolved options + the source of each default, backbone config,
                                 number of identity / clothes classes
    RUN/labels.json              dataset pid -> label, clothes id -> label
    RUN/log.jsonl                one JSON object per line: dataset, step and epoch records
    RUN/best.safetensors         with --eval-every: the weights of the best evaluation so far
    RUN/checkpoints/epoch-NNNN/  model.safetensors, optimizer.pt, rng-RANK.safetensors, state.json

config.yaml's `files` and each state.json's `files` record the SHA-256 of the weight files beside
them; loading checks it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import yaml

from reidtools.errors import ReidError
from reidtools.fileio import atomic_write

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
LABELS = "labels.json"
LOG = "log.jsonl"
CKPT_DIR = "checkpoints"
STATE = "state.json"
# config.yaml (run folder) and state.json (checkpoint) record `files: {file name: SHA-256}` of the
# weight files beside them, the key and digest of the shared save/load convention
# (reidtools.pretrained); every load checks the file against it. Run folders keep their YAML config,
# which `reid eval --model` and older runs rely on.
DIGESTS = "files"


def write_bytes(path: str, data: bytes) -> str:
    """Write `data` to `path` atomically (reidtools.fileio: a private temporary file, the umask's
    mode, one ReidError naming `path` when the disk is full); returns its SHA-256."""
    def write(tmp: str) -> None:
        with open(tmp, "xb") as fh:
            fh.write(data)

    atomic_write(path, write)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
    from reidtools.pretrained import sha256_file

    return sha256_file(path)


def write_config(run_dir: str, data: dict) -> None:
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as exc:
        raise ReidError(f"{run_dir}: cannot create the run folder ({exc.strerror or exc})") from None
    write_bytes(os.path.join(run_dir, CONFIG), yaml.safe_dump(data, sort_keys=False).encode("utf-8"))


def read_config(run_dir: str) -> dict:
    path = os.path.join(run_dir, CONFIG)
    if not os.path.isfile(path):
        raise ReidError(f"{run_dir!r} is not a run folder (no {CONFIG}); train one with `reid train`")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise ReidError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        raise ReidError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise ReidError(f"{path}: not a reid train config (no 'options' mapping)")
    missing = [k for k in ("backbone_config", "num_ids") if k not in data]
    if missing or not isinstance(data["backbone_config"], dict):
        raise ReidError(f"{path}: incomplete reid train config (no {missing[0] if missing else 'backbone_config'!r} mapping)")
    return data


def write_json(path: str, data) -> str:
    return write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


def append_log(run_dir: str, record: dict) -> None:
    path = os.path.join(run_dir, LOG)
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as exc:
        raise ReidError(f"{path}: cannot write ({exc.strerror or exc})") from None


def read_log(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def truncate_log(run_dir: str, epoch: int | None, step: int = 0) -> int:
    """Drop the records a killed run wrote after its last checkpoint (epoch `epoch`, global step
    `step`), so a resumed run does not repeat them; epoch None drops every record (the run starts
    again from epoch 1). Returns how many records were dropped."""
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return 0
    lines = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                lines.append((line, json.loads(line)))
            except json.JSONDecodeError:   # a line cut by the kill
                lines.append((line, None))
    keep = [line for line, r in lines if epoch is not None and isinstance(r, dict)
            and int(r.get("epoch", 0)) <= epoch and int(r.get("step", 0)) <= step]
    if len(keep) != len(lines):
        write_bytes(path, "".join(keep).encode("utf-8"))
    return len(lines) - len(keep)


def save_weights(path: str, state_dict: dict) -> str:
    """safetensors file, written atomically; returns its SHA-256 (for the folder's manifest)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return write_bytes(path, save(tensors))


def _expected_digest(path: str) -> tuple[str, str] | None:
    """(SHA-256, manifest path) recorded for `path` by the config.yaml or state.json beside it."""
    folder, name = os.path.split(path)
    for manifest in (CONFIG, STATE):
        mpath = os.path.join(folder, manifest)
        if not os.path.isfile(mpath):
            continue
        if manifest == CONFIG:
            record = read_config(folder).get(DIGESTS)
        else:
            try:
                with open(mpath, encoding="utf-8") as fh:
                    record = json.load(fh).get(DIGESTS)
            except (OSError, json.JSONDecodeError, AttributeError) as exc:
                raise ReidError(f"{mpath}: not a readable checkpoint state ({exc})") from None
        if isinstance(record, dict) and name in record:
            return str(record[name]), mpath
    return None


def verify(path: str) -> None:
    """Check `path` against the SHA-256 its folder's manifest records (files of older runs, which
    have no record, pass unchecked)."""
    expected = _expected_digest(path)
    if expected is None:
        return
    digest, manifest = expected
    got = file_sha256(path)
    if got != digest:
        raise ReidError(f"{path}: SHA-256 {got[:16]}... does not match {digest[:16]}... recorded in {manifest} "
                        "(the file was truncated or changed after it was written)")


def load_weights(path: str) -> dict:
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise ReidError(f"{path}: missing weights file")
    verify(path)
    try:
        return load_file(path)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a damaged header
        raise ReidError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def read_init(run_dir: str, backbone: str) -> dict:
    """`reid train --init RUN`: the run's config and final weights (checked against their SHA-256)."""
    data = read_config(run_dir)
    trained = data["options"].get("backbone")
    if trained != backbone:
        raise ReidError(f"--init {run_dir}: that run trained --backbone {trained}, this one asks for {backbone}")
    path = os.path.join(run_dir, WEIGHTS)
    if not os.path.isfile(path):
        raise ReidError(f"--init {run_dir}: no {WEIGHTS} (that run has not finished)")
    state = load_weights(path)
    return {"run": os.path.abspath(run_dir), "config": data, "state": state, "sha256": file_sha256(path)}


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
                    state: dict, keep: int = 1, ranks: int = 1) -> str:
    """Write checkpoints/epoch-NNNN/ (the processes' rng-RANK files are already there); state.json,
    written last, marks it complete and records the SHA-256 of every file in it."""
    import torch

    path = checkpoint_dir(run_dir, epoch)
    os.makedirs(path, exist_ok=True)
    digests = {WEIGHTS: save_weights(os.path.join(path, WEIGHTS), model_state)}
    if optimizer_state is not None:
        # serialised in memory first: torch.save's own writer turns a full disk into a C++ "enforce fail"
        buf = io.BytesIO()
        torch.save(optimizer_state, buf)
        digests["optimizer.pt"] = write_bytes(os.path.join(path, "optimizer.pt"), buf.getvalue())
        del buf
    for rank in range(ranks):
        name = f"rng-{rank}.safetensors"
        if os.path.isfile(os.path.join(path, name)):
            digests[name] = file_sha256(os.path.join(path, name))
    write_json(os.path.join(path, STATE), {**state, DIGESTS: digests})
    root = os.path.join(run_dir, CKPT_DIR)
    old = sorted(d for d in os.listdir(root) if d.startswith("epoch-"))[:-keep] if keep > 0 else []
    for d in old:
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    return path


def read_state(path: str) -> dict:
    file = os.path.join(path, STATE)
    try:
        with open(file, encoding="utf-8") as fh:
            st = json.load(fh)
        return {**st, "epoch": int(st["epoch"]), "global_step": int(st["global_step"])}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ReidError(f"{file}: not a readable checkpoint state ({exc})") from None


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
    verify(file)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/UnpicklingError/EOFError for damage
        raise ReidError(f"{file}: not a readable optimizer state ({' '.join(str(exc).split())[:200]})") from None
