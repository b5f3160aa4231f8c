"""Small atomic file writes for checkpoints and manifests: write `PATH.tmp`, then rename, so a
killed run never leaves a half-written file where a resume would read it."""

from __future__ import annotations

import json
import os
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then move the result to `path`."""
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def write_json_atomic(path: str, data: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)

    atomic_write(path, write)
