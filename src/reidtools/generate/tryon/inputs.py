"""What `reid tryon` feeds IDM-VTON besides the person: the repaint mask and the pose image.

Mask. IDM-VTON's demo (`gradio_demo/utils_mask.py`, `get_mask_location("hd", "upper_body", ...)`)
repaints the upper clothes and dress of its parser plus both arms, drawn from OpenPose keypoints as a
shoulder-elbow-wrist polyline of width 60/512 of the image height, with the wrist pushed 1.2x further
from the elbow (so the sleeves can change length). `garment_region` takes the clothing region from
`mask.png` (`reid mask`) or else from a LIP `parse.png` (upper-clothes 5, dress 6, coat 7), and
`add_arms` draws the same arm polylines from the sample's `pose` keypoints (MediaPipe ids 11-16).
Simplified against the original: no hole filling, no largest-contour clean-up, and no subtraction of
hands / lower clothes (the original keeps those; here the polyline may cover part of a hand).

Pose image. IDM-VTON conditions on a DensePose rendering (detectron2 `dp_segm`, not redistributable
here). A sample carrying a `densepose.png` field (user-computed) is used as is; otherwise the pose
image is a rendered skeleton of the `pose` keypoints (`reidtools.vision.skeleton`) — a deviation:
the published weights were trained on DensePose images, so expect lower fidelity with skeletons.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

TOPS = (5, 6, 7)  # LIP upper-clothes, dress, coat
ARM_WIDTH = 60 / 512   # of the image height (IDM-VTON "hd")
WRIST_EXTEND = 1.2
# MediaPipe33 ids: (shoulder, elbow, wrist) per side
ARMS = ((11, 13, 15), (12, 14, 16))
MIN_CONFIDENCE = 0.3


def garment_region(mask: Image.Image | None, parse: Image.Image | None) -> np.ndarray:
    """bool (H, W): the clothing to repaint, from mask.png (>= 128) or else a LIP parse map."""
    if mask is not None:
        return np.asarray(mask.convert("L")) >= 128
    if parse is None:
        raise ValueError("need mask.png or a LIP parse.png")
    return np.isin(np.asarray(parse), TOPS)


def add_arms(region: np.ndarray, pose: dict | None, threshold: float = MIN_CONFIDENCE) -> np.ndarray:
    """`region` plus IDM-VTON's arm polylines from `pose` (normalised mediapipe33 keypoints).

    An arm is drawn only when its shoulder, elbow and wrist all have confidence >= threshold."""
    if not pose or pose.get("format") != "mediapipe33":
        return region
    pts = np.asarray(pose["points"], dtype=np.float64).reshape(-1, 3)
    h, w = region.shape
    width = max(1, int(ARM_WIDTH * h))
    canvas = Image.new("L", (w, h))
    draw = ImageDraw.Draw(canvas)
    for s, e, wr in ARMS:
        if min(pts[s, 2], pts[e, 2], pts[wr, 2]) < threshold:
            continue
        xy = pts[:, :2] * (w, h) - 0.5
        wrist = xy[e] + WRIST_EXTEND * (xy[wr] - xy[e])
        draw.line([tuple(xy[s]), tuple(xy[e]), tuple(wrist)], fill=255, width=width, joint="curve")
        r = width / 2
        draw.ellipse([xy[s][0] - r, xy[s][1] - r, xy[s][0] + r, xy[s][1] + r], fill=255)
    return region | (np.asarray(canvas) >= 128)


def to_mask_image(region: np.ndarray) -> Image.Image:
    return Image.fromarray(region.astype(np.uint8) * 255, "L")


def pose_image(densepose: Image.Image | None, pose: dict | None, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """(RGB pose image of `size` = (H, W), its kind: "densepose" or "skeleton")."""
    h, w = size
    if densepose is not None:
        return densepose.convert("RGB").resize((w, h), Image.NEAREST), "densepose"
    if pose is None:
        raise ValueError("need a densepose.png field or `pose` keypoints")
    from reidtools.vision.skeleton import render_skeleton

    return render_skeleton(pose, (h, w)), "skeleton"
