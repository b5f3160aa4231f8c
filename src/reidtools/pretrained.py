"""One save/load convention for everything the toolkit trains.

A trained artefact is a folder: a JSON config (its `format`, its options, and `files`: the SHA-256 of
every weight file in the folder) beside safetensors files, and sub-folders that diffusers or
transformers save themselves. Classes expose it as `save_pretrained(folder)` /
`from_pretrained(folder)`, as diffusers does; these functions are what they share:

- `write_artifact` writes each file atomically, then the config last, so a folder whose config is
  present is complete; `read_config` + `load_tensors` check the format and each file's SHA-256, so a
  truncated or flipped weight file is one clear error instead of silently wrong weights.
- Training saves resumable `checkpoint-N/` folders (the artefact plus `train_state.*`) under the
  output folder, keeps the newest `keep`, and resumes from `latest_checkpoint`; `publish_checkpoint`
  makes the last one the output folder's artefact by hard links, so its weights are on disk once.

Nothing is unpickled: weights and optimizer moments are safetensors, the rest JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from typing import Callable

from reidtools.errors import ReidError
from reidtools.fileio import atomic_write, write_json_atomic

TRAIN_STATE = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weight_files(folder: str) -> list[str]:
    """Every *.safetensors below `folder`, as sorted relative paths (checkpoint-N/ excluded)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _CKPT.match(d) and not d.startswith("."))
        out += [os.path.relpath(os.path.join(root, f), folder) for f in files if f.endswith(".safetensors")]
    return sorted(out)


def save_tensors(path: str, tensors: dict) -> None:
    """A safetensors file written atomically (contiguous CPU copies, as safetensors requires)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, tmp))


def write_artifact(folder: str, config: dict, tensors: dict[str, dict] | None = None,
                   writers: dict[str, Callable[[str], None]] | None = None, *, name: str = "config.json") -> dict:
    """Write `tensors` ({file name: state dict}) and `writers` ({sub-path: fn(final path)}) into
    `folder`, then the config `name` with `files` = {relative path: sha256} of every weight file.
    Returns the config as written."""
    os.makedirs(folder, exist_ok=True)
    for fname, sd in (tensors or {}).items():
        save_tensors(os.path.join(folder, fname), sd)
    for sub, write in (writers or {}).items():
        write(os.path.join(folder, sub))
    files = {f: sha256_file(os.path.join(folder, f)) for f in weight_files(folder)}
    config = {**config, "files": files}
    write_json_atomic(os.path.join(folder, name), config)
    return config


def read_config(folder: str, *, name: str = "config.json", fmt: str | None = None, what: str = "a reid artefact") -> dict:
    path = os.path.join(folder, name)
    if not os.path.isdir(folder):
        raise ReidError(f"{folder}: no such folder ({what})")
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except FileNotFoundError:
        raise ReidError(f"{folder}: no {name} (not {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ReidError(f"{path}: not a JSON object")
    if fmt is not None and config.get("format") != fmt:
        raise ReidError(f"{path}: format {config.get('format')!r} is not {fmt} (not {what})")
    return config


def verify_file(folder: str, rel: str, config: dict) -> str:
    """The path of `rel` in `folder`, after checking the SHA-256 its config recorded (if any)."""
    path = os.path.join(folder, rel)
    if not os.path.isfile(path):
        raise ReidError(f"{path}: missing weights file")
    want = (config.get("files") or {}).get(rel)
    if want is not None and sha256_file(path) != want:
        raise ReidError(f"{path}: SHA-256 differs from the one recorded when it was saved (truncated or corrupted; "
                        "copy it again or retrain)")
    return path


def verify_all(folder: str, config: dict) -> None:
    for rel in (config.get("files") or {}):
        verify_file(folder, rel, config)


def load_tensors(folder: str, rel: str, config: dict, device: str = "cpu") -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = verify_file(folder, rel, config)
    try:
        return load_file(path, device=device)
    except (SafetensorError, OSError) as exc:
        raise ReidError(f"{path}: not a readable safetensors file ({exc})") from None


# ----------------------------------------------------------------------------- resumable checkpoints
def checkpoint_path(root: str, step: int) -> str:
    return os.path.join(root, f"checkpoint-{step}")


def checkpoints(root: str, name: str = "config.json") -> list[tuple[int, str]]:
    """(step, folder) of the complete checkpoints under `root` (the config is written last), oldest first."""
    if not os.path.isdir(root):
        return []
    out = []
    for d in os.listdir(root):
        m = _CKPT.match(d)
        if m and os.path.isfile(os.path.join(root, d, name)) and os.path.isfile(os.path.join(root, d, TRAIN_STATE_JSON)):
            out.append((int(m.group(1)), os.path.join(root, d)))
    return sorted(out)


def latest_checkpoint(root: str, name: str = "config.json") -> str | None:
    done = checkpoints(root, name)
    return done[-1][1] if done else None


def resume_point(root: str, resume: bool, name: str = "config.json") -> str | None:
    """The checkpoint folder a fit continues from (None: a fresh start). A folder that already holds a
    checkpoint needs `resume`; `resume` needs a complete checkpoint-N/."""
    latest = latest_checkpoint(root, name)
    if latest is None and not os.path.exists(os.path.join(root, name)):
        return None
    if not resume:
        raise ReidError(f"{root} already holds a checkpoint; pass --resume to continue it or choose a new -o")
    if latest is None:
        raise ReidError(f"{root}: no complete checkpoint-N/ folder to resume from")
    return latest


def prune_checkpoints(root: str, keep: int, name: str = "config.json") -> None:
    """Delete all but the newest `keep` complete checkpoints (and any incomplete one older than them)."""
    done = checkpoints(root, name)
    for _, path in done[:-keep] if keep > 0 else done:
        shutil.rmtree(path, ignore_errors=True)


def swap_folder(tmp: str, folder: str) -> None:
    """Move the complete folder `tmp` to `folder`, replacing an old one (a killed swap leaves the old
    folder, or at worst `folder.old`, never a mix of both)."""
    old = folder + ".old"
    if os.path.isdir(folder):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    if src.endswith(".safetensors"):
        try:
            os.link(src, dst)
            return
        except OSError:   # no hard links on this filesystem (or across devices): a copy
            pass
    shutil.copy2(src, dst)


def publish_checkpoint(ckpt: str, folder: str, *, name: str = "config.json") -> dict:
    """The artefact of checkpoint `ckpt` (a checkpoint-N/ folder) as `folder`'s final artefact, without
    a second copy of its weights: each *.safetensors becomes a hard link to the checkpoint's file (a
    copy where the filesystem has none), other files are copied, `train_state.*` stays behind, and the
    config, whose `files` digests are the checkpoint's, is written last. Weight files are only ever
    replaced by rename, never rewritten in place, so pruning or overwriting the checkpoint later leaves
    this artefact whole. Returns the config."""
    config = read_config(ckpt, name=name)
    os.makedirs(folder, exist_ok=True)
    for entry in sorted(os.listdir(ckpt)):
        if entry in (name, TRAIN_STATE, TRAIN_STATE_JSON) or entry.startswith("."):
            continue
        src, dst = os.path.join(ckpt, entry), os.path.join(folder, entry)
        tmp = f"{dst}.{os.getpid()}.tmp"
        try:
            if os.path.isdir(src):
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp, copy_function=_link_or_copy)
                swap_folder(tmp, dst)
            else:
                _link_or_copy(src, tmp)
                os.replace(tmp, dst)
        except OSError as exc:
            raise ReidError(f"{dst}: cannot write ({exc.strerror or exc})") from None
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.lexists(tmp):
                os.remove(tmp)
    write_json_atomic(os.path.join(folder, name), config)
    return config


def save_train_state(folder: str, step: int, optimizer, extra: dict | None = None, meta: dict | None = None) -> None:
    """Optimizer moments (+ `extra` tensors) as safetensors, step and param groups as JSON (last)."""
    from reidtools.generate.training import optimizer_state_tensors

    tensors, opt_meta = optimizer_state_tensors(optimizer) if optimizer is not None else ({}, {})
    save_tensors(os.path.join(folder, TRAIN_STATE), {**tensors, **(extra or {})})
    write_json_atomic(os.path.join(folder, TRAIN_STATE_JSON),
                      {"step": step, **opt_meta, **(meta or {}),
                       "sha256": sha256_file(os.path.join(folder, TRAIN_STATE))})


def load_train_state(folder: str) -> tuple[dict, dict]:
    """(tensors, meta) of a checkpoint's train state, checked against its recorded SHA-256."""
    from safetensors.torch import load_file

    path = os.path.join(folder, TRAIN_STATE_JSON)
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise ReidError(f"{folder}: no {TRAIN_STATE_JSON} to resume from") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"{path}: not valid JSON ({exc})") from None
    state = verify_file(folder, TRAIN_STATE, {"files": {TRAIN_STATE: meta.get("sha256")}})
    return load_file(state), meta
