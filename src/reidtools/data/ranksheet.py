"""Ranked-list sheets (`reid show --ranks`): one row per query, the query then its top-k gallery
items, each framed by its mark -- green good, red wrong, grey junk -- as torchreid's
`visualize_ranked_results` draws them (which leaves junk out; here it stays, greyed, because in
clothes-changing protocols the junk is exactly what a user wants to see: same-clothes matches)."""

from __future__ import annotations

from typing import Iterable

from PIL import Image, ImageDraw

from reidtools.data.sheet import _font
from reidtools.errors import ReidError
from reidtools.shards import image, iter_samples

FRAME = {"good": (0, 170, 0), "wrong": (220, 0, 0), "junk": (150, 150, 150), "query": (0, 0, 0)}


def needed(queries: list[dict]) -> set[tuple[str, str]]:
    """(shard, key) of every image the rows draw."""
    out = set()
    for q in queries:
        out.add((q["shard"], q["key"]))
        out.update((e["shard"], e["key"]) for e in q["top"])
    return out


def load_images(want: set[tuple[str, str]], inputs: Iterable[str] | None, ranks_path: str) -> dict:
    """{(shard, key): PIL image}. With `inputs` the images are looked up by key in those shards
    (the ranks file may name feature-only shards, or shards since moved); otherwise each recorded
    shard is read. One streaming pass; only wanted samples are decoded."""
    found: dict[tuple[str, str], Image.Image] = {}
    if inputs is not None:
        by_key: dict[str, list[tuple[str, str]]] = {}
        for shard, key in want:
            by_key.setdefault(key, []).append((shard, key))
        for sample in iter_samples(list(inputs)):
            for slot in by_key.get(sample["__key__"], ()):
                if slot not in found:
                    found[slot] = _image(sample)
    else:
        shards = sorted({s for s, _ in want})
        if "-" in shards:
            raise ReidError(f"{ranks_path}: its samples came from stdin; pass the image shards as INPUTS")
        for sample in iter_samples(shards):
            slot = (sample["__shard__"], sample["__key__"])
            if slot in want and slot not in found:
                found[slot] = _image(sample)
    missing = sorted(want - set(found))
    if missing:
        shard, key = missing[0]
        where = "the INPUTS" if inputs is not None else shard
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ReidError(f"{where}: no sample with key {key!r}{more}, named in {ranks_path}")
    return found


def _image(sample: dict) -> Image.Image:
    if not any(f in sample for f in ("jpg", "png", "jpeg")):
        raise ReidError(f"{sample['__shard__']}: {sample['__key__']}: no image (a feature-only shard? "
                        "pass the image shards as INPUTS)")
    return image(sample)


def _meta_lines(e: dict) -> list[str]:
    lines = [f"id{e.get('pid', '?')} c{e.get('camid', '?')}"]
    return lines + [str(e["clothes"])] if e.get("clothes") is not None else lines + [""]


def render_ranks(queries: list[dict], images: dict, tile=(128, 64)) -> Image.Image:
    """The sheet: per row the query (black frame, its AP) and its top-k (rank, distance, ids)."""
    th, tw = tile
    k = max((len(q["top"]) for q in queries), default=0)
    font_px = max(8, min(12, tw // 6))
    band = 4 * (font_px + 2) + 2
    border, gap, sep = 3, 3, 12                     # frame width, tile gap, query/gallery gap
    cell_w, cell_h = tw + 2 * border, th + 2 * border + band
    width = gap + cell_w + sep + k * (cell_w + gap)
    sheet = Image.new("RGB", (width, gap + len(queries) * (cell_h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(font_px)

    def cell(x, y, img, colour, lines):
        draw.rectangle([x, y, x + cell_w - 1, y + th + 2 * border - 1], fill=colour)
        img = img.resize((tw, th), Image.BILINEAR) if img.size != (tw, th) else img
        sheet.paste(img, (x + border, y + border))
        for i, text in enumerate(lines):
            while len(text) > 1 and draw.textlength(text, font=font) > cell_w - 2:
                text = text[:-1]
            draw.text((x + 1, y + th + 2 * border + 1 + i * (font_px + 2)), text, fill=(0, 0, 0), font=font)

    for r, q in enumerate(queries):
        y = gap + r * (cell_h + gap)
        ap = "AP -" if q.get("ap") is None else f"AP {100 * q['ap']:.1f}"
        first = q.get("first_good_rank")
        cell(gap, y, images[(q["shard"], q["key"])], FRAME["query"],
             ["query", *_meta_lines(q), ap + (f" 1st {first}" if first else "")])
        for c, e in enumerate(q["top"]):
            x = gap + cell_w + sep + c * (cell_w + gap)
            rank = "junk" if e.get("rank") is None else f"#{e['rank']}"
            dist = "" if e.get("distance") is None else f" d{e['distance']:.3f}"
            cell(x, y, images[(e["shard"], e["key"])], FRAME[e["mark"]], [rank + dist, *_meta_lines(e), e["mark"]])
    return sheet
