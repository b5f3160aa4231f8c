"""Contact sheets: a PNG grid of samples with masks/parse maps overlaid, variants beside their source."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reidtools.seeding import derive_seed
from reidtools.shards import image, iter_samples, mask, meta

# 20 well-separated colours for label ids 0..19 (0 = background is never drawn)
PARSE_COLORS = np.array([
    (0, 0, 0), (128, 0, 0), (255, 85, 0), (0, 85, 0), (170, 0, 51), (255, 170, 0), (0, 0, 255),
    (85, 0, 255), (0, 119, 221), (0, 85, 255), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0),
    (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 0, 255),
], np.float32)
MASK_COLOR = np.array((255, 40, 40), np.float32)


@dataclass
class Group:
    """An original sample and the generated samples whose `source` is its key."""
    head: dict
    variants: list = field(default_factory=list)


def _keep_smallest(heap: list, n: int, rank: int, key: str, sample: dict) -> None:
    item = (-rank, key, sample)  # a max-heap on rank: the root is the worst kept
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif -heap[0][0] > rank:
        heapq.heapreplace(heap, item)


def select(shards: Iterable[str], n: int, seed: int = 0, ids: set | None = None, variants: int = 4) -> list[Group]:
    """Pick `n` originals (samples without `source`) by a seeded hash of the key, so the choice does
    not depend on input order or sharding, each with up to `variants` samples derived from it.

    One streaming pass in bounded memory: a variant's source rank is known from its `source` key
    alone, so variants of sources that can no longer be picked are dropped at once. When the inputs
    hold fewer than `n` originals, variants whose source is absent fill up as originals.
    """
    rank = lambda key: derive_seed(seed, key)  # noqa: E731
    heads: list = []
    orphans: list = []
    seen: set[str] = set()
    by_source: dict[str, list] = {}
    for sample in iter_samples(shards):
        m = meta(sample)
        if ids is not None and m.get("pid") not in ids:
            continue
        key, src = sample["__key__"], m.get("source")
        if src is None:
            seen.add(key)
            _keep_smallest(heads, n, rank(key), key, sample)
            continue
        _keep_smallest(orphans, n, rank(key), key, sample)
        if variants > 0 and (len(heads) < n or rank(src) <= -heads[0][0]):
            kept = by_source.setdefault(src, [])
            if len(kept) < variants:
                kept.append(sample)
    picked = [s for _, _, s in sorted(heads, key=lambda t: (-t[0], t[1]))]
    if len(picked) < n:
        picked += [s for _, _, s in sorted(orphans, key=lambda t: (-t[0], t[1]))
                   if meta(s)["source"] not in seen][: n - len(picked)]
    return [Group(s, by_source.get(s["__key__"], []) if variants > 0 else []) for s in picked]


def _overlay(sample: dict, img: Image.Image, mode: str, alpha: float) -> tuple[Image.Image, str]:
    """The image with a colour-coded overlay; mode auto = mask.png if present, else parse.png."""
    if mode == "auto":
        mode = "mask" if "mask.png" in sample else "parse" if "parse.png" in sample else "none"
    if mode == "none" or f"{mode}.png" not in sample:
        return img, ""
    lab = mask(sample, f"{mode}.png", hint=None)
    if lab.size != img.size:
        lab = lab.resize(img.size, Image.NEAREST)
    a = np.asarray(lab)
    base = np.asarray(img, np.float32)
    if mode == "mask":
        colour, sel = np.broadcast_to(MASK_COLOR, base.shape), a > 127
    else:
        colour, sel = PARSE_COLORS[np.minimum(a, len(PARSE_COLORS) - 1)], a > 0
    out = base.copy()
    out[sel] = (1 - alpha) * base[sel] + alpha * colour[sel]
    return Image.fromarray(out.astype(np.uint8)), mode


def _label(sample: dict, overlay: str) -> list[str]:
    m = meta(sample)
    pid = m.get("pid", "?")
    line1 = f"id{pid} c{m.get('camid', '?')}"
    if m.get("modality") == "ir":
        line1 += " ir"
    line2 = str(m.get("clothes", "-"))
    if m.get("source") is not None:
        tool = (m.get("history") or [{}])[-1].get("tool", "gen")
        line2 = f"{line2} {tool}"
    return [line1, line2]


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_sheet(groups: list[Group], per_row: int = 8, tile=(128, 64), overlay: str = "auto",
                 alpha: float = 0.5) -> Image.Image:
    """The contact sheet. With variants, each original starts a row and its variants follow it."""
    th, tw = tile
    font_px = max(8, min(12, tw // 6))
    band = 2 * (font_px + 2) + 2
    with_variants = any(g.variants for g in groups)
    rows: list[list[tuple[dict, bool]]] = []
    if with_variants:
        for g in groups:
            tiles = [(g.head, False)] + [(v, True) for v in g.variants]
            width = max(per_row, 1 + max(len(x.variants) for x in groups))
            rows.extend(tiles[i:i + width] for i in range(0, len(tiles), width))
    else:
        flat = [(g.head, False) for g in groups]
        rows = [flat[i:i + per_row] for i in range(0, len(flat), per_row)]
    cols = max((len(r) for r in rows), default=1)
    gap = 2
    sheet = Image.new("RGB", (cols * (tw + gap) + gap, max(len(rows), 1) * (th + band + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(font_px)
    for r, row in enumerate(rows):
        for c, (sample, is_variant) in enumerate(row):
            img = image(sample)
            img = img.resize((tw, th), Image.BILINEAR) if img.size != (tw, th) else img
            img, _ = _overlay(sample, img, overlay, alpha)
            x, y = gap + c * (tw + gap), gap + r * (th + band + gap)
            sheet.paste(img, (x, y))
            if is_variant:  # a coloured bar marks generated samples
                draw.rectangle([x, y + th, x + tw - 1, y + th + 1], fill=(230, 120, 0))
            for i, text in enumerate(_label(sample, overlay)):
                while len(text) > 1 and draw.textlength(text, font=font) > tw - 2:
                    text = text[:-1]  # a narrow tile shows the start of a long label
                draw.text((x + 1, y + th + 2 + i * (font_px + 2)), text, fill=(0, 0, 0), font=font)
    return sheet
