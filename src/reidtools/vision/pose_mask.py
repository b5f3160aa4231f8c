"""A model-free clothing mask from body keypoints and a person silhouette (the `pose` mask engine).

Repaint region = (torso polygon from shoulders and hips, widened) + (thick hip-knee-ankle limbs) +
(ankle-heel-toe feet), intersected with the person mask. It cannot tell skin from cloth, so it
approximates DLCR's rule by the body parts clothes usually cover (torso, legs, feet); the head and
the arms beyond the elbows stay.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reidtools.data.labels import MEDIAPIPE33

_I = {n: i for i, n in enumerate(MEDIAPIPE33)}


def pose_mask(points, person: np.ndarray, min_conf: float = 0.0, widen: float = 0.25,
              limb_width: float = 0.45) -> np.ndarray:
    """uint8 mask (255 = repaint). `points`: MediaPipe-33 [[x, y, c], ...] normalised; `person`: HxW,
    nonzero = person. Sizes are relative to the shoulder width (or hip width when larger)."""
    h, w = person.shape
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    xy = p[:, :2] * [w, h]
    ok = p[:, 2] >= min_conf
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    ls, rs, lh, rh = (_I[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    body = max(np.linalg.norm(xy[ls] - xy[rs]), np.linalg.norm(xy[lh] - xy[rh]), 2.0)
    if ok[[ls, rs, lh, rh]].all():
        quad = np.array([xy[ls], xy[rs], xy[rh], xy[lh]])
        centre = quad.mean(0)
        quad = centre + (quad - centre) * (1 + widen)
        draw.polygon([tuple(q) for q in quad], fill=255)
    width = max(int(round(body * limb_width)), 1)
    for side in ("left", "right"):
        for chain in (("hip", "knee", "ankle"), ("ankle", "heel", "foot_index")):
            idx = [_I[f"{side}_{j}"] for j in chain]
            for a, b in zip(idx, idx[1:]):
                if ok[a] and ok[b]:
                    draw.line([tuple(xy[a]), tuple(xy[b])], fill=255, width=width)
                    r = width / 2
                    for q in (xy[a], xy[b]):
                        draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=255)
    out = np.asarray(canvas)
    return np.where((out > 0) & (person > 0), 255, 0).astype(np.uint8)
