"""The papers' selection rules for `reid filter`: each rule scores one sample and says pass/fail.

- frontal (HSGL eq. 2, or its released code's composite score),
- quality (HSGL: resolution and variance of the Laplacian; top-N per identity / overall is a
  whole-input selection done by `select_top`),
- pose-ref / pose-target / pose-gen (Pose-dIVE eqs. 3-6),
- size (minimum height/width, aspect-ratio range).

Keypoints follow the `pose` convention of `reidtools.vision` (normalised x, y; c = confidence).
Scores are written into the metadata: `quality` for image scores, `pose` for keypoint scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reidtools.data.labels import POSE_FORMATS
from reidtools.errors import SampleError
from reidtools.shards.sample import image, meta, where

NO_POSE = "no 'pose' in the metadata: run `reid pose` (or `reid mask --engine pose`) first"
NO_TARGET = ("no target pose in history[-1].parameters.target_pose: run `reid posegen` first "
             "(pose-gen checks generated samples against the pose they were asked for)")


# ----------------------------------------------------------------------------- keypoints
def points_of(pose, sample: dict, what: str = "pose") -> tuple[str, np.ndarray]:
    """(format, float array N x 3) of a `pose` dict, with a clear error for a malformed one."""
    if not isinstance(pose, dict) or "points" not in pose:
        raise SampleError(*where(sample), f"{what} must be {{'format': ..., 'points': [[x, y, c], ...]}}")
    try:
        pts = np.asarray(pose["points"], dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError):
        raise SampleError(*where(sample), f"{what} points must be [[x, y, confidence], ...]") from None
    return str(pose.get("format", "")), pts


def sample_pose(sample: dict) -> tuple[str, np.ndarray]:
    m = meta(sample)
    if m.get("pose") is None:
        raise SampleError(*where(sample), NO_POSE)
    return points_of(m["pose"], sample)


def target_pose(sample: dict) -> tuple[str, np.ndarray]:
    """The target pose a generator was asked for: history[-1]["parameters"]["target_pose"]."""
    hist = meta(sample).get("history") or []
    last = hist[-1] if hist and isinstance(hist[-1], dict) else {}
    tp = (last.get("parameters") or {}).get("target_pose")
    if tp is None:
        raise SampleError(*where(sample), NO_TARGET)
    return points_of(tp, sample, "history[-1].parameters.target_pose")


def keypoint_index(fmt: str, names: list[str] | None, n: int, sample: dict) -> np.ndarray:
    """Indices of the keypoint set K: all points, or the named ones of the pose format."""
    if not names:
        return np.arange(n)
    table = POSE_FORMATS.get(fmt)
    if table is None:
        raise SampleError(*where(sample), f"pose format {fmt!r} has no keypoint names (known: {', '.join(POSE_FORMATS)})")
    return np.asarray([table.index(k) for k in names])


def _idx(fmt: str, sample: dict, *names: str) -> list[int]:
    table = POSE_FORMATS.get(fmt)
    if table is None:
        raise SampleError(*where(sample), f"the frontal rule needs mediapipe33 keypoints, got format {fmt!r}")
    return [table.index(n) for n in names]


# ----------------------------------------------------------------------------- rules
@dataclass
class Outcome:
    passed: bool
    scores: dict
    into: str  # metadata key the scores go to: "quality" or "pose"
    sub: str | None = None  # sub-key inside it (e.g. pose -> "frontal")


@dataclass
class Frontal:
    """HSGL eq. 2 (mode "eq2"): visibility of nose and eyes > v_min; |y_le - y_re| < eps_y;
    |v_lear - v_rear| < eps_v. Mode "composite": the released code's score (see `composite`).
    `visibility="all"` needs each of nose, left eye, right eye > v_min (the paper's text);
    "max" is eq. 2's literal max(k_nose, k_eyes) > 0.7."""

    mode: str = "eq2"
    v_min: float = 0.7
    eps_y: float = 0.05
    eps_v: float = 0.4
    visibility: str = "all"
    name: str = "frontal"

    def __call__(self, sample: dict) -> Outcome:
        fmt, p = sample_pose(sample)
        nose, le, re, lear, rear = (p[i] for i in _idx(fmt, sample, "nose", "left_eye", "right_eye",
                                                       "left_ear", "right_ear"))
        vis = [nose[2], le[2], re[2]]
        vis_ok = (min(vis) if self.visibility == "all" else max(vis)) > self.v_min
        dy, dv = abs(le[1] - re[1]), abs(lear[2] - rear[2])
        s = {"mode": self.mode, "eye_dy": round(dy, 5), "ear_dv": round(dv, 5), "visible": bool(vis_ok)}
        if self.mode == "eq2":
            passed = vis_ok and dy < self.eps_y and dv < self.eps_v
        else:
            score, eye_dist = composite(nose, le, re, lear, rear)
            s.update(score=round(score, 5), eye_dist=round(eye_dist, 5))
            passed = vis_ok and score < 0.3 and dy < 0.05 and eye_dist > 0.08 and dv < 0.4
        s["passed"] = bool(passed)
        return Outcome(bool(passed), s, "pose", "frontal")


def composite(nose, le, re, lear, rear) -> tuple[float, float]:
    """HSGL's released composite frontal score (lower = more frontal) and the eye distance |x_le - x_re|.

    0.3*|dy_eyes| + 0.3*|x_nose - x_eye_mid| + 0.4*|dv_ears| (+0.5 if one ear > 0.8 and the
    other < 0.3) (+0.3 if eye distance < 0.08)."""
    dy, dv = abs(le[1] - re[1]), abs(lear[2] - rear[2])
    eye_dist = abs(le[0] - re[0])
    score = 0.3 * dy + 0.3 * abs(nose[0] - (le[0] + re[0]) / 2) + 0.4 * dv
    if (lear[2] > 0.8 and rear[2] < 0.3) or (rear[2] > 0.8 and lear[2] < 0.3):
        score += 0.5
    if eye_dist < 0.08:
        score += 0.3
    return float(score), float(eye_dist)


@dataclass
class Quality:
    """HSGL's quality assessor (seed 001 §3.2.1): R = w*h >= min_resolution and S = Var(Laplacian) >=
    min_sharpness. Ranking for top-N (whole input) uses `rank`:

    - `resolution` (default): "the selection process prioritizes images with higher resolution and
      minimal blurriness" -- resolution first, sharpness breaks ties;
    - `released`: the released code's single score R * (10 + 0.5 * min(S / 100, 1)), in which a
      sharper image can outrank one up to 5 % larger;
    - `sharpness` (ties by resolution) and `product` R * S, for ablations.
    """

    min_resolution: int = 0
    min_sharpness: float = 0.0
    top_n_per_id: int | None = None
    top_n: int | None = None
    rank: str = "resolution"
    name: str = "quality"

    @property
    def whole_input(self) -> bool:
        return bool(self.top_n_per_id or self.top_n)

    def __call__(self, sample: dict) -> Outcome:
        from reidtools.vision.quality import scores

        s = scores(image(sample))
        passed = s["resolution"] >= self.min_resolution and s["sharpness"] >= self.min_sharpness
        return Outcome(bool(passed), s, "quality")

    def rank_value(self, s: dict) -> tuple:
        """A sort key, larger = better (the try-on person choice uses it too)."""
        r, sh = s["resolution"], s["sharpness"]
        if self.rank == "released":
            return (r * (10.0 + 0.5 * min(sh / 100.0, 1.0)), r, sh)
        return {"sharpness": (sh, r), "resolution": (r, sh), "product": (r * sh, sh)}[self.rank]


@dataclass
class PoseRef:
    """Pose-dIVE eq. 3: keep a reference image if min_k sigma_k >= tau_ref."""

    tau: float = 0.6
    keypoints: list[str] | None = None
    name: str = "pose-ref"

    def __call__(self, sample: dict) -> Outcome:
        fmt, p = sample_pose(sample)
        c = p[keypoint_index(fmt, self.keypoints, len(p), sample), 2]
        v = float(c.min())
        return Outcome(v >= self.tau, {"ref_min_conf": round(v, 5)}, "pose", "scores")


@dataclass
class PoseTarget:
    """Pose-dIVE eq. 4: keep a target pose if (1/N_k) sum_k sigma_k >= tau_tar."""

    tau: float = 0.6
    keypoints: list[str] | None = None
    name: str = "pose-target"

    def __call__(self, sample: dict) -> Outcome:
        fmt, p = sample_pose(sample)
        c = p[keypoint_index(fmt, self.keypoints, len(p), sample), 2]
        v = float(c.mean())
        return Outcome(v >= self.tau, {"target_mean_conf": round(v, 5)}, "pose", "scores")


@dataclass
class PoseGen:
    """Pose-dIVE eqs. 5-6: O = (1/N_k) sum_k |sigma_k(gen) - sigma_k(tar)| <= eps_gen and
    (1/K) sum_k sigma_k(gen) >= tau_gen; the target pose is history[-1].parameters.target_pose.

    eps_gen is "a small value" (§E) with no number given. 0.1: two detections of one pose differ by a
    few hundredths per keypoint, while a front/back mix-up moves the 11 face keypoints by ~0.8 (O ~
    0.27 over 33) and a side view generated frontally moves the far side's ~11 by ~0.5 (O ~ 0.17).
    A default of 0.6 (= tau) rejected almost nothing: with both confidence means >= 0.6, O <= 0.8 and
    typical mismatches stay far below 0.6."""

    tau: float = 0.6
    eps: float = 0.1
    keypoints: list[str] | None = None
    name: str = "pose-gen"

    def __call__(self, sample: dict) -> Outcome:
        fmt, p = sample_pose(sample)
        tfmt, t = target_pose(sample)
        if tfmt != fmt or len(t) != len(p):
            raise SampleError(*where(sample), f"pose ({fmt}, {len(p)} points) and target pose "
                                              f"({tfmt}, {len(t)} points) differ in format")
        k = keypoint_index(fmt, self.keypoints, len(p), sample)
        offset = float(np.abs(p[k, 2] - t[k, 2]).mean())
        mean = float(p[k, 2].mean())
        passed = offset <= self.eps and mean >= self.tau
        return Outcome(passed, {"gen_offset": round(offset, 5), "gen_mean_conf": round(mean, 5)}, "pose", "scores")


@dataclass
class Size:
    """Minimum height/width and an aspect-ratio (height/width) range."""

    min_height: int = 0
    min_width: int = 0
    min_aspect: float | None = None
    max_aspect: float | None = None
    name: str = "size"

    def __call__(self, sample: dict) -> Outcome:
        img = image(sample)
        h, w = img.height, img.width
        aspect = h / w
        passed = h >= self.min_height and w >= self.min_width
        if self.min_aspect is not None:
            passed = passed and aspect >= self.min_aspect
        if self.max_aspect is not None:
            passed = passed and aspect <= self.max_aspect
        return Outcome(bool(passed), {"height": h, "width": w, "aspect": round(aspect, 5)}, "quality")


# ----------------------------------------------------------------------------- applying rules
@dataclass
class Counts:
    """What each rule removed (first failing rule, in the given order) and failed (in total)."""

    names: list[str]
    input: int = 0
    kept: int = 0
    removed: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)

    def add(self, passes: list[bool]) -> None:
        self.input += 1
        first = next((n for n, ok in zip(self.names, passes) if not ok), None)
        if first is None:
            self.kept += 1
        else:
            self.removed[first] = self.removed.get(first, 0) + 1
        for n, ok in zip(self.names, passes):
            if not ok:
                self.failed[n] = self.failed.get(n, 0) + 1

    def as_dict(self) -> dict:
        return {"input": self.input, "kept": self.kept,
                "rules": [{"rule": n, "removed": self.removed.get(n, 0), "failed": self.failed.get(n, 0)}
                          for n in self.names]}


def evaluate(sample: dict, rules: list) -> list[Outcome]:
    return [rule(sample) for rule in rules]


def record(sample: dict, outcomes: list[Outcome]) -> None:
    """Write the scores into the sample's metadata (`quality` / `pose`)."""
    m = meta(sample)
    for o in outcomes:
        target = dict(m.get(o.into) or {})
        if o.sub:
            target[o.sub] = {**(target.get(o.sub) or {}), **o.scores}
        else:
            target.update(o.scores)
        m[o.into] = target


def select_top(candidates: list[tuple], top_n_per_id: int | None, top_n: int | None) -> set:
    """candidates: (id, group, rank tuple). The ids of the top `top_n_per_id` per group (HSGL's
    SelectTopNPerID), then of the top `top_n` overall (SelectTopM); ties keep input order."""
    chosen = list(candidates)
    if top_n_per_id:
        groups: dict = {}
        for c in chosen:
            groups.setdefault(c[1], []).append(c)
        chosen = [c for g in groups.values() for c in sorted(g, key=lambda c: c[2], reverse=True)[:top_n_per_id]]
    if top_n:
        order = {c[0]: i for i, c in enumerate(candidates)}
        chosen = sorted(chosen, key=lambda c: (tuple(-v for v in c[2]), order[c[0]]))[:top_n]
    return {c[0] for c in chosen}
