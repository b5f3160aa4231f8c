"""Camera- and pose-biased splits (Pose-dIVE §A: MSMT17-S (Cam) and MSMT17-S (Pose)).

The paper trains on images from a set of camera viewpoints (or a range of poses) and tests on the
remaining ones, so that no test camera/pose was seen in training. It lists neither the cameras nor
the pose ranges, so both are parameters here:

- `by="camera"`: a sample's value is its `camid`; default training cameras = the lower half of the
  dataset's sorted camera ids (our choice, documented in docs/posegen.md).
- `by="pose"`: a sample's value is the body orientation estimated from its `pose` keypoints
  (`orientation`): front, back or side; default training orientations = front.

`split_samples` keeps `train` samples whose value is a training value and `query`/`gallery` (and
`val`) samples whose value is not, so train and test are disjoint in that value (identities are
already disjoint between the published train and test splits). Samples with no value (no pose, or an
undecidable one) are dropped and counted.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from reidtools.data.labels import MEDIAPIPE33
from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
ORIENTATIONS = ("front", "back", "side")
_LS, _RS, _LH, _RH = (MEDIAPIPE33.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))


def orientation(pose: dict | None, side_ratio: float = 0.35, min_conf: float = 0.2) -> str | None:
    """front / back / side from MediaPipe-33 keypoints, or None when the torso is not visible.

    The person's left shoulder appears on the image's right (larger x) when they face the camera and
    on the left from behind. `side` when the shoulder width |x_ls - x_rs| is below `side_ratio` times
    the torso length (shoulder midpoint to hip midpoint), i.e. the shoulders are seen edge-on.
    """
    if not pose or pose.get("format") != "mediapipe33":
        return None
    p = np.asarray(pose.get("points") or [], dtype=np.float64).reshape(-1, 3)
    if len(p) != len(MEDIAPIPE33) or min(p[_LS, 2], p[_RS, 2], p[_LH, 2], p[_RH, 2]) < min_conf:
        return None
    torso = float(np.hypot(*((p[_LS, :2] + p[_RS, :2]) / 2 - (p[_LH, :2] + p[_RH, :2]) / 2)))
    dx = float(p[_LS, 0] - p[_RS, 0])
    if torso <= 0:
        return None
    if abs(dx) < side_ratio * torso:
        return "side"
    return "front" if dx > 0 else "back"


def value_of(meta: dict, by: str, **kw):
    if by == "camera":
        return meta.get("camid")
    if by == "pose":
        return orientation(meta.get("pose"), **kw)
    raise ReidError(f"--by {by!r} is not camera or pose")


def default_train_values(values, by: str) -> set:
    if by == "pose":
        return {"front"}
    cams = sorted(set(values))
    if len(cams) < 2:
        raise ReidError(f"a camera split needs at least 2 cameras, the input has {cams}")
    return set(cams[: len(cams) // 2])


def split_samples(samples, by: str, train_values, report: Counter | None = None, **kw):
    """Yield the samples of an iterable that the biased split keeps; count decisions in `report`."""
    from reidtools.shards import meta

    train_values = set(train_values)
    report = Counter() if report is None else report
    for s in samples:
        m = meta(s)
        v = value_of(m, by, **kw)
        split = m.get("split", "train")
        if v is None:
            report["dropped_no_value"] += 1
            continue
        keep = (v in train_values) if split == "train" else (v not in train_values)
        report[f"{split}_{'kept' if keep else 'dropped'}"] += 1
        if keep:
            yield s


def write_split(inputs: list[str], output: str, by: str, train_values=None, maxcount: int = 1000, **kw) -> dict:
    """Write `output/{split}-NNNNNN.tar` with the biased split (two streaming passes when the
    training values are the defaults); return a report of values and counts."""
    from reidtools.shards import SplitWriter, iter_samples, meta

    values = {value_of(meta(s), by, **kw) for s in iter_samples(inputs)} - {None}
    if train_values is None:
        train_values = default_train_values(values, by)
    train_values = set(train_values)
    counts: Counter = Counter()
    with SplitWriter(output, maxcount=maxcount, resume=False) as writer:
        for s in split_samples(iter_samples(inputs), by, train_values, counts, **kw):
            writer.write(meta(s).get("split", "train"), s)
    report = {"by": by, "train_values": sorted(train_values, key=str),
              "test_values": sorted(values - train_values, key=str), **dict(sorted(counts.items()))}
    log.info("%s", report)
    return report
