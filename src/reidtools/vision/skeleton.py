"""Skeleton images from `pose` keypoints: the spatially aligned condition of Pose-dIVE (seed 004 §B).

Keypoints follow the sample contract: `{"format": "mediapipe33", "points": [[x, y, c], ...]}` with x, y
normalised so that pixel column = x * W - 0.5 (the pixel centre convention of `reidtools.data.synth`).
Limbs are MediaPipe's POSE_CONNECTIONS, each in its own fixed colour, so the pose guider can tell the
person's left limbs from the right ones (a front view and a back view differ only in that). A limb is
drawn when both its end points have confidence >= `threshold`, a joint when its own confidence does;
everything else stays black. Limbs are drawn first, then the joints over them.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from reidtools.data.labels import POSE_FORMATS

# MediaPipe Pose's POSE_CONNECTIONS (mediapipe/python/solutions/pose_connections.py), in its order.
MEDIAPIPE33_LIMBS = [
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
    (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31),
    (30, 32), (27, 31), (28, 32),
]
LIMBS = {"mediapipe33": MEDIAPIPE33_LIMBS}
DEFAULT_THRESHOLD = 0.3


def _palette(n: int, value: float) -> list[tuple[int, int, int]]:
    """n fully saturated colours at evenly spaced hues (hue k/n), scaled to `value`."""
    out = []
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb(k / n, 1.0, value)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def limb_colors(fmt: str = "mediapipe33") -> list[tuple[int, int, int]]:
    """Colour of limb i (hue i / n_limbs, value 1)."""
    return _palette(len(LIMBS[fmt]), 1.0)


def joint_colors(fmt: str = "mediapipe33") -> list[tuple[int, int, int]]:
    """Colour of joint k (hue k / n_joints, value 0.8: joints stay distinguishable from limbs)."""
    return _palette(len(POSE_FORMATS[fmt]), 0.8)


def default_width(height: int) -> int:
    """Limb width and joint radius in pixels: 1 per 128 rows of image (4 px at 512 rows)."""
    return max(1, round(height / 128))


def render_skeleton(pose: dict, size: tuple[int, int], *, threshold: float = DEFAULT_THRESHOLD,
                    width: int | None = None, radius: int | None = None) -> Image.Image:
    """An RGB skeleton image of `size` = (H, W) on black."""
    fmt = str(pose.get("format", ""))
    if fmt not in LIMBS:
        raise ValueError(f"pose format {fmt!r} has no skeleton (known: {', '.join(LIMBS)})")
    pts = np.asarray(pose["points"], dtype=np.float64).reshape(-1, 3)
    n = len(POSE_FORMATS[fmt])
    if len(pts) != n:
        raise ValueError(f"a {fmt} pose has {n} points, got {len(pts)}")
    h, w = size
    width = default_width(h) if width is None else width
    radius = default_width(h) if radius is None else radius
    px = np.stack([pts[:, 0] * w - 0.5, pts[:, 1] * h - 0.5], axis=1)
    ok = pts[:, 2] >= threshold
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    for (a, b), color in zip(LIMBS[fmt], limb_colors(fmt)):
        if ok[a] and ok[b]:
            draw.line([tuple(px[a]), tuple(px[b])], fill=color, width=width)
    for k, color in enumerate(joint_colors(fmt)):
        if ok[k]:
            x, y = px[k]
            if radius <= 0:
                draw.point((x, y), fill=color)
            else:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
    return img
