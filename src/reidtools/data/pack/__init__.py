"""Dataset converters: published on-disk layouts -> split shards (`reid pack`).

Each converter is `scan(root, Options) -> Scan`: it lists the dataset deterministically (sorted
files, list-file order), parses names by the dataset's own rules and skips nothing silently.
`write_scan` then writes the shards; `summarise` counts what went where.
"""

from __future__ import annotations

from reidtools.data.pack.base import Item, Options, Scan
from reidtools.data.pack.clothes import ltcc, prcc, vcclothes
from reidtools.data.pack.crossmodal import llcm, regdb, sysu
from reidtools.data.pack.longterm import celebreid, deepchange, last
from reidtools.data.pack.manifest import folder
from reidtools.data.pack.market import cuhk03np, dukemtmc, market1501
from reidtools.data.pack.msmt import msmt17
from reidtools.data.pack.video import ccvid, mars
from reidtools.data.pack.write import summarise, write_scan

CONVERTERS = {
    "market1501": market1501,
    "dukemtmc": dukemtmc,
    "msmt17": msmt17,
    "cuhk03np": cuhk03np,
    "prcc": prcc,
    "ltcc": ltcc,
    "vcclothes": vcclothes,
    "ccvid": ccvid,
    "sysu": sysu,
    "llcm": llcm,
    "regdb": regdb,
    "deepchange": deepchange,
    "last": last,
    "celebreid": celebreid,
    "mars": mars,
    "folder": folder,
}

__all__ = ["CONVERTERS", "Item", "Options", "Scan", "scan_dataset", "summarise", "write_scan"]


def scan_dataset(fmt: str, root: str, opts: Options | None = None) -> Scan:
    import os

    from reidtools.errors import ReidError

    if not os.path.exists(root):
        raise ReidError(f"{root}: no such file or folder")
    scan = CONVERTERS[fmt](root, opts or Options())
    if not scan.items:
        raise ReidError(f"{root}: no {fmt} images found (see docs/pack.md for the layout it expects)")
    return scan
