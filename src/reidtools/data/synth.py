"""The built-in synthetic clothes-changing ReID dataset: procedurally rendered people.

Identity lives in non-clothing traits (height, shoulder/hip width, leg length, head size, skin and
hair colour, hair style, a face mark); outfits (upper/lower garment colour and pattern, sleeves,
pants/shorts/skirt, shoes, an optional hat) change across clothes ids; cameras differ in background,
lighting, scale, offset and viewpoint mix; `ir` cameras render a grey "thermal" look in which garment
colour is lost and skin is bright.

Each image is rendered as a LIP label map first (polygons), then coloured from it, so `parse.png` is
exact ground truth; the `pose` keypoints (MediaPipe-33 layout) come from the same skeleton.
Keypoints are normalised: x = (column + 0.5) / width, y = (row + 0.5) / height, where (column, row)
is the pixel the keypoint falls in; `floor(x * width)` gives the column back.

Randomness: identity traits come from `rng(seed, "identity", pid)`, outfits from
`rng(seed, "outfit", pid, o)`, cameras from `rng(seed, "camera", cam)` and everything per image from
`rng(seed, key)`, so a sample's bytes depend on the seed and its key only (not on --ids, on the
order of generation, or on where a killed run stopped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from reidtools.seeding import rng

DATASET = "synth"

# label ids (LIP; see reidtools.data.labels.LIP_LABELS)
BG, HAT, HAIR, SUNGLASSES, UPPER, PANTS, SKIRT, FACE = 0, 1, 2, 4, 5, 9, 12, 13
L_ARM, R_ARM, L_LEG, R_LEG, L_SHOE, R_SHOE = 14, 15, 16, 17, 18, 19

COLORS = {
    "red": (200, 30, 35), "blue": (35, 70, 200), "green": (40, 150, 60), "yellow": (230, 200, 40),
    "black": (25, 25, 28), "white": (235, 235, 230), "grey": (128, 128, 130), "navy": (25, 35, 90),
    "brown": (110, 70, 40), "beige": (210, 190, 150), "pink": (235, 130, 170), "purple": (120, 50, 150),
    "orange": (240, 130, 30), "khaki": (160, 150, 95), "teal": (30, 130, 130), "maroon": (110, 25, 40),
}
COLOR_NAMES = list(COLORS)
UPPER_PATTERNS = ("solid", "solid", "striped", "checked", "two-tone")
LOWER_TYPES = ("pants", "pants", "shorts", "skirt")
SHOE_COLORS = ("black", "white", "brown", "grey", "navy", "red")
SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90), (141, 85, 54), (95, 60, 40)]
HAIR_COLORS = {"black": (20, 18, 18), "dark-brown": (60, 40, 25), "brown": (110, 75, 40),
               "blonde": (215, 185, 110), "red": (160, 60, 25), "grey": (170, 170, 170)}
HAIR_STYLES = ("short", "long", "ponytail", "buzz")
FACE_MARKS = ("none", "mole", "beard", "glasses")
VIEWS = ("front", "back", "side")
# every word the template caption engine writes for these garments (clothes prompts drop the hyphen
# of "two-tone"): the vocabulary a tiny demo text encoder gets as whole tokens
PROMPT_WORDS = tuple(COLOR_NAMES) + tuple(p for p in UPPER_PATTERNS if p not in ("solid", "two-tone")) + ("twotone", "top") \
    + tuple(sorted(set(LOWER_TYPES))) + ("shoes", "hat")


class SynthOptionError(ValueError):
    """An impossible combination of generator options; `option` names the offending one."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


# ----------------------------------------------------------------------------- traits
@dataclass(frozen=True)
class Identity:
    height: float      # person height as a fraction of the image height (before camera scale)
    shoulder: float    # shoulder half-width / person height
    hip: float
    leg: float         # leg length / person height
    head: float        # head radius / person height
    skin: tuple
    hair_color: str
    hair_style: str
    face_mark: str
    mark_side: int     # +1 the person's left, -1 right (where a mole sits)
    ir_skin: float     # how bright skin is in the thermal image


@lru_cache(maxsize=4096)
def identity_traits(seed: int, pid: int) -> Identity:
    r = rng(seed, "identity", pid)
    tone = np.array(SKIN_TONES[int(r.integers(len(SKIN_TONES)))], float) * r.uniform(0.93, 1.05, 3)
    return Identity(
        height=float(r.uniform(0.80, 0.95)), shoulder=float(r.uniform(0.095, 0.145)),
        hip=float(r.uniform(0.075, 0.11)), leg=float(r.uniform(0.44, 0.53)),
        head=float(r.uniform(0.055, 0.075)), skin=tuple(int(v) for v in np.clip(tone, 0, 255)),
        hair_color=str(r.choice(list(HAIR_COLORS))), hair_style=str(r.choice(HAIR_STYLES)),
        face_mark=str(r.choice(FACE_MARKS)), mark_side=int(r.choice([-1, 1])),
        ir_skin=float(r.uniform(195, 235)))


def outfit_traits(seed: int, pid: int, outfit: int) -> dict:
    """The ground-truth garment description (what a caption template engine reads)."""
    return dict(_outfit_traits(seed, pid, outfit))


@lru_cache(maxsize=4096)
def _outfit_traits(seed: int, pid: int, outfit: int) -> dict:
    r = rng(seed, "outfit", pid, outfit)
    upper, lower, second = (str(c) for c in r.choice(COLOR_NAMES, 3, replace=False))
    return {
        "upper_color": upper, "upper_pattern": str(r.choice(UPPER_PATTERNS)), "upper_second_color": second,
        "sleeves": str(r.choice(["long", "short"])), "lower_color": lower,
        "lower_type": str(r.choice(LOWER_TYPES)), "shoes_color": str(r.choice(SHOE_COLORS)),
        "hat_color": str(r.choice(COLOR_NAMES)) if r.random() < 0.2 else None,
        # thermal brightness of the fabric: the only garment trait an ir camera sees
        "ir_fabric": round(float(r.uniform(95, 160)), 1),
    }


@dataclass(frozen=True)
class Camera:
    modality: str
    scale: float
    dx: float
    dy: float
    gain: float
    tint: tuple
    noise: float
    views: tuple       # probabilities of front/back/side
    seed: int


@lru_cache(maxsize=256)
def camera_traits(seed: int, cam: int, modality: str) -> Camera:
    r = rng(seed, "camera", cam)
    views = r.dirichlet([1.2, 1.2, 1.2])
    return Camera(modality=modality, scale=float(r.uniform(0.85, 1.02)), dx=float(r.uniform(-0.08, 0.08)),
                  dy=float(r.uniform(-0.03, 0.03)), gain=float(r.uniform(0.72, 1.2)),
                  tint=tuple(float(v) for v in r.uniform(0.86, 1.12, 3)), noise=float(r.uniform(2.0, 7.0)),
                  views=tuple(float(v) for v in views), seed=int(r.integers(2**31)))


_BG_CACHE: dict = {}


def _background(cam: Camera, h: int, w: int) -> np.ndarray:
    """A per-camera scene: wall + floor with a few coloured blocks (float32 HxWx3)."""
    k = (cam.seed, cam.modality, h, w)
    if k not in _BG_CACHE:
        r = np.random.default_rng(cam.seed)
        if cam.modality == "ir":
            wall, floor = np.full(3, r.uniform(35, 75)), np.full(3, r.uniform(50, 95))
        else:
            wall, floor = r.uniform(60, 220, 3), r.uniform(50, 180, 3)
        img = np.empty((h, w, 3), np.float32)
        horizon = int(h * r.uniform(0.6, 0.8))
        img[:horizon] = wall
        img[horizon:] = floor
        ramp = np.linspace(0.85, 1.1, h, dtype=np.float32)[:, None, None]
        img *= ramp
        for _ in range(int(r.integers(2, 6))):
            y0, x0 = int(r.integers(0, horizon)), int(r.integers(-w // 4, w))
            bh, bw = int(r.integers(h // 10, h // 3)), int(r.integers(w // 6, w // 2))
            col = np.full(3, r.uniform(30, 110)) if cam.modality == "ir" else r.uniform(20, 240, 3)
            img[max(y0, 0):y0 + bh, max(x0, 0):x0 + bw] = col
        _BG_CACHE[k] = img
    return _BG_CACHE[k]


_NOISE: dict = {}


def _noise(r: np.random.Generator, shape: tuple) -> np.ndarray:
    """Unit Gaussian sensor noise: a window at a random offset into a fixed bank (drawing fresh
    normals for every image was the slowest step of rendering)."""
    n = int(np.prod(shape))
    if n not in _NOISE:
        _NOISE[n] = np.random.default_rng(0x5EED).standard_normal(2 * n, dtype=np.float32)
    start = int(r.integers(0, n))
    return _NOISE[n][start:start + n].reshape(shape)


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Item:
    key: str
    split: str
    pid: int
    outfit: int
    cam: int
    index: int
    modality: str
    dataset: str = DATASET


def check_options(ids: int, outfits: int, cams: int, images_per: int, size, modalities) -> None:
    if ids < 2:
        raise SynthOptionError("ids", "needs at least 2 identities (the first half train, the rest test)")
    if outfits < 1:
        raise SynthOptionError("outfits", "needs at least 1 outfit per identity")
    if cams < 2:
        raise SynthOptionError("cams", "needs at least 2 cameras (queries are matched across cameras)")
    if images_per < 2:
        raise SynthOptionError("images_per", "needs at least 2 images per (identity, outfit, camera): "
                               "image 0 is the query, the others are the gallery")
    h, w = size
    if h < 32 or w < 16:
        raise SynthOptionError("size", f"size {h}x{w} is too small (at least 32x16)")
    bad = [m for m in modalities if m not in ("rgb", "ir")]
    if bad or not modalities or len(set(modalities)) != len(modalities):
        raise SynthOptionError("modalities", f"modalities must be rgb, ir or rgb,ir, got {','.join(modalities)}")


def camera_modality(cam: int, modalities) -> str:
    """With both modalities, cameras alternate rgb, ir, rgb, ... (camera 1 is rgb)."""
    mods = [m for m in ("rgb", "ir") if m in modalities]
    return mods[(cam - 1) % len(mods)]


def plan(*, ids=40, outfits=3, cams=4, images_per=2, modalities=("rgb",), dataset=DATASET) -> Iterator[Item]:
    """Every sample to render, in output order. pid and camid start at 1, outfits and images at 0.
    Keys start with the dataset name, so two sets with different names can be read together."""
    n_train = ids // 2
    for p in range(ids):
        pid = p + 1
        for o in range(outfits):
            for cam in range(1, cams + 1):
                for i in range(images_per):
                    split = "train" if p < n_train else ("query" if i == 0 else "gallery")
                    yield Item(f"{dataset}_p{pid:04d}_o{o}_c{cam}_i{i}", split, pid, o, cam, i,
                               camera_modality(cam, modalities), dataset)


# ----------------------------------------------------------------------------- rendering
def _proj(view: str, facing: int, cx: float, lat: float, fwd: float) -> float:
    """Image x of a body point at lateral offset `lat` (person's left > 0) and forward offset `fwd`."""
    if view == "front":
        return cx + lat
    if view == "back":
        return cx - lat
    return cx + facing * fwd + 0.18 * lat


def render(seed: int, item: Item, size=(128, 64)) -> dict:
    """One sample (contract fields; `jpg` and `parse.png` as PIL images)."""
    H, W = size
    ident = identity_traits(seed, item.pid)
    outfit = outfit_traits(seed, item.pid, item.outfit)
    cam = camera_traits(seed, item.cam, item.modality)
    r = rng(seed, item.key)
    view = str(r.choice(VIEWS, p=np.array(cam.views)))
    facing = int(r.choice([-1, 1]))

    u = H * ident.height * cam.scale * r.uniform(0.96, 1.03)   # person height in pixels
    top = (H - u) / 2 + (cam.dy + r.uniform(-0.03, 0.03)) * H
    top = min(max(top, 1.0), H - 1.5 - u)                        # feet stay in the frame
    cx = W / 2 + (cam.dx + r.uniform(-0.05, 0.05)) * W
    side = view == "side"
    wf = 0.5 if side else 1.0                                    # width seen from the side
    head_r = ident.head * u
    head_rx = head_r * (0.82 if not side else 0.9)
    hcy = top + head_r
    hcx = cx + (facing * 0.15 * head_r if side else 0.0)
    neck_y = top + 2 * head_r
    sh_y = neck_y + 0.035 * u
    sw, hw = ident.shoulder * u, ident.hip * u
    hip_y = top + u * (1 - ident.leg)
    foot_y = top + u
    ankle_y = foot_y - 0.035 * u
    knee_y = (hip_y + ankle_y) / 2
    P = lambda lat, fwd=0.0: _proj(view, facing, cx, lat, fwd)  # noqa: E731

    # skeleton in (x, y) pixels, per side s = +1 (person's left) / -1 (right)
    swing = 0.5 if side else 0.12
    joints = {}
    for s, name in ((1, "left"), (-1, "right")):
        th = r.uniform(-swing, swing)                         # arm swing (forward > 0)
        ab = r.uniform(0.04, 0.3) * (0.3 if side else 1.0)    # arm abduction
        bend = r.uniform(0.0, 0.35 if side else 0.6)   # elbows bend forward: keep swing + bend < ~55 deg
        ua, fa = 0.16 * u, 0.14 * u
        sh_lat = s * sw * wf * 0.85
        el_lat = sh_lat + s * ua * math.sin(ab)
        el_fwd = ua * math.sin(th)
        el_y = sh_y + ua * math.cos(ab) * math.cos(th)
        wr_lat = el_lat + s * fa * math.sin(ab * 1.2)
        wr_fwd = el_fwd + fa * math.sin(th + bend)
        wr_y = el_y + fa * math.cos(th + bend) * math.cos(ab)
        stride = r.uniform(-0.12, 0.12) * u if side else r.uniform(-0.01, 0.01) * u
        spread = r.uniform(0.0, 0.04) * u
        hip_lat = s * hw * wf * 0.55
        an_lat = hip_lat + s * spread * wf
        joints[name] = {
            "shoulder": (P(sh_lat), sh_y + 0.01 * u), "elbow": (P(el_lat, el_fwd), el_y),
            "wrist": (P(wr_lat, wr_fwd), wr_y), "hip": (P(hip_lat), hip_y),
            "knee": (P((hip_lat + an_lat) / 2, stride / 2), knee_y), "ankle": (P(an_lat, stride), ankle_y),
        }

    parse = Image.new("L", (W, H), BG)
    d = ImageDraw.Draw(parse)
    near = ("right" if facing > 0 else "left") if side else None
    order = ["left", "right"] if near is None else [n for n in ("left", "right") if n != near] + [near]
    arm_w = max(2, int(round(0.055 * u)))
    leg_w = max(2, int(round(0.075 * u)))
    lab = {"left": (L_ARM, L_LEG, L_SHOE), "right": (R_ARM, R_LEG, R_SHOE)}
    toe = facing * 0.07 * u if side else 0.0

    def draw_leg(name):
        j = joints[name]
        d.line([j["hip"], j["knee"], j["ankle"]], fill=lab[name][1], width=leg_w, joint="curve")
        ax, ay = j["ankle"]
        half = 0.035 * u
        xs = (ax - half, ax + half) if not side else (min(ax - facing * 0.03 * u, ax + toe), max(ax - facing * 0.03 * u, ax + toe))
        d.rectangle([xs[0], ay - 0.01 * u, xs[1], foot_y], fill=lab[name][2])
        lower = outfit["lower_type"]
        if lower in ("pants", "shorts"):
            end = j["ankle"] if lower == "pants" else (
                (j["hip"][0] * 0.35 + j["knee"][0] * 0.65), hip_y * 0.35 + knee_y * 0.65)
            pts = [j["hip"], j["knee"], (j["ankle"][0], ankle_y - 0.03 * u)] if lower == "pants" else [j["hip"], end]
            d.line(pts, fill=PANTS, width=leg_w + 2, joint="curve")

    def draw_arm(name):
        j = joints[name]
        d.line([j["shoulder"], j["elbow"], j["wrist"]], fill=lab[name][0], width=arm_w, joint="curve")
        hx, hy = j["wrist"]
        hr = max(1.0, 0.028 * u)
        d.ellipse([hx - hr, hy - hr * 0.4, hx + hr, hy + hr * 1.6], fill=lab[name][0])
        if outfit["sleeves"] == "long":
            ex, ey = j["elbow"]
            wx, wy = j["wrist"]
            cuff = (ex + 0.8 * (wx - ex), ey + 0.8 * (wy - ey))
            d.line([j["shoulder"], j["elbow"], cuff], fill=UPPER, width=arm_w + 1, joint="curve")
        else:
            ex, ey = j["elbow"]
            sx, sy = j["shoulder"]
            d.line([(sx, sy - 0.01 * u), (sx + 0.45 * (ex - sx), sy + 0.45 * (ey - sy))], fill=UPPER, width=arm_w + 2)

    for name in order:
        draw_leg(name)
    lower_top = hip_y - 0.03 * u
    if outfit["lower_type"] == "pants" or outfit["lower_type"] == "shorts":
        crotch = hip_y + 0.06 * u
        d.polygon([(P(hw * wf), lower_top), (P(-hw * wf), lower_top), (P(-hw * wf * 0.9), crotch),
                   (P(hw * wf * 0.9), crotch)], fill=PANTS)
    else:
        hem = knee_y + r.uniform(-0.04, 0.03) * u
        d.polygon([(P(hw * wf * 1.05), lower_top), (P(-hw * wf * 1.05), lower_top),
                   (P(-hw * wf * 1.55), hem), (P(hw * wf * 1.55), hem)], fill=SKIRT)
    if side:
        draw_arm(order[0])
    d.polygon([(P(sw * wf), sh_y), (P(-sw * wf), sh_y), (P(-hw * wf * 1.02), hip_y),
               (P(hw * wf * 1.02), hip_y)], fill=UPPER)
    d.ellipse([P(sw * wf) - 0.03 * u, sh_y - 0.015 * u, P(sw * wf) + 0.03 * u, sh_y + 0.05 * u], fill=UPPER)
    d.ellipse([P(-sw * wf) - 0.03 * u, sh_y - 0.015 * u, P(-sw * wf) + 0.03 * u, sh_y + 0.05 * u], fill=UPPER)
    for name in (order[1:] if side else order):
        draw_arm(name)
    neck_w = head_rx * 0.45
    d.rectangle([hcx - neck_w, hcy + head_r * 0.5, hcx + neck_w, sh_y + 0.01 * u], fill=FACE)
    head_box = [hcx - head_rx, hcy - head_r, hcx + head_rx, hcy + head_r]
    d.ellipse(head_box, fill=FACE if view != "back" else HAIR)

    # hair: identity-constant shape (per view)
    style = ident.hair_style
    if view != "back":
        if style == "buzz":  # a thin cap: the top half of a flattened head ellipse
            d.chord([head_box[0], head_box[1], head_box[2], hcy + head_r * 0.2], 180, 360, fill=HAIR)
        else:
            d.chord(head_box, 180, 360, fill=HAIR)
        if style == "long":
            for sx in ((hcx - head_rx, hcx - head_rx * 0.55), (hcx + head_rx * 0.55, hcx + head_rx)):
                if side and (sx[0] - hcx) * facing > 0:
                    continue
                d.rectangle([sx[0], hcy - head_r * 0.2, sx[1], sh_y + 0.06 * u], fill=HAIR)
        if style == "ponytail" and side:
            bx = hcx - facing * head_rx
            d.ellipse([bx - head_r * 0.45, hcy - head_r * 0.3, bx + head_r * 0.45, hcy + head_r * 0.9], fill=HAIR)
    else:
        if style == "long":
            d.rectangle([hcx - head_rx, hcy, hcx + head_rx, sh_y + 0.09 * u], fill=HAIR)
        elif style == "ponytail":
            d.rectangle([hcx - head_rx * 0.3, hcy, hcx + head_rx * 0.3, sh_y + 0.07 * u], fill=HAIR)
    if ident.face_mark == "glasses" and view != "back":
        gy = hcy - head_r * 0.05
        gx0, gx1 = (hcx - head_rx * 0.75, hcx + head_rx * 0.75) if not side else sorted((hcx, hcx + facing * head_rx))
        d.rectangle([gx0, gy - head_r * 0.14, gx1, gy + head_r * 0.14], fill=SUNGLASSES)
    if outfit["hat_color"] is not None:
        d.chord([hcx - head_rx * 1.08, hcy - head_r * 1.12, hcx + head_rx * 1.08, hcy + head_r * 0.35],
                180, 360, fill=HAT)
        d.rectangle([hcx - head_rx * 1.2, hcy - head_r * 0.45, hcx + head_rx * 1.2, hcy - head_r * 0.3], fill=HAT)

    labels = np.asarray(parse)
    img = _colour(labels, ident, outfit, cam, r, view, (hcx, hcy, head_rx, head_r, facing), top, u)

    points = _keypoints(view, facing, joints, (hcx, hcy, head_rx, head_r), foot_y, u, r, side, near)
    pose = {"format": "mediapipe33",
            "points": [[round((x + 0.5) / W, 5), round((y + 0.5) / H, 5), round(c, 3)] for x, y, c in points]}
    garments = {k: v for k, v in outfit.items() if k != "ir_fabric"}
    meta = {"dataset": item.dataset, "split": item.split, "pid": item.pid, "camid": item.cam,
            "clothes": f"{item.pid:04d}_{item.outfit}", "modality": item.modality, "view": view,
            "parse_labels": "lip", "pose": pose, "garments": garments}
    return {"__key__": item.key, "jpg": Image.fromarray(img, "RGB"), "parse.png": parse, "json": meta}


def _colour(labels, ident, outfit, cam, r, view, head, top, u) -> np.ndarray:
    H, W = labels.shape
    ir = cam.modality == "ir"
    lut = np.zeros((20, 3), np.float32)
    if ir:
        fab = outfit["ir_fabric"]
        lut[[FACE, L_ARM, R_ARM, L_LEG, R_LEG]] = ident.ir_skin
        lut[HAIR], lut[SUNGLASSES] = 85, 45
        lut[[UPPER, PANTS, SKIRT]] = fab
        lut[PANTS] = lut[SKIRT] = fab * 0.9
        lut[[L_SHOE, R_SHOE]], lut[HAT] = 65, fab * 0.8
    else:
        lut[[FACE, L_ARM, R_ARM, L_LEG, R_LEG]] = ident.skin
        lut[HAIR] = HAIR_COLORS[ident.hair_color]
        lut[SUNGLASSES] = (20, 20, 25)
        lut[UPPER] = COLORS[outfit["upper_color"]]
        lut[PANTS] = lut[SKIRT] = COLORS[outfit["lower_color"]]
        lut[[L_SHOE, R_SHOE]] = COLORS[outfit["shoes_color"]]
        if outfit["hat_color"]:
            lut[HAT] = COLORS[outfit["hat_color"]]
    if ir:
        lut = lut[:, :1]             # grey: render one channel, repeat it at the end
    img = np.take(lut, labels, axis=0)
    person = labels != BG
    if not ir and outfit["upper_pattern"] != "solid":
        ys, xs = np.nonzero(labels == UPPER)
        period = max(3, int(round(0.045 * u)))
        rel = ((ys - top) / period).astype(int)
        if outfit["upper_pattern"] == "striped":
            alt = rel % 2 == 1
        elif outfit["upper_pattern"] == "checked":
            alt = (rel + (xs // period)) % 2 == 1
        else:  # two-tone: the lower half of the top in the second colour
            alt = ys > top + 0.42 * u
        img[ys[alt], xs[alt]] = COLORS[outfit["upper_second_color"]]
    hcx, hcy, hrx, hr, facing = head
    if view != "back" and ident.face_mark in ("mole", "beard"):
        ys, xs = np.nonzero(labels == FACE)
        if ident.face_mark == "mole":
            mx = hcx + (ident.mark_side * hrx * 0.4 if view == "front" else facing * hrx * 0.4)
            spot = (xs - mx) ** 2 + (ys - (hcy + hr * 0.25)) ** 2 <= max(1.0, (0.2 * hr) ** 2)
        else:
            spot = (ys > hcy + hr * 0.35) & (ys < hcy + hr * 1.05)
        img[ys[spot], xs[spot]] = (35, 25, 20) if not ir else ident.ir_skin * 0.8
    # soft body shading (a rounded look; it depends on the column only) and the camera's lighting
    shade = np.clip(1.0 - 0.28 * ((np.arange(W, dtype=np.float32) - hcx) / (0.18 * u + 1e-6)) ** 2, 0.7, 1.0)
    img *= shade[None, :, None]
    bg = _background(cam, H, W)
    np.copyto(img, bg[..., :1] if ir else bg, where=~person[..., None])
    gain = cam.gain * r.uniform(0.93, 1.07)
    img *= gain if ir else (gain * np.array(cam.tint, np.float32))
    img += _noise(r, img.shape) * np.float32(cam.noise)
    np.clip(img, 0, 255, out=img)
    img = img.astype(np.uint8)
    return np.repeat(img, 3, axis=2) if ir else img


def _keypoints(view, facing, joints, head, foot_y, u, r, side, near):
    hcx, hcy, hrx, hr = head
    L, R = joints["left"], joints["right"]

    def lr(lat):  # head-feature x for a lateral offset (person's left > 0)
        if view == "front":
            return hcx + lat
        if view == "back":
            return hcx - lat
        return hcx + facing * hrx * 0.55 + 0.1 * lat

    vis = lambda: float(r.uniform(0.88, 0.99))  # noqa: E731
    face_c = (lambda: float(r.uniform(0.03, 0.15))) if view == "back" else vis
    far_c = lambda: float(r.uniform(0.3, 0.55))  # noqa: E731

    def c_for(name):
        if side and name != near:
            return far_c()
        return vis()

    nose_x = hcx + facing * hrx * 0.75 if side else hcx
    pts = [(nose_x, hcy + 0.15 * hr, face_c())]
    for s, name in ((1, "left"), (-1, "right")):
        conf = face_c() if not (side and name != near) else min(face_c(), far_c())
        pts += [(lr(s * 0.18 * hrx), hcy - 0.1 * hr, conf), (lr(s * 0.38 * hrx), hcy - 0.1 * hr, conf),
                (lr(s * 0.58 * hrx), hcy - 0.1 * hr, conf)]
    # ears: seen from behind too
    for s, name in ((1, "left"), (-1, "right")):
        ex = (hcx + s * 0.75 * hrx if view == "front" else hcx - s * 0.75 * hrx) if not side else hcx - facing * 0.1 * hrx
        pts.append((ex, hcy, c_for(name) if view != "back" else vis() * 0.8))
    for s, name in ((1, "left"), (-1, "right")):
        conf = face_c() if not (side and name != near) else min(face_c(), far_c())
        pts.append((lr(s * 0.25 * hrx), hcy + 0.5 * hr, conf))
    for part in ("shoulder", "elbow", "wrist"):
        for name, j in (("left", L), ("right", R)):
            pts.append((*j[part], c_for(name)))
    hand = {}
    for name, j in (("left", L), ("right", R)):
        wx, wy = j["wrist"]
        hand[name] = [(wx - 0.01 * u, wy + 0.02 * u), (wx, wy + 0.03 * u), (wx + 0.01 * u, wy + 0.015 * u)]
    for k in range(3):  # pinky, index, thumb
        for name in ("left", "right"):
            pts.append((*hand[name][k], c_for(name)))
    for part in ("hip", "knee", "ankle"):
        for name, j in (("left", L), ("right", R)):
            pts.append((*j[part], c_for(name)))
    for part in ("heel", "foot_index"):
        for name, j in (("left", L), ("right", R)):
            ax = j["ankle"][0]
            if part == "heel":
                x = ax - facing * 0.02 * u if side else ax
                y = foot_y - 0.012 * u
            else:
                x = ax + facing * 0.05 * u if side else ax
                y = foot_y - 0.005 * u
            pts.append((x, y, c_for(name)))
    return pts


# ----------------------------------------------------------------------------- public API
def iter_synth(*, ids=40, outfits=3, cams=4, images_per=2, size=(128, 64), modalities=("rgb",), seed=0,
               dataset=DATASET):
    """Yield every sample of the dataset, in order (contract dicts; images as PIL)."""
    modalities = tuple(modalities)
    check_options(ids, outfits, cams, images_per, tuple(size), modalities)
    for item in plan(ids=ids, outfits=outfits, cams=cams, images_per=images_per, modalities=modalities,
                     dataset=dataset):
        yield render(seed, item, tuple(size))


def write_dataset(output: str, maxcount: int = 1000, *, ids=40, outfits=3, cams=4, images_per=2,
                  size=(128, 64), modalities=("rgb",), seed=0, progress=None, dataset=DATASET) -> dict:
    """Write `output/{split}-NNNNNN.tar` (or one tar to stdout for `-`); resumes a killed run.

    `progress`, if given, is called with 1 after each planned sample (written or skipped).
    Returns a summary: per split the number of images, ids, cameras, clothes ids; written/skipped.
    """
    from reidtools.shards import SplitWriter

    modalities = tuple(modalities)
    size = tuple(size)
    check_options(ids, outfits, cams, images_per, size, modalities)
    if output != "-":
        _check_manifest(output, {"seed": int(seed), "ids": ids, "outfits": outfits, "cams": cams,
                                 "images_per": images_per, "size": list(size), "modalities": list(modalities),
                                 "maxcount": maxcount, "dataset": dataset})
    splits: dict[str, dict] = {}
    with SplitWriter(output, maxcount=maxcount, resume=True) as writer:
        for item in plan(ids=ids, outfits=outfits, cams=cams, images_per=images_per, modalities=modalities,
                         dataset=dataset):
            writer.write(item.split, lambda item=item: render(seed, item, size))
            s = splits.setdefault(item.split, {"images": 0, "ids": set(), "cameras": set(),
                                               "clothes": set(), "modalities": set()})
            s["images"] += 1
            s["ids"].add(item.pid)
            s["cameras"].add(item.cam)
            s["clothes"].add((item.pid, item.outfit))
            s["modalities"].add(item.modality)
            if progress is not None:
                progress(1)
        shards = [] if output == "-" else sorted(p for w in writer.writers.values() for p in w.shards)
    summary = {name: {"images": s["images"], "ids": len(s["ids"]), "cameras": len(s["cameras"]),
                      "clothes": len(s["clothes"]), "modalities": sorted(s["modalities"])}
               for name, s in splits.items()}
    return {"splits": summary, "written": writer.written, "skipped": writer.skipped, "shards": shards}


MANIFEST = "synth.json"


def _check_manifest(output: str, options: dict) -> None:
    """Resume must not mix datasets: DIR/synth.json records the options of the run that started DIR,
    and a re-run with other options is refused instead of silently keeping the old shards."""
    import json
    import os

    from reidtools.errors import ReidError

    path = os.path.join(output, MANIFEST)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                old = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ReidError(f"{path}: unreadable ({exc}); delete it or use another output directory") from None
        diff = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in options.items() if old.get(k) != v]
        if diff:
            raise ReidError(f"{output} holds a synthetic dataset made with other options ({', '.join(diff)}); "
                            "use another output directory or delete it")
        return
    import glob

    if any(glob.glob(os.path.join(output, f"{split}-*.tar")) for split in ("train", "query", "gallery")):
        raise ReidError(f"{output} already holds shards but no {MANIFEST} (not a `reid synth` output, "
                        "or one from another version); use another output directory or delete it")
    os.makedirs(output, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(options, fh, sort_keys=True)
    os.replace(path + ".tmp", path)
