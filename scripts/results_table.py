"""A markdown table of `reid eval --json` results: one row per run, CC and SC columns side by side.

    python scripts/results_table.py OUT.md NAME=cc.json,sc.json [NAME=...]
"""

from __future__ import annotations

import json
import sys


def row(name: str, files: list[str]) -> str:
    cells = [name]
    for path in files:
        with open(path, encoding="utf-8") as fh:
            r = json.load(fh)
        cells += [f"{100 * r['rank1']:.1f}", f"{100 * r['mAP']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str]) -> None:
    out, specs = argv[0], argv[1:]
    lines = ["| run | CC rank-1 | CC mAP | SC rank-1 | SC mAP |", "| --- | ---: | ---: | ---: | ---: |"]
    for spec in specs:
        name, files = spec.split("=", 1)
        lines.append(row(name, files.split(",")))
    text = "\n".join(lines) + "\n"
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
