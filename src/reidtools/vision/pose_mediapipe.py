"""MediaPipe Pose (legacy `solutions` API of mediapipe 0.10.21, the `pose` extra): 33 landmarks with
visibility, and the person segmentation mask the same model predicts.

Only model_complexity=1 is bundled in the wheel (0 and 2 download their model on first use, which
fails offline). Landmarks are already normalised to [0, 1] by image width/height, the convention of
every `pose` in reidtools; confidence = MediaPipe's `visibility`.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
INSTALL = "install the pose extra: pip install 'reidtools[pose]'"


def import_mediapipe():
    try:
        import mediapipe as mp  # noqa: F401
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise ReidError(f"MediaPipe is not installed ({exc}); {INSTALL}") from None
    return mp_pose


class MediaPipePose:
    """`__call__(image) -> (pose dict, person mask uint8 0/255 or None)`."""

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5, segmentation: bool = True):
        mp_pose = import_mediapipe()
        self.segmentation = segmentation
        self.pose = mp_pose.Pose(static_image_mode=True, model_complexity=model_complexity,
                                 enable_segmentation=segmentation,
                                 min_detection_confidence=min_detection_confidence)
        log.info("pose: MediaPipe Pose (model_complexity=%d)", model_complexity)

    def __call__(self, img: Image.Image) -> tuple[dict, np.ndarray | None]:
        rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
        res = self.pose.process(rgb)
        if res.pose_landmarks is None:
            points = [[0.0, 0.0, 0.0]] * 33
            pose = {"format": "mediapipe33", "points": points, "detected": False}
            return pose, (np.zeros(rgb.shape[:2], np.uint8) if self.segmentation else None)
        points = [[round(float(p.x), 5), round(float(p.y), 5), round(float(p.visibility), 4)]
                  for p in res.pose_landmarks.landmark]
        person = None
        if self.segmentation and res.segmentation_mask is not None:
            person = np.where(np.asarray(res.segmentation_mask) > 0.5, 255, 0).astype(np.uint8)
        return {"format": "mediapipe33", "points": points, "detected": True}, person

    def close(self) -> None:
        self.pose.close()
