"""What every converter shares: the record of one image to pack, directory listing that skips
unknown files, key derivation, and the error for a name that breaks a dataset's naming rule."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from reidtools.errors import ReidError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Item:
    """One image to pack: where it is, the split it goes to, its key and its metadata."""

    split: str
    key: str
    path: str
    meta: dict


@dataclass
class Options:
    variant: str | None = None
    direction: str | None = None     # None: the format's own default (llcm i2v, regdb v2i)
    frame_step: int = 1


@dataclass
class Scan:
    """A converter's result: items in a deterministic order, and what it skipped (and why)."""

    items: list[Item] = field(default_factory=list)
    junk: int = 0           # images the dataset marks as junk (Market/Duke pid -1)
    unknown: int = 0        # files that are not images (Thumbs.db, .DS_Store, ...)
    notes: list[str] = field(default_factory=list)

    def add(self, split: str, key: str, path: str, /, **meta) -> None:
        self.items.append(Item(split, key, path, meta))


def make_key(*parts: str) -> str:
    """Join parts with `_`, dropping the image extension of the last one; every character outside
    [A-Za-z0-9_-] (dots, slashes, spaces) becomes `_` so WebDataset does not split the key."""
    parts = list(parts)
    stem, ext = os.path.splitext(parts[-1])
    if ext.lower() in IMAGE_EXTS:
        parts[-1] = stem
    return _KEY_BAD.sub("_", "_".join(p for p in parts if p))


def need_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise ReidError(f"{path}: missing folder ({what})")
    return path


def need_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise ReidError(f"{path}: missing file ({what})")
    return path


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def list_images(folder: str, scan: Scan) -> list[str]:
    """Image file names in `folder`, sorted; other files are counted as unknown, sub-folders ignored."""
    names = []
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if os.path.isdir(full):
            continue
        if is_image(name):
            names.append(name)
        else:
            scan.unknown += 1
    return names


def list_dirs(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))


def bad_name(path: str, rule: str) -> ReidError:
    return ReidError(f"{path}: image name does not follow the naming rule {rule}")


def read_list(path: str, what: str) -> list[list[str]]:
    """Whitespace-separated fields of each non-blank line of a split list file, in file order."""
    need_file(path, what)
    with open(path, encoding="utf-8") as fh:
        return [fields for fields in (line.split() for line in fh) if fields]


def to_int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ReidError(f"{where}: {text!r} is not an integer") from None
