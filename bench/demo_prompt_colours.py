"""How closely the demo's generated garments follow their prompts: the share of variants whose
upper / lower garment region, by its median colour, is nearest (RGB distance) to the colour the
prompt names, among the synthetic dataset's 16 garment colours (chance: 1/16 = 6.2%).

The same measure on the original images against their own ground-truth garments gives the ceiling
that camera tint, gain, noise and patterns allow. Regions come from the source's exact `parse.png`
(resized to the variant's size), so nothing here depends on a parser.

    .venv/bin/python bench/demo_prompt_colours.py demo-out/masked/train-000000.tar 'demo-out/generated/*.tar' [--json F]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from reidtools.data.synth import COLORS, PANTS, SKIRT, UPPER  # noqa: E402

NAMES = list(COLORS)
PALETTE = np.array([COLORS[n] for n in NAMES], np.float64)
PARTS = (("upper", (UPPER,)), ("lower", (PANTS, SKIRT)))


def nearest(pixels: np.ndarray) -> str:
    return NAMES[int(np.argmin(((PALETTE - np.median(pixels, axis=0)) ** 2).sum(1)))]


def image(sample: dict) -> np.ndarray:
    data = sample.get("png") or sample.get("jpg")
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)


def samples(pattern: str):
    from reidtools.shards import expand_inputs, iter_samples

    yield from iter_samples(expand_inputs([pattern]))


def region(parse: np.ndarray, labels, shape) -> np.ndarray:
    m = np.isin(parse, labels)
    if m.shape != shape:
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(shape[::-1], Image.NEAREST)) > 127
    return m


def prompt_colours(prompt: str) -> list[str]:
    """Colour words in prompt order: the first names the upper garment, the second the lower one
    (the template engine writes 'C1 [pattern] top C2 pants|shorts|skirt C3 shoes')."""
    return [w for w in prompt.split() if w in COLORS]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", help="the masked training shards (with parse.png and garments)")
    ap.add_argument("generated", help="the generated shards")
    ap.add_argument("--json", help="also write the shares (percent) and counts to this file")
    args = ap.parse_args(argv)
    src, hits_orig = {}, {p: [0, 0] for p, _ in PARTS}
    for s in samples(args.sources):
        meta = s["json"] if isinstance(s["json"], dict) else json.loads(s["json"])
        parse = np.asarray(Image.open(io.BytesIO(s["parse.png"])))
        src[s["__key__"]] = parse
        img = image(s)
        g = meta["garments"]
        for (part, labels), want in zip(PARTS, (g["upper_color"], g["lower_color"])):
            m = region(parse, labels, img.shape[:2])
            if m.sum() >= 10:
                hits_orig[part][0] += nearest(img[m]) == want
                hits_orig[part][1] += 1
    hits = {p: [0, 0] for p, _ in PARTS}
    for s in samples(args.generated):
        meta = s["json"] if isinstance(s["json"], dict) else json.loads(s["json"])
        cols = prompt_colours(meta["history"][-1].get("prompt", ""))
        if len(cols) < 2 or meta["source"] not in src:
            continue
        img = image(s)
        for (part, labels), want in zip(PARTS, cols[:2]):
            m = region(src[meta["source"]], labels, img.shape[:2])
            if m.sum() >= 10:
                hits[part][0] += nearest(img[m]) == want
                hits[part][1] += 1
    print("| images | upper = prompted colour | lower = prompted colour |")
    print("| --- | ---: | ---: |")
    for name, h in (("originals vs their own garments (ceiling)", hits_orig), ("generated variants vs prompt", hits)):
        cells = [f"{100 * a / max(n, 1):.1f}% of {n}" for a, n in (h["upper"], h["lower"])]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    print(f"chance: {100 / len(NAMES):.1f}%")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"chance": 100 / len(NAMES), **{
                f"{who}_{part}": {"percent": 100 * a / max(n, 1), "n": n}
                for who, h in (("originals", hits_orig), ("generated", hits)) for part, (a, n) in h.items()}}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
