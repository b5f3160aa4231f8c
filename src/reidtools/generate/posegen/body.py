"""The built-in parametric body of `reid posegen poses`: MediaPipe-33 joints in 3D, bone lengths from
anthropometric proportions scaled by a few shape parameters, and the capsules/ellipsoids that
`reidtools.generate.posegen.render` intersects per pixel.

Body frame (used by `body.joints` in target json and by `--poses FILE` banks): x = the person's
left, y = up, z = the person's forward (the way the chest faces); right-handed; unit = body height;
origin = the mid-hip point (the root).

Proportions are fractions of body height after Drillis & Contini (1966) as drawn in Winter,
*Biomechanics and Motor Control of Human Movement* (Fig. 4.1): shoulder width 0.259, hip width 0.191,
upper arm 0.186, forearm 0.146, hand 0.108, thigh 0.245, shank 0.246, ankle height 0.039, foot
length 0.152; shoulder height 0.818 and hip height 0.530 give the torso (0.288); eye height 0.936
places the head centre. Radii are not in that table: they are chosen so the rendered silhouette of
the mean body has a person's build (chest depth 0.14, thigh diameter 0.10, upper arm 0.06).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reidtools.data.labels import MEDIAPIPE33

J = {name: i for i, name in enumerate(MEDIAPIPE33)}
N_JOINTS = len(MEDIAPIPE33)

SHOULDER_WIDTH = 0.259
HIP_WIDTH = 0.191
TORSO = 0.288                # shoulder height 0.818 - hip height 0.530
UPPER_ARM, FOREARM, HAND = 0.186, 0.146, 0.108
THIGH, SHANK = 0.245, 0.246
NECK_TO_HEAD = 0.118         # head centre (~eye height 0.936) above the shoulder line (0.818)
HEAD_RADIUS = 0.065

# Face points relative to the head centre, in head radii (x left, y up, z forward); the head is a
# rigid sphere facing the torso's way.
FACE = {
    "nose": (0.0, -0.25, 1.0),
    "left_eye_inner": (0.18, 0.05, 0.93), "left_eye": (0.35, 0.05, 0.88), "left_eye_outer": (0.52, 0.05, 0.8),
    "right_eye_inner": (-0.18, 0.05, 0.93), "right_eye": (-0.35, 0.05, 0.88), "right_eye_outer": (-0.52, 0.05, 0.8),
    "left_ear": (0.97, 0.0, -0.05), "right_ear": (-0.97, 0.0, -0.05),
    "mouth_left": (0.25, -0.55, 0.8), "mouth_right": (-0.25, -0.55, 0.8),
}

# Limb bones (parent, child, length in body heights, scaled by shape parameter, preferred forward
# sign in the body frame). The preferred sign is the lifting prior for the depth ambiguity of
# Taylor's rule: elbows and hips flex forward, knees flex so the ankle goes back, feet point forward.
LIMBS = []
for _s in ("left", "right"):
    LIMBS += [
        (f"{_s}_shoulder", f"{_s}_elbow", UPPER_ARM, "arm", +1),
        (f"{_s}_elbow", f"{_s}_wrist", FOREARM, "arm", +1),
        (f"{_s}_wrist", f"{_s}_pinky", 0.75 * HAND, "arm", +1),
        (f"{_s}_wrist", f"{_s}_index", 0.75 * HAND, "arm", +1),
        (f"{_s}_wrist", f"{_s}_thumb", 0.5 * HAND, "arm", +1),
        (f"{_s}_hip", f"{_s}_knee", THIGH, "leg", +1),
        (f"{_s}_knee", f"{_s}_ankle", SHANK, "leg", -1),
        (f"{_s}_ankle", f"{_s}_heel", 0.05, "foot", -1),
        (f"{_s}_ankle", f"{_s}_foot_index", 0.125, "foot", +1),
    ]


@dataclass
class BodyShape:
    """Multipliers of the mean proportions (1 = mean body)."""

    shoulder: float = 1.0   # shoulder width
    hip: float = 1.0        # hip width
    arm: float = 1.0        # upper arm, forearm, hand
    leg: float = 1.0        # thigh, shank
    girth: float = 1.0      # every radius
    head: float = 1.0       # head radius (and the face on it)

    def to_json(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}

    @classmethod
    def sample(cls, r: np.random.Generator, spread: float = 0.05) -> "BodyShape":
        """Independent N(1, spread) multipliers (girth 2x spread: builds vary more than bones),
        clipped to [1 - 3 spread, 1 + 3 spread]."""
        vals = {}
        for k in ("shoulder", "hip", "arm", "leg", "girth", "head"):
            sd = spread * (2 if k == "girth" else 1)
            vals[k] = float(np.clip(r.normal(1.0, sd), 1 - 3 * sd, 1 + 3 * sd))
        return cls(**vals)


def shape_factor(shape: BodyShape, part: str) -> float:
    return {"arm": shape.arm, "leg": shape.leg, "foot": 1.0}[part]


def face_offset(name: str, head: float = 1.0) -> np.ndarray:
    return np.asarray(FACE[name], dtype=np.float64) * HEAD_RADIUS * head


def retarget(joints: np.ndarray, shape: BodyShape) -> np.ndarray:
    """Body-frame joints (33, 3) of the mean body -> the same pose with `shape`'s proportions: every
    bone keeps its direction and takes its new length, from the root outwards."""
    j = np.asarray(joints, dtype=np.float64)
    out = j.copy()
    for s in ("left", "right"):
        h, sh = J[f"{s}_hip"], J[f"{s}_shoulder"]
        out[h] = j[h] * shape.hip                               # root -> hip: pelvis width
        out[sh] = j[sh] * np.array([shape.shoulder, 1.0, 1.0])  # root -> shoulder: only the width
    for parent, child, _, part, _ in LIMBS:
        p, c = J[parent], J[child]
        out[c] = out[p] + (j[c] - j[p]) * shape_factor(shape, part)
    neck_old = (j[J["left_shoulder"]] + j[J["right_shoulder"]]) / 2
    neck_new = (out[J["left_shoulder"]] + out[J["right_shoulder"]]) / 2
    centre_old = head_centre(j)
    centre_new = neck_new + (centre_old - neck_old)
    for name in FACE:
        k = J[name]
        out[k] = centre_new + (j[k] - centre_old) * shape.head
    return out


def head_centre(joints: np.ndarray) -> np.ndarray:
    """The head sphere's centre: the mid-ear point (ears sit on the sphere's equator, FACE)."""
    return (joints[J["left_ear"]] + joints[J["right_ear"]]) / 2 - np.array([0, 0, FACE["left_ear"][2] * HEAD_RADIUS])


def mean_body() -> np.ndarray:
    """The mean body standing upright, arms hanging, facing +z: body-frame joints (33, 3)."""
    j = np.zeros((N_JOINTS, 3))
    for s, side in (("left", 1.0), ("right", -1.0)):
        j[J[f"{s}_hip"]] = (side * HIP_WIDTH / 2, 0, 0)
        j[J[f"{s}_shoulder"]] = (side * SHOULDER_WIDTH / 2, TORSO, 0)
        j[J[f"{s}_elbow"]] = j[J[f"{s}_shoulder"]] - (0, UPPER_ARM, 0)
        j[J[f"{s}_wrist"]] = j[J[f"{s}_elbow"]] - (0, FOREARM, 0)
        for f, d in (("pinky", 0.75), ("index", 0.75), ("thumb", 0.5)):
            j[J[f"{s}_{f}"]] = j[J[f"{s}_wrist"]] - (0, d * HAND, 0)
        j[J[f"{s}_knee"]] = j[J[f"{s}_hip"]] - (0, THIGH, 0)
        j[J[f"{s}_ankle"]] = j[J[f"{s}_knee"]] - (0, SHANK, 0)
        j[J[f"{s}_heel"]] = j[J[f"{s}_ankle"]] + (0, -0.035, -0.0357)
        j[J[f"{s}_foot_index"]] = j[J[f"{s}_ankle"]] + (0, -0.035, 0.12)
    centre = np.array([0.0, TORSO + NECK_TO_HEAD, 0.0])
    for name in FACE:
        j[J[name]] = centre + face_offset(name)
    return j


# ----------------------------------------------------------------------------- primitives
# (joint a, joint b, radius in body heights); a == b is a sphere
CAPSULES = []
for _s in ("left", "right"):
    CAPSULES += [
        (f"{_s}_shoulder", f"{_s}_elbow", 0.030), (f"{_s}_elbow", f"{_s}_wrist", 0.025),
        (f"{_s}_wrist", f"{_s}_index", 0.020),
        (f"{_s}_hip", f"{_s}_knee", 0.050), (f"{_s}_knee", f"{_s}_ankle", 0.036),
        (f"{_s}_heel", f"{_s}_foot_index", 0.022),
    ]


def primitives(joints: np.ndarray, shape: BodyShape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Capsules and ellipsoids of a body-frame pose.

    Returns (caps (P, 2, 3) end points, caps_r (P,), ells (E, 4, 3) = centre + 3 semi-axis vectors,
    i.e. rows = axis direction x semi-axis length). The neck and head are capsules (the head one of
    zero length, a sphere); chest and pelvis are ellipsoids oriented by the shoulder and hip lines.
    """
    j = np.asarray(joints, dtype=np.float64)
    g = shape.girth
    caps, radii = [], []
    for a, b, r in CAPSULES:
        caps.append((j[J[a]], j[J[b]]))
        radii.append(r * g)
    neck = (j[J["left_shoulder"]] + j[J["right_shoulder"]]) / 2
    centre = head_centre(j)
    caps.append((neck, centre))
    radii.append(0.025 * g)
    caps.append((centre, centre))
    radii.append(HEAD_RADIUS * shape.head)
    pelvis = (j[J["left_hip"]] + j[J["right_hip"]]) / 2
    up = neck - pelvis
    torso_len = float(np.linalg.norm(up)) or TORSO
    up = up / torso_len
    lateral = (j[J["left_shoulder"]] - j[J["right_shoulder"]]) + (j[J["left_hip"]] - j[J["right_hip"]])
    lateral = lateral - up * float(lateral @ up)
    n = float(np.linalg.norm(lateral))
    if n < 1e-9:   # degenerate bank pose (all torso points on one line): face +z
        lateral = np.cross(up, [0.0, 0.0, 1.0])
        n = float(np.linalg.norm(lateral)) or 1.0
    lateral = lateral / n
    forward = np.cross(lateral, up)
    sw = float(np.linalg.norm(j[J["left_shoulder"]] - j[J["right_shoulder"]]))
    hw = float(np.linalg.norm(j[J["left_hip"]] - j[J["right_hip"]]))
    chest_c = pelvis + up * 0.68 * torso_len
    pelvis_c = pelvis + up * 0.12 * torso_len
    ells = [
        np.stack([chest_c, lateral * (0.5 * sw - 0.005), up * 0.42 * torso_len, forward * 0.07 * g]),
        np.stack([pelvis_c, lateral * (0.5 * hw + 0.035 * g), up * 0.30 * torso_len, forward * 0.07 * g]),
    ]
    return np.asarray(caps), np.asarray(radii), np.asarray(ells)


def joint_radius(shape: BodyShape) -> np.ndarray:
    """Per keypoint, how far inside the surface its 3D point may lie and still count as visible:
    the radius of the thickest primitive it belongs to (face points lie on the head sphere)."""
    r = np.full(N_JOINTS, 0.02)
    for a, b, rad in CAPSULES:
        for k in (J[a], J[b]):
            r[k] = max(r[k], rad * shape.girth)
    for name in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"):
        r[J[name]] = max(r[J[name]], 0.07 * shape.girth)
    return r
