"""Training pairs of `reid posegen fit`: (reference, target) images of one pid, references kept by
eq. 3 (pose-ref) and targets by eq. 4 (pose-target), the very rules of `reid filter`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reidtools.errors import ReidError, SampleError
from reidtools.generate.posegen.conditions import condition_fields, condition_tensors, image_bytes
from reidtools.seeding import rng

if TYPE_CHECKING:
    from reidtools.generate.posegen.training import FitOptions

log = logging.getLogger("reidtools")


@dataclass
class PairSet:
    images: list = field(default_factory=list)     # encoded image bytes
    pids: list = field(default_factory=list)       # identity(meta): (dataset, pid)
    poses: list = field(default_factory=list)
    extras: list = field(default_factory=list)     # {condition: bytes}
    where: list = field(default_factory=list)      # (shard, key)
    refs: dict = field(default_factory=dict)       # pid -> indices passing pose-ref
    targets: list = field(default_factory=list)    # indices passing pose-target with another ref of their pid
    dataset: str | None = None
    counts: dict = field(default_factory=dict)


def identity(m: dict) -> tuple[str, int]:
    """(dataset, pid): equal pids of different datasets are different people."""
    return (str(m.get("dataset") or ""), int(m["pid"]))


def read_pairs(shards: list[str], opts: FitOptions) -> PairSet:
    """Every image of the input, its pid and pose; which may serve as a reference (eq. 3) and which as a
    target (eq. 4, and at least one OTHER reference image of its pid exists)."""
    from reidtools.shards import image_field, iter_samples, require
    from reidtools.vision.rules import PoseRef, PoseTarget

    keypoints = list(opts.keypoints) if opts.keypoints else None
    ref_rule, tar_rule = PoseRef(opts.tau_ref, keypoints), PoseTarget(opts.tau_tar, keypoints)
    ps = PairSet()
    is_target = []
    datasets: set[str] = set()
    for sample in iter_samples(shards):
        m = require(sample, "pid", "pose", hint="`reid posegen fit` pairs images of one pid; run `reid pose` for poses")
        fld = image_field(sample)
        if fld is None:
            raise SampleError(sample["__shard__"], sample["__key__"], "no image field")
        if int(m["pid"]) < 0:          # junk/distractor labels (Market's -1)
            continue
        pid = identity(m)
        i = len(ps.images)
        if ref_rule(sample).passed:
            ps.refs.setdefault(pid, []).append(i)
        is_target.append(tar_rule(sample).passed)
        extras = {k: image_bytes(sample, f) for k, f in condition_fields(sample, opts.conditions).items()}
        where = (sample["__shard__"], sample["__key__"])
        if is_target[-1] and getattr(opts, "render_conditions", False):
            from reidtools.generate.posegen.targets import image_size, own_view_maps

            extras.update(own_view_maps(m["pose"], image_size(sample, fld), opts.size, opts.conditions, where))
        if is_target[-1]:
            # conditions of a target must be present (checked now, not at step 10,000)
            condition_tensors(m["pose"], extras, opts.conditions, (8, 8),
                              opts.skeleton_threshold, where)
        ps.images.append(image_bytes(sample, fld))
        ps.pids.append(pid)
        ps.poses.append(m["pose"])
        ps.extras.append(extras)
        ps.where.append((sample["__shard__"], sample["__key__"]))
        if m.get("dataset"):
            datasets.add(str(m["dataset"]))
    for i, ok in enumerate(is_target):
        if ok and any(j != i for j in ps.refs.get(ps.pids[i], [])):
            ps.targets.append(i)
    ps.dataset = next(iter(datasets)) if len(datasets) == 1 else None
    ps.counts = {"images": len(ps.images), "references": sum(len(v) for v in ps.refs.values()),
                 "targets": len(ps.targets), "ids": len({ps.pids[i] for i in ps.targets})}
    if not ps.targets:
        raise ReidError(f"no training pair: {ps.counts['images']} images, {ps.counts['references']} pass pose-ref "
                        f"(--tau-ref {opts.tau_ref}), none is a pose-target (--tau-tar {opts.tau_tar}) with another "
                        "reference image of the same pid")
    log.info("%d images: %d references, %d targets over %d ids", *(ps.counts[k] for k in ("images", "references", "targets", "ids")))
    return ps


def pick_reference(ps: PairSet, target: int, step: int, slot: int, seed: int) -> int:
    """A reference image of the target's pid other than the target, drawn from (seed, step, slot)."""
    cands = [j for j in ps.refs[ps.pids[target]] if j != target]
    return cands[int(rng(seed, "reference", step, slot).integers(len(cands)))]
