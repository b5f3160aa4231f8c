"""Small atomic file writes for checkpoints and manifests: write a private temporary file next to
PATH, then rename, so a killed run never leaves a half-written file where a resume would read it."""

from __future__ import annotations

import json
import os
import secrets
from typing import Callable

from reidtools.errors import ReidError


def _umask() -> int:
    # os.umask can only be read by setting it; /proc avoids the (thread-unsafe) set-and-restore
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then move the result to `path`.

    The file gets the mode a plain `open()` would give it (0666 minus the umask): some writers
    (safetensors) create 0600 files, which a colleague reading a shared run folder cannot open. A
    failed write removes the temporary file and is one error naming `path`.
    """
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise ReidError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path: str, data: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)

    atomic_write(path, write)
