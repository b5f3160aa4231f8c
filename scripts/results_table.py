"""A markdown table of `reid eval --json` results over several seeds: one row per run, mean ± std of
CC and SC rank-1 / mAP, then one line saying whether the first run below the baseline beats it on
CC mAP by more than one standard deviation.

    python scripts/results_table.py OUT.md --seeds 0,1,2 NAME=PREFIX [NAME=PREFIX ...]

reads PREFIX-s{seed}-cc.json and PREFIX-s{seed}-sc.json; the first NAME is the baseline. std is the
sample standard deviation (n - 1 in the denominator) over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def load(prefix: str, seed: int, protocol: str) -> dict:
    with open(f"{prefix}-s{seed}-{protocol}.json", encoding="utf-8") as fh:
        return json.load(fh)


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(specs: list[tuple[str, str]], seeds: list[int]) -> tuple[str, dict]:
    n = len(seeds)
    lines = [f"| run (mean ± std over {n} seed{'' if n == 1 else 's'}) | CC rank-1 | CC mAP | SC rank-1 | SC mAP |",
             "| --- | ---: | ---: | ---: | ---: |"]
    summary = {}
    for name, prefix in specs:
        cells, row = [name], {}
        for protocol in ("cc", "sc"):
            for metric in ("rank1", "mAP"):
                m, s = stats([100 * load(prefix, seed, protocol)[metric] for seed in seeds])
                row[f"{protocol}_{metric}"] = (m, s)
                cells.append(f"{m:.1f} ± {s:.1f}")
        summary[name] = row
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", summary


def verdict(summary: dict) -> str:
    names = list(summary)
    if len(names) < 2:
        return ""
    (bm, bs), (gm, gs) = summary[names[0]]["cc_mAP"], summary[names[1]]["cc_mAP"]
    margin = max(bs, gs)
    beats = gm - bm > margin
    return (f"\n{names[1]} vs {names[0]}, CC mAP: {gm - bm:+.1f} points (larger std {margin:.1f}): "
            f"{'better by more than one std' if beats else 'NOT better by more than one std'}.\n")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("runs", nargs="+", metavar="NAME=PREFIX")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.replace(",", " ").split()]
    specs = [tuple(spec.split("=", 1)) for spec in args.runs]
    text, summary = table(specs, seeds)
    text += verdict(summary)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
