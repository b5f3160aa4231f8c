"""Model loading that honours local caches and fails with one clear line instead of a network hang.

Every model-bearing tool resolves `--model` (a Hugging Face id or a local folder) here and then calls
the library's own `from_pretrained` on the resolved folder, so tests' tiny random-weight models and
users' real weights go through the same path.
"""

from __future__ import annotations

import os

from reidtools.errors import ReidError


def missing_model_message(model_id: str) -> str:
    return (f"model {model_id} is not in the local cache; download it with "
            f"`huggingface-cli download {model_id}` on a connected machine or pass a folder")


def resolve_model(model: str, subfolder: str | None = None, allow_download: bool | None = None) -> str:
    """A local folder holding `model`: the path itself, or the snapshot in the Hugging Face cache.

    Downloads only when `allow_download` (default: the env var REID_ALLOW_DOWNLOAD=1) and
    HF_HUB_OFFLINE is not set; otherwise a model missing from the cache is a ReidError.
    """
    if os.path.isdir(model):
        path = os.path.join(model, subfolder) if subfolder else model
        if not os.path.isdir(path):
            raise ReidError(f"model folder {model!r} has no subfolder {subfolder!r}")
        return model
    if os.path.exists(model):
        raise ReidError(f"model {model!r} is a file; pass a model folder or a hub id")
    if model.count("/") > 1 or model.startswith((".", "/")):
        raise ReidError(f"model folder {model!r} does not exist")
    if allow_download is None:
        allow_download = os.environ.get("REID_ALLOW_DOWNLOAD") == "1" and os.environ.get("HF_HUB_OFFLINE") not in ("1", "true", "True")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers/diffusers
        raise ReidError(missing_model_message(model)) from None
    try:
        return snapshot_download(model, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        if not allow_download:
            raise ReidError(missing_model_message(model)) from None
    try:
        return snapshot_download(model)
    except Exception as exc:  # noqa: BLE001 - any hub failure is the same message to the user
        raise ReidError(f"{missing_model_message(model)} (download failed: {exc})") from None
