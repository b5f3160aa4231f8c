"""2D -> 3D lifting of dataset poses, and the camera that re-projects them under a new viewpoint.

Camera (orthographic, as for a person crop seen from afar): azimuth a and elevation e in degrees.
a = 0 sees the person from the front, a = 90 from the person's left side, a = 180 from behind;
e > 0 looks down from above. In body coordinates (see `body`), the camera's image-right axis is
R = (cos a, 0, -sin a), its viewing direction d = -(sin a cos e, sin e, cos a cos e), image-up
U = R x d. A body point p is at image (X, Y_down) = (p.R, -p.U) and depth Z = p.d (larger = farther).

Lifting (`lift`) keeps every keypoint's image position exactly and adds a depth, under these priors:

1. Scaled orthographic projection and the mean body's bone lengths (`body`): a bone of length L
   whose image length is l has depth difference |dz| = sqrt((sL)^2 - l^2) (Taylor, "Reconstruction
   of articulated objects from point correspondences in a single uncalibrated image", CVIU 2000).
   The scale s (pixels per body height) is the median of l/L over the torso and the two legs (Taylor
   takes the largest, which no bone can exceed, but one long chain then inflates every depth); a
   bone that looks longer than sL gets dz = 0.
2. An upright torso and an elevation of 0: the torso's azimuth comes from the image width of the
   shoulder and hip lines against their true widths, |cos a| = width_image / (s width); cos a > 0
   when the person's left shoulder is right of the right one (a frontal view), < 0 from behind. The
   side (sign of sin a) comes from where the nose points (forward), else from which side's
   keypoints are more confident (the far side is self-occluded).
3. The sign of each limb bone's depth (Taylor's ambiguity) is the one whose body-frame direction
   agrees with the bone's anatomical preference (`body.LIMBS`: elbows and hips flex forward, knees
   backward), with a small preference for limbs pointing away from the body's midline.
4. The head is a rigid sphere facing the torso's way.

Where it fails (also in docs/posegen.md): bent or twisted torsos (prior 2), a head turned away from
the chest (prior 4), arms reaching behind the back or legs crossing the midline (prior 3), steep
camera elevations (the torso looks short: s is then taken from the legs, azimuth from widths still
holds), children and unusual proportions (prior 1), and noisy keypoints, which turn into depth
errors of the order of the keypoint noise divided by the bone's foreshortening.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidtools.generate.posegen import body as B

J = B.J


def camera_axes(azimuth: float, elevation: float = 0.0) -> np.ndarray:
    """Rows R, U, d (3, 3) in body coordinates for an azimuth/elevation in degrees."""
    a, e = np.radians(azimuth), np.radians(elevation)
    right = np.array([np.cos(a), 0.0, -np.sin(a)])
    d = -np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    up = np.cross(right, d)
    return np.stack([right, up, d])


def to_camera(joints: np.ndarray, azimuth: float, elevation: float = 0.0) -> np.ndarray:
    """Body-frame points (N, 3) -> camera (X right, Y down, Z depth) in body heights, origin = root."""
    cam = np.asarray(joints, dtype=np.float64) @ camera_axes(azimuth, elevation).T
    cam[:, 1] *= -1.0
    return cam


def to_body(cam: np.ndarray, azimuth: float, elevation: float = 0.0) -> np.ndarray:
    """Inverse of `to_camera`."""
    c = np.asarray(cam, dtype=np.float64).copy()
    c[:, 1] *= -1.0
    return c @ camera_axes(azimuth, elevation)


@dataclass
class Lifted:
    joints: np.ndarray        # (33, 3) body frame, body heights, root at the origin
    azimuth: float            # the source view's azimuth (degrees, [0, 360))
    scale: float              # source pixels per body height
    root: tuple               # the root's normalised (x, y) in the source image
    size: tuple               # the source image's (H, W)
    conf: np.ndarray          # (33,) the source keypoints' confidences


def _pixels(pose: dict, size) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    p = np.asarray(pose["points"], dtype=np.float64).reshape(-1, 3)
    if len(p) != B.N_JOINTS:
        raise ValueError(f"a mediapipe33 pose has {B.N_JOINTS} points, got {len(p)}")
    return np.stack([p[:, 0] * w, p[:, 1] * h], axis=1), p[:, 2]


def _mid(uv, a, b):
    return (uv[J[a]] + uv[J[b]]) / 2


def lift(pose: dict, size, *, min_conf: float = 0.3) -> Lifted:
    """A `pose` (contract format, mediapipe33) of an image of `size` (H, W) -> a 3D body."""
    if str(pose.get("format")) != "mediapipe33":
        raise ValueError(f"lifting needs mediapipe33 keypoints, got format {pose.get('format')!r}")
    uv, conf = _pixels(pose, size)
    hip, sho = _mid(uv, "left_hip", "right_hip"), _mid(uv, "left_shoulder", "right_shoulder")
    ratios = [np.linalg.norm(sho - hip) / B.TORSO]
    for s in ("left", "right"):
        chain = [J[f"{s}_hip"], J[f"{s}_knee"], J[f"{s}_ankle"]]
        if min(conf[chain]) >= min_conf:
            ratios.append((np.linalg.norm(uv[chain[1]] - uv[chain[0]]) + np.linalg.norm(uv[chain[2]] - uv[chain[1]]))
                          / (B.THIGH + B.SHANK))
    # the median, not Taylor's max: one chain with longer-than-mean proportions (or a noisy keypoint)
    # would otherwise inflate s, and |dz| = sqrt((sL)^2 - l^2) grows fast with it (5% -> 0.32 L)
    scale = float(np.median(ratios))
    if not np.isfinite(scale) or scale <= 1e-6:
        raise ValueError("the pose has no torso or leg of non-zero length to scale by")

    # prior 2: the torso's azimuth
    d_sh = (uv[J["left_shoulder"], 0] - uv[J["right_shoulder"], 0]) / (scale * B.SHOULDER_WIDTH)
    d_hp = (uv[J["left_hip"], 0] - uv[J["right_hip"], 0]) / (scale * B.HIP_WIDTH)
    cos_a = float(np.clip((B.SHOULDER_WIDTH * d_sh + B.HIP_WIDTH * d_hp) / (B.SHOULDER_WIDTH + B.HIP_WIDTH), -1, 1))
    nose_dx = (uv[J["nose"], 0] - sho[0]) / (scale * B.HEAD_RADIUS)
    left = [J[n] for n in B.MEDIAPIPE33 if n.startswith("left_")]
    right = [J[n] for n in B.MEDIAPIPE33 if n.startswith("right_")]
    side_conf = float(conf[left].mean() - conf[right].mean())
    # the nose is forward: its image x moves by -sin(a) * forward offset; confident side = near side
    cue = -nose_dx if conf[J["nose"]] >= min_conf and abs(nose_dx) > 0.25 else side_conf
    sin_a = float(np.sqrt(max(0.0, 1.0 - cos_a ** 2))) * (1.0 if cue >= 0 else -1.0)
    azimuth = float(np.degrees(np.arctan2(sin_a, cos_a)) % 360.0)
    axes = camera_axes(azimuth)                      # rows R, U, d

    # camera-frame (X, Y_down) in body heights around the root; depth Z to fill in
    cam = np.zeros((B.N_JOINTS, 3))
    cam[:, :2] = (uv - hip) / scale
    for s, side in (("left", 1.0), ("right", -1.0)):
        for name, width in (("hip", B.HIP_WIDTH), ("shoulder", B.SHOULDER_WIDTH)):
            lateral = np.array([side * width / 2, 0.0, 0.0])
            cam[J[f"{s}_{name}"], 2] = lateral @ axes[2]
    # prior 3: limb bones, parents first (LIMBS is in that order)
    for parent, child, length, _, forward in B.LIMBS:
        p, c = J[parent], J[child]
        l2 = float(np.sum((cam[c, :2] - cam[p, :2]) ** 2))
        dz = float(np.sqrt(max(0.0, length ** 2 - l2)))
        side = 1.0 if child.startswith("left_") else -1.0
        best, best_score = None, -np.inf
        for sign in (1.0, -1.0):
            v = np.array([cam[c, 0] - cam[p, 0], -(cam[c, 1] - cam[p, 1]), sign * dz])  # (X, Y_up, Z)
            vb = v @ axes                            # body frame: x left, y up, z forward
            score = forward * vb[2] + 0.5 * side * vb[0]
            if score > best_score + 1e-12:
                best, best_score = sign, score
        cam[c, 2] = cam[p, 2] + best * dz
    # prior 4: a rigid head facing the torso's way, its centre above the mid-shoulder point
    neck_z = (cam[J["left_shoulder"], 2] + cam[J["right_shoulder"], 2]) / 2
    for name in B.FACE:
        cam[J[name], 2] = neck_z + B.face_offset(name) @ axes[2]
    joints = to_body(cam, azimuth)
    h, w = size
    return Lifted(joints, azimuth, scale, (hip[0] / w, hip[1] / h), tuple(size), conf)


def frame_source(lifted: Lifted, size) -> tuple[float, float, float]:
    """(pixels per body height, root u, root v) that put the body where the source image had it,
    scaled by the target's height (normalised x, y are kept when the aspect ratio is the same)."""
    h, w = size
    return lifted.scale * h / lifted.size[0], lifted.root[0] * w, lifted.root[1] * h


def frame_fit(cam: np.ndarray, radius: float, size, fill: float = 0.9) -> tuple[float, float, float]:
    """(pixels per body height, root u, root v) that centre the projected body (camera-frame points
    and a margin `radius`) in `size` and make it fill `fill` of the height (or of the width)."""
    h, w = size
    lo, hi = cam[:, :2].min(axis=0) - radius, cam[:, :2].max(axis=0) + radius
    ext = np.maximum(hi - lo, 1e-6)
    s = float(min(fill * h / ext[1], fill * w / ext[0]))
    mid = (lo + hi) / 2
    return s, w / 2 - s * mid[0], h / 2 - s * mid[1]


def project(joints: np.ndarray, azimuth: float, elevation: float, frame) -> np.ndarray:
    """Body-frame joints -> (N, 3) pixel u, v (pixel-centre convention: u = x * W) and depth (pixels)."""
    s, u0, v0 = frame
    cam = to_camera(joints, azimuth, elevation)
    return np.stack([u0 + s * cam[:, 0], v0 + s * cam[:, 1], s * cam[:, 2]], axis=1)
