"""Label rules -> clothing masks (255 = repaint, 0 = keep), and mask dilation.

DLCR's ID-preserving rule (LIP): keep background, hat, hair, face, both arms and both legs;
repaint everything else. The ATR default is the same rule applied to ATR's names.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from reidtools.data.labels import LABEL_SETS

# what DLCR keeps (the identity); everything else in the label set is repainted
DLCR_KEEP = ("background", "hat", "hair", "face", "left-arm", "right-arm", "left-leg", "right-leg")


class LabelError(ValueError):
    """An unknown label name or a contradictory keep/repaint request (a usage error)."""


def label_names(label_set: str) -> list[str]:
    try:
        return LABEL_SETS[label_set]
    except KeyError:
        raise LabelError(f"unknown label set {label_set!r} (known: {', '.join(LABEL_SETS)})") from None


def parse_label_list(text: str | None, label_set: str) -> list[str]:
    """'upper-clothes,pants' (names or ids) -> canonical names of `label_set`."""
    if not text:
        return []
    names = label_names(label_set)
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item.isdigit() and int(item) < len(names):
            out.append(names[int(item)])
        elif item.lower() in names:
            out.append(item.lower())
        else:
            raise LabelError(f"{item!r} is not a {label_set} label (one of: {', '.join(names)})")
    return out


def repaint_ids(label_set: str, keep: list[str] | None = None, repaint: list[str] | None = None) -> list[int]:
    """Ids to repaint: DLCR's rule, then `keep` moved to the kept side and `repaint` to the repainted."""
    names = label_names(label_set)
    keep, repaint = list(keep or []), list(repaint or [])
    both = sorted(set(keep) & set(repaint))
    if both:
        raise LabelError(f"label(s) {', '.join(both)} are both kept and repainted")
    chosen = {n for n in names if n not in DLCR_KEEP}
    chosen -= set(keep)
    chosen |= set(repaint)
    return [i for i, n in enumerate(names) if n in chosen]


def mask_from_parse(parse: np.ndarray, ids: list[int]) -> np.ndarray:
    """uint8 mask: 255 where the label is in `ids`, else 0."""
    return np.where(np.isin(parse, np.asarray(ids, dtype=parse.dtype)), 255, 0).astype(np.uint8)


def dilate(mask: np.ndarray, n: int) -> np.ndarray:
    """Grow the 255 region by `n` pixels (a (2n+1)x(2n+1) square structuring element)."""
    if n <= 0:
        return mask
    return np.asarray(Image.fromarray(mask, "L").filter(ImageFilter.MaxFilter(2 * n + 1)))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = inside); 1.0 when both are empty."""
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
