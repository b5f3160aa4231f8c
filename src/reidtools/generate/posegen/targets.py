"""`reid posegen poses`: Pose-dIVE's target conditions (seed 004 §B, Fig. 1) — a viewpoint and a pose
sampled per target, a body posed and rendered into skeleton, depth and normal maps.

- Pose bank: `dataset` = the person shards' poses that pass pose-target (eq. 4), lifted to 3D
  (`lift`); or a FILE of 3D joints in the body frame (`body`):
  `{"format": "mediapipe33", "poses": [{"name": "...", "joints": [[x, y, z] x 33]}, ...]}`.
- Viewpoints (azimuth): `uniform` over [0, 360); `dataset` = the histogram (36 bins of 10 degrees) of
  the lifted bank poses' own azimuths, a bin drawn by its count, the angle uniform within it; or a
  FILE `{"edges": [deg, ...], "weights": [w, ...]}` (len(edges) = len(weights) + 1). Elevation:
  uniform in `--elevation LO:HI` (default 0: the lift assumes level cameras).
- Body: one shape per identity (`BodyShape.sample` from (seed, dataset, pid)), so an identity keeps
  its build across its targets; the pose's bones are retargeted to it.
- Framing: a dataset pose keeps its source image's framing (root position, pixels per body height
  scaled to the target height); a FILE pose is centred and fills 90% of the height.
- Target keypoint confidences: a keypoint whose 3D point is within its limb's radius behind the
  rendered surface is visible, else self-occluded; outside the image it is 0. Visible/occluded
  keypoints get the dataset's own median confidence of keypoint k when visible/occluded (measured on
  the bank poses rendered in their own view), so eq. 5 of `reid filter --rule pose-gen` compares
  like with like; without dataset poses 1.0 and 0.5.
- Job (identity, index): pose, azimuth and elevation from rng(seed, "posegen-target", dataset, pid,
  index): independent of batching and task splitting. Output shards follow the input shard holding
  an identity's first image; keys `FIRSTKEY-tgtNNN`.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from reidtools.errors import ReidError, SampleError
from reidtools.generate.posegen import body as B
from reidtools.generate.posegen import lift as L
from reidtools.generate.posegen import render as R
from reidtools.seeding import rng

log = logging.getLogger("reidtools")

CONDITIONS = ("skeleton", "depth", "normal")
FIELDS = {"skeleton": "skeleton.png", "depth": "depth.png", "normal": "normal.png"}
DATASET_BINS = 36
CALIBRATION_POSES = 128
DEFAULT_CONF = (1.0, 0.5)   # visible, occluded: without dataset poses to measure them on


# ----------------------------------------------------------------------------- viewpoints
@dataclass
class Viewpoints:
    """Azimuth distribution: uniform, or a histogram (edges in degrees, weights)."""

    mode: str
    edges: np.ndarray | None = None
    weights: np.ndarray | None = None
    elevation: tuple = (0.0, 0.0)

    def sample(self, r: np.random.Generator) -> tuple[float, float]:
        if self.edges is None:
            a = float(r.uniform(0.0, 360.0))
        else:
            p = self.weights / self.weights.sum()
            k = int(r.choice(len(p), p=p))
            a = float(r.uniform(self.edges[k], self.edges[k + 1])) % 360.0
        lo, hi = self.elevation
        e = float(r.uniform(lo, hi)) if hi > lo else float(lo)
        return a, e

    def describe(self) -> dict:
        d = {"mode": self.mode, "elevation": list(self.elevation)}
        if self.edges is not None:
            d.update(edges=[round(float(x), 3) for x in self.edges], weights=[round(float(x), 6) for x in self.weights])
        return d


def dataset_viewpoints(azimuths, elevation=(0.0, 0.0), bins: int = DATASET_BINS) -> Viewpoints:
    edges = np.linspace(0.0, 360.0, bins + 1)
    counts, _ = np.histogram(np.asarray(azimuths, dtype=np.float64) % 360.0, bins=edges)
    if counts.sum() == 0:
        raise ReidError("--viewpoints dataset: no pose of the input could be lifted")
    return Viewpoints("dataset", edges, counts.astype(np.float64), elevation)


def file_viewpoints(path: str, elevation=(0.0, 0.0)) -> Viewpoints:
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        edges = np.asarray(d["edges"], dtype=np.float64)
        weights = np.asarray(d["weights"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReidError(f"--viewpoints {path}: not a histogram file {{\"edges\": [...], \"weights\": [...]}} ({exc})") from None
    if edges.ndim != 1 or len(edges) != len(weights) + 1 or len(weights) < 1:
        raise ReidError(f"--viewpoints {path}: needs len(edges) == len(weights) + 1 >= 2")
    if np.any(np.diff(edges) <= 0) or np.any(weights < 0) or weights.sum() <= 0 or not np.all(np.isfinite(weights)):
        raise ReidError(f"--viewpoints {path}: edges must increase, weights be >= 0 with a positive sum")
    return Viewpoints("file", edges, weights, elevation)


# ----------------------------------------------------------------------------- pose banks
@dataclass
class BankPose:
    key: str                      # source sample key, or "FILE#name"
    joints: np.ndarray            # (33, 3) body frame, mean body
    lifted: L.Lifted | None = None   # dataset poses: the lift (framing, own azimuth, confidences)


def read_pose_file(path: str) -> list[BankPose]:
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ReidError(f"--poses {path}: cannot read a JSON pose bank ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != "mediapipe33" or not isinstance(d.get("poses"), list) or not d["poses"]:
        raise ReidError(f"--poses {path}: expected {{\"format\": \"mediapipe33\", \"poses\": [{{\"name\", \"joints\"}}, ...]}}")
    out = []
    for n, p in enumerate(d["poses"]):
        name = str(p.get("name", n)) if isinstance(p, dict) else str(n)
        try:
            j = np.asarray(p["joints"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise ReidError(f"--poses {path}: pose {name!r} has no joints [[x, y, z] x 33]") from None
        if j.shape != (B.N_JOINTS, 3) or not np.all(np.isfinite(j)):
            raise ReidError(f"--poses {path}: pose {name!r} must have 33 finite [x, y, z] joints, got shape {j.shape}")
        # the body frame's root is the mid-hip point; bank units are rescaled to a body height of 1
        j = j - (j[B.J["left_hip"]] + j[B.J["right_hip"]]) / 2
        height = float(j[:, 1].max() - j[:, 1].min())
        if height <= 1e-9:
            raise ReidError(f"--poses {path}: pose {name!r} has no vertical extent")
        out.append(BankPose(f"{os.path.basename(path)}#{name}", j / (height / 0.95)))
    return out


def image_size(sample: dict, field_name: str) -> tuple[int, int]:
    from PIL import Image

    data = sample[field_name]
    if isinstance(data, Image.Image):
        return data.size[1], data.size[0]
    try:
        with Image.open(io.BytesIO(data)) as im:   # the header only
            return im.size[1], im.size[0]
    except OSError as exc:
        raise SampleError(sample["__shard__"], sample["__key__"], f"field {field_name!r} is not a readable image ({exc})") from None


def lift_sample(sample: dict, m: dict) -> L.Lifted:
    from reidtools.shards import image_field

    fld = image_field(sample)
    if fld is None:
        raise SampleError(sample["__shard__"], sample["__key__"], "no image field (lifting needs the image size)")
    try:
        return L.lift(m["pose"], image_size(sample, fld))
    except (ValueError, KeyError, TypeError) as exc:
        raise SampleError(sample["__shard__"], sample["__key__"], f"cannot lift the pose ({exc})") from None


@dataclass
class Scan:
    owner: dict = field(default_factory=dict)     # (dataset, pid) -> index of its first input shard
    first: dict = field(default_factory=dict)     # (dataset, pid) -> (first key, split)
    bank: list = field(default_factory=list)      # BankPose of the inputs passing pose-target


def scan_inputs(shards: list[str], *, tau_tar: float, keypoints=None) -> Scan:
    from reidtools.generate.posegen.pairs import identity
    from reidtools.shards import iter_shard, require
    from reidtools.vision.rules import PoseTarget

    rule = PoseTarget(tau_tar, list(keypoints) if keypoints else None)
    scan = Scan()
    for n, shard in enumerate(shards):
        for sample in iter_shard(shard):
            m = require(sample, "pid", "pose", hint="`reid posegen poses` needs pids and poses (run `reid pose`)")
            if rule(sample).passed:
                lifted = lift_sample(sample, m)
                scan.bank.append(BankPose(sample["__key__"], lifted.joints, lifted))
            if int(m["pid"]) < 0:
                continue
            ident = identity(m)
            if ident not in scan.owner:
                scan.owner[ident] = n
                scan.first[ident] = (sample["__key__"], m.get("split"))
    return scan


# ----------------------------------------------------------------------------- rendering
@dataclass
class Target:
    joints: np.ndarray            # (33, 3) body frame, retargeted to `shape`
    shape: B.BodyShape
    azimuth: float
    elevation: float
    frame: tuple | None = None    # (pixels per body height, root u, root v) at the target size; None = fit


@dataclass
class Rendered:
    pose: dict
    visible: np.ndarray
    maps: dict                    # name -> PIL image
    frame: tuple


def _scene(t: Target, size):
    cam = L.to_camera(t.joints, t.azimuth, t.elevation)
    frame = t.frame if t.frame is not None else L.frame_fit(cam, 0.07 * t.shape.girth, size)
    s, u0, v0 = frame
    caps, radii, ells = B.primitives(t.joints, t.shape)

    def px(points):
        c = L.to_camera(points.reshape(-1, 3), t.azimuth, t.elevation)
        return np.stack([u0 + s * c[:, 0], v0 + s * c[:, 1], s * c[:, 2]], axis=1)

    caps_px = px(caps).reshape(caps.shape)
    centres = px(ells[:, 0])
    axes = L.to_camera(ells[:, 1:].reshape(-1, 3), t.azimuth, t.elevation).reshape(-1, 3, 3) * s
    ells_px = np.concatenate([centres[:, None], axes], axis=1)
    kp = np.stack([u0 + s * cam[:, 0], v0 + s * cam[:, 1], s * cam[:, 2]], axis=1)
    return caps_px, radii * s, ells_px, kp, frame


def render_targets(targets: list[Target], size, conditions, *, conf=None, threshold: float = 0.3,
                   device=None) -> list[Rendered]:
    """Render a batch: pose (contract format, normalised x, y), visibility and the condition maps."""
    from PIL import Image

    from reidtools.vision.skeleton import render_skeleton

    h, w = size
    scenes = [_scene(t, size) for t in targets]
    # one batch: each primitive is intersected over the union of its screen boxes (2.6x the
    # targets/s of one-at-a-time rendering on the CPU, BENCHMARKS.md)
    depth, normal = R.render(np.stack([sc[0] for sc in scenes]), np.stack([sc[1] for sc in scenes]),
                             np.stack([sc[2] for sc in scenes]), size, device=device)
    depth, normal = depth.cpu().numpy(), normal.cpu().numpy()
    vis_conf, occ_conf = conf if conf is not None else (np.full(B.N_JOINTS, DEFAULT_CONF[0]),
                                                        np.full(B.N_JOINTS, DEFAULT_CONF[1]))
    out = []
    for t, (caps, radii, ells, kp, frame), d, n in zip(targets, scenes, depth, normal):
        s = frame[0]
        col = np.floor(kp[:, 0]).astype(int)
        row = np.floor(kp[:, 1]).astype(int)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        surface = d[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
        slack = 1.5 * B.joint_radius(t.shape) * s + 1.0
        visible = inside & (kp[:, 2] - surface <= slack)
        c = np.where(inside, np.where(visible, vis_conf, occ_conf), 0.0)
        pose = {"format": "mediapipe33",
                "points": [[round(float(u / w), 5), round(float(v / h), 5), round(float(ci), 3)]
                           for (u, v, _), ci in zip(kp, c)]}
        maps = {}
        hit = np.isfinite(d)
        if "skeleton" in conditions:
            maps["skeleton"] = render_skeleton(pose, size, threshold=threshold)
        if "depth" in conditions:
            # the root (mid-hip) is the origin of the camera frame: its depth is 0
            maps["depth"] = Image.fromarray(R.encode_depth(d, 0.0, s))   # uint16 -> mode I;16
        if "normal" in conditions:
            maps["normal"] = Image.fromarray(R.encode_normal(n, hit), "RGB")
        out.append(Rendered(pose, visible, maps, frame))
    return out


def calibrate(bank: list[BankPose], *, device=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per keypoint, the median source confidence when the renderer finds it visible / occluded in
    the pose's own view (up to CALIBRATION_POSES evenly spaced bank poses)."""
    lifted = [b for b in bank if b.lifted is not None]
    if not lifted:
        vis, occ = np.full(B.N_JOINTS, DEFAULT_CONF[0]), np.full(B.N_JOINTS, DEFAULT_CONF[1])
        return vis, occ, {"source": "default", "visible": DEFAULT_CONF[0], "occluded": DEFAULT_CONF[1]}
    pick = [lifted[i] for i in np.unique(np.linspace(0, len(lifted) - 1, min(len(lifted), CALIBRATION_POSES)).astype(int))]
    vis_c, occ_c = [[] for _ in range(B.N_JOINTS)], [[] for _ in range(B.N_JOINTS)]
    size = (64, 32)
    for i in range(0, len(pick), 32):
        chunk = pick[i:i + 32]
        ts = [Target(b.joints, B.BodyShape(), b.lifted.azimuth, 0.0, L.frame_source(b.lifted, size)) for b in chunk]
        for b, r in zip(chunk, render_targets(ts, size, (), device=device)):
            for k in range(B.N_JOINTS):
                (vis_c if r.visible[k] else occ_c)[k].append(float(b.lifted.conf[k]))
    all_vis = [c for cs in vis_c for c in cs]
    all_occ = [c for cs in occ_c for c in cs]
    gv = float(np.median(all_vis)) if all_vis else DEFAULT_CONF[0]
    go = float(np.median(all_occ)) if all_occ else min(DEFAULT_CONF[1], gv)
    vis = np.array([np.median(c) if len(c) >= 5 else gv for c in vis_c])
    occ = np.array([np.median(c) if len(c) >= 5 else go for c in occ_c])
    return vis, occ, {"source": "dataset", "poses": len(pick), "visible": round(gv, 4), "occluded": round(go, 4)}


def own_view_maps(pose: dict, source_size, size, conditions, where=("<memory>", "?")) -> dict:
    """{condition: PNG bytes} of the mean body in a sample's own lifted pose and view, framed as in
    its image: what `fit --render-conditions` trains on, so train and sample maps share a renderer."""
    wanted = [c for c in conditions if c != "skeleton"]
    if not wanted:   # the skeleton is drawn from the pose where it is needed
        return {}
    try:
        lifted = L.lift(pose, source_size)
    except (ValueError, KeyError, TypeError) as exc:
        raise SampleError(*where, f"cannot lift the pose ({exc})") from None
    t = Target(lifted.joints, B.BodyShape(), lifted.azimuth, 0.0, L.frame_source(lifted, size))
    maps = render_targets([t], size, wanted)[0].maps
    out = {}
    for name, img in maps.items():
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out[name] = buf.getvalue()
    return out


# ----------------------------------------------------------------------------- planning and writing
@dataclass
class TargetJob:
    ident: tuple
    index: int
    key: str
    split: str | None
    pose: BankPose
    azimuth: float
    elevation: float
    shape: B.BodyShape
    joints: np.ndarray | None = None   # the bank pose retargeted to `shape` (set when rendered)


def body_shape(seed: int, ident: tuple, spread: float) -> B.BodyShape:
    return B.BodyShape.sample(rng(seed, "posegen-body", *ident), spread)


def plan_targets(scan: Scan, bank: list[BankPose], views: Viewpoints, shard_no: int | None, per_id: int, seed: int,
                 spread: float) -> list[TargetJob]:
    jobs = []
    for ident in sorted(p for p, o in scan.owner.items() if shard_no is None or o == shard_no):
        first, split = scan.first[ident]
        shape = body_shape(seed, ident, spread)
        for index in range(per_id):
            r = rng(seed, "posegen-target", *ident, index)
            pose = bank[int(r.integers(len(bank)))]
            a, e = views.sample(r)
            jobs.append(TargetJob(ident, index, f"{first}-tgt{index:03d}", split, pose, a, e, shape))
    return jobs


@dataclass
class PosesOptions:
    viewpoints: str = "uniform"       # uniform | dataset | FILE
    poses: str = "dataset"            # dataset | FILE
    per_id: int = 15                  # paper §D: ~15 images per identity is best
    conditions: tuple = CONDITIONS
    size: tuple = (512, 256)
    elevation: tuple = (0.0, 0.0)
    shape_spread: float = 0.05
    tau_tar: float = 0.6
    keypoints: tuple | None = None
    skeleton_threshold: float = 0.3
    batch_size: int = 16
    body: str = "capsules"
    seed: int = 0

    def check(self) -> None:
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad or not self.conditions:
            raise ReidError(f"--conditions: {', '.join(bad) or 'none given'} (choose from {', '.join(CONDITIONS)})")
        if self.body != "capsules":
            raise ReidError(f"--body {self.body}: not available in this version (SMPL through smplx is not "
                            "implemented); use --body capsules, the built-in parametric body")


def make_target(job: TargetJob, rendered: Rendered, opts: PosesOptions, params: dict) -> dict:
    from reidtools.shards import history_entry

    dataset, pid = job.ident
    entry = history_entry("posegen-poses", model="capsules", seed=opts.seed, **params, index=job.index,
                          pose_source=job.pose.key,
                          source_azimuth=round(job.pose.lifted.azimuth, 3) if job.pose.lifted else None)
    meta = {"pid": pid, "pose": rendered.pose, "source": job.pose.key, "history": [entry],
            "viewpoint": {"azimuth": round(job.azimuth, 4), "elevation": round(job.elevation, 4)},
            "body": {"model": "capsules", "shape": job.shape.to_json(),
                     "joints": [[round(float(x), 5) for x in p] for p in job.joints]},
            "target_index": job.index, "size": list(opts.size)}
    if dataset:
        meta["dataset"] = dataset
    if job.split:
        meta["split"] = job.split
    out = {"__key__": job.key, "json": meta}
    for name, img in rendered.maps.items():
        out[FIELDS[name]] = img
    return out


def targets_to(shards: list[str], output: str, opts: PosesOptions, *, device=None, task=(0, 1),
               progress: bool = True) -> int:
    """Plan, render and write the targets; returns the number written."""
    from tqdm import tqdm

    from reidtools.shards import STDIN, STDOUT, split_shards
    from reidtools.shards.mapping import write_plans

    opts.check()
    index, count = task
    mine_paths = set(split_shards(shards, index, count))
    todo = []
    for n, s in enumerate(shards):
        if s not in mine_paths:
            continue
        path = None if output == STDOUT else os.path.join(output, os.path.basename(s) if s != STDIN else "stdin-000000.tar")
        if path is not None and os.path.exists(path):
            if s == STDIN:   # no name to resume by: the file may hold another stream's targets
                raise ReidError(f"{path} exists and stdin has no shard name to resume by: remove it or choose "
                                "another -o")
            log.info("%s exists, skipping %s", path, s)
            continue
        todo.append((n, path))
    if not todo:
        return 0
    scan = scan_inputs(shards, tau_tar=opts.tau_tar, keypoints=opts.keypoints)
    if opts.poses == "dataset":
        bank = scan.bank
        if not bank:
            raise ReidError(f"the pose bank is empty: no input sample passes pose-target (--tau-tar {opts.tau_tar})")
    else:
        bank = read_pose_file(opts.poses)
    if opts.viewpoints == "uniform":
        views = Viewpoints("uniform", elevation=opts.elevation)
    elif opts.viewpoints == "dataset":
        views = dataset_viewpoints([b.lifted.azimuth for b in scan.bank], opts.elevation)
    else:
        views = file_viewpoints(opts.viewpoints, opts.elevation)
    vis_conf, occ_conf, calib = calibrate(scan.bank, device=device)
    plans = [(path, plan_targets(scan, bank, views, n, opts.per_id, opts.seed, opts.shape_spread)) for n, path in todo]
    total = sum(len(j) for _, j in plans)
    if total == 0:
        raise ReidError("nothing to make: the input has no identity (pid >= 0)")
    log.info("%d targets for %d identities from a bank of %d poses (%s viewpoints)", total,
             len({j.ident for _, js in plans for j in js}), len(bank), views.mode)
    params = {"viewpoints": views.describe(), "poses": "dataset" if opts.poses == "dataset" else os.path.abspath(opts.poses),
              "conditions": list(opts.conditions), "size": list(opts.size), "shape_spread": opts.shape_spread,
              "tau_tar": opts.tau_tar, "skeleton_threshold": opts.skeleton_threshold, "confidence": calib}
    bar = tqdm(total=total, desc="poses", unit="target", disable=not progress, dynamic_ncols=True, leave=False)

    def samples(jobs):
        for i in range(0, len(jobs), opts.batch_size):
            chunk = jobs[i:i + opts.batch_size]
            ts = []
            for j in chunk:
                j.joints = B.retarget(j.pose.joints, j.shape)
                frame = L.frame_source(j.pose.lifted, opts.size) if j.pose.lifted is not None else None
                ts.append(Target(j.joints, j.shape, j.azimuth, j.elevation, frame))
            for j, r in zip(chunk, render_targets(ts, opts.size, opts.conditions, conf=(vis_conf, occ_conf),
                                                  threshold=opts.skeleton_threshold, device=device)):
                yield make_target(j, r, opts, params)
            bar.update(len(chunk))

    try:
        return write_plans(plans, output, samples, prefix="poses")
    finally:
        bar.close()
