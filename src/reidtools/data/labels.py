"""Label tables shared by the synthetic generator, `reid mask` and `reid show`: data only.

Human-parsing label sets (index = label id stored in `parse.png`) and pose keypoint layouts (index =
position in json `pose.points`).
"""

# LIP (Look Into Person), 20 labels, as used by SCHP's LIP model.
LIP_LABELS = [
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks",
    "pants", "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg",
    "left-shoe", "right-shoe",
]

# ATR, 18 labels, as used by SCHP's ATR model.
ATR_LABELS = [
    "background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt",
    "left-shoe", "right-shoe", "face", "left-leg", "right-leg", "left-arm", "right-arm", "bag", "scarf",
]

LABEL_SETS = {"lip": LIP_LABELS, "atr": ATR_LABELS}

# MediaPipe Pose landmarks, in MediaPipe's order. "left"/"right" are the person's own sides.
MEDIAPIPE33 = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
]

POSE_FORMATS = {"mediapipe33": MEDIAPIPE33}
