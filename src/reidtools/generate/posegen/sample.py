"""`reid posegen sample`: every identity of the person shards re-rendered in poses from a pose bank.

- Pose bank: the poses (and depth/normal fields, when the checkpoint uses them) of the samples that
  pass pose-target (eq. 4), from `--poses` shards or, by default, from the person shards themselves.
- Or `--targets`: the target-condition samples `reid posegen poses` made per identity (pose,
  depth.png, normal.png, viewpoint); an identity gets one image per target made for it, target
  index = image index, and no pose bank is drawn from.
- References: an identity's images that pass pose-ref (eq. 3). An identity is (dataset, pid), so
  equal pids of different datasets stay apart.
- Job (identity, index), index < per_id: reference and target pose drawn by rng(seed, "posegen",
  dataset, pid, index); initial noise from derive_seed(seed, "posegen-noise", dataset, pid, index).
  So an image depends only on the seed, the inputs and its (identity, index): not on batching or
  task splitting.
- Output follows the input shards: an identity's images go to the output shard named after the
  first input shard holding it; written atomically, finished shards skipped on a re-run.
- The target pose is recorded as history[-1]["parameters"]["target_pose"] = {"format", "points"}, where
  `reid filter --rule pose-gen` (eqs. 5-6) reads it once `reid pose` has estimated the output's pose.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from reidtools.errors import ReidError, SampleError
from reidtools.generate.options import GeneratorOptions
from reidtools.shards.images import decode
from reidtools.generate.posegen.checkpoint import DENOISING, REFERENCE, load_parts, load_unet_folder
from reidtools.generate.posegen.conditions import condition_fields, condition_tensors, image_bytes, pixels
from reidtools.generate.posegen.net import build_net, load_base
from reidtools.generate.posegen.pairs import identity
from reidtools.seeding import derive_seed, rng

log = logging.getLogger("reidtools")

# metadata that describes the reference image's content, not the generated one's
CONTENT_KEYS = ("pose", "view", "quality", "parse_labels", "frontal")


@dataclass
class PoseEntry:
    key: str
    shard: str
    pose: dict
    extras: dict = field(default_factory=dict)
    camid: int | None = None
    viewpoint: dict | None = None   # targets of `reid posegen poses`: {"azimuth", "elevation"}


@dataclass
class Reference:
    key: str
    shard: str
    image: bytes
    meta: dict


@dataclass
class Job:
    ident: tuple      # (dataset, pid)
    index: int
    ref: Reference
    target: PoseEntry
    seed: int

    @property
    def key(self) -> str:
        return f"{self.ref.key}-pose{self.index:03d}"


def _pose_entry(sample: dict, m: dict, conditions, render_size=None) -> PoseEntry:
    extras = {k: image_bytes(sample, f) for k, f in condition_fields(sample, conditions).items()}
    if render_size is not None:   # a checkpoint fit with --render-conditions: the same renderer's maps
        from reidtools.generate.posegen.targets import image_size, own_view_maps
        from reidtools.shards import image_field

        fld = image_field(sample)
        if fld is None:
            raise SampleError(sample["__shard__"], sample["__key__"], "no image field (rendering needs its size)")
        extras.update(own_view_maps(m["pose"], image_size(sample, fld), render_size, conditions,
                                    (sample["__shard__"], sample["__key__"])))
    missing = [c for c in conditions if c != "skeleton" and c not in extras]
    if missing:
        raise SampleError(sample["__shard__"], sample["__key__"],
                          f"the checkpoint uses --conditions {','.join(conditions)}: pose-bank samples need "
                          f"{', '.join(f'{c}.png' for c in missing)}")
    camid = m.get("camid")
    return PoseEntry(sample["__key__"], sample["__shard__"], {"format": m["pose"].get("format"),
                                                              "points": m["pose"]["points"]}, extras,
                     int(camid) if camid is not None else None)


def read_pose_bank(shards: list[str], conditions, tau_tar: float, keypoints=None, render_size=None) -> list[PoseEntry]:
    """The poses of the samples that pass pose-target (eq. 4), in input order."""
    from reidtools.shards import iter_samples
    from reidtools.vision.rules import PoseTarget, sample_pose

    rule = PoseTarget(tau_tar, list(keypoints) if keypoints else None)
    bank = []
    for sample in iter_samples(shards):
        sample_pose(sample)   # a clear error for a sample without pose
        if rule(sample).passed:
            from reidtools.shards import meta

            bank.append(_pose_entry(sample, meta(sample), conditions, render_size))
    return bank


def read_targets(shards: list[str], conditions) -> dict:
    """{(dataset, pid): [(target_index, PoseEntry), ...] in index order} from `reid posegen poses` output."""
    from reidtools.shards import iter_samples, meta

    out: dict = {}
    for sample in iter_samples(shards):
        m = meta(sample)
        if "viewpoint" not in m or "target_index" not in m or "pid" not in m or m.get("pose") is None:
            raise SampleError(sample["__shard__"], sample["__key__"], "not a `reid posegen poses` target "
                              "(needs pid, pose, viewpoint and target_index)")
        entry = _pose_entry(sample, m, conditions)
        entry.viewpoint = dict(m["viewpoint"])
        out.setdefault(identity(m), []).append((int(m["target_index"]), entry))
    for ident, items in out.items():
        items.sort(key=lambda t: t[0])
        idx = [i for i, _ in items]
        if len(set(idx)) != len(idx):
            raise ReidError(f"--targets: identity {ident[0] + '/' if ident[0] else ''}{ident[1]} has target_index "
                            "values twice (two `posegen poses` runs mixed?)")
    return out


@dataclass
class PersonScan:
    owner: dict = field(default_factory=dict)       # pid -> index of its first input shard
    refs: dict = field(default_factory=dict)        # pid -> [Reference] (only pids owned by this task)
    bank: list = field(default_factory=list)        # pose-target entries (when the bank is the dataset)
    no_ref: set = field(default_factory=set)


def scan_persons(shards: list[str], mine: set[int], *, conditions, tau_ref: float, tau_tar: float, keypoints,
                 want_bank: bool, render_size=None) -> PersonScan:
    """One pass over every person shard: owners of pids, references of this task's pids, and the
    dataset's pose bank if asked."""
    from reidtools.shards import image_field, iter_shard, require
    from reidtools.vision.rules import PoseRef, PoseTarget

    kp = list(keypoints) if keypoints else None
    ref_rule, tar_rule = PoseRef(tau_ref, kp), PoseTarget(tau_tar, kp)
    scan = PersonScan()
    seen: set[int] = set()
    for n, shard in enumerate(shards):
        for sample in iter_shard(shard):
            m = require(sample, "pid", "pose", hint="`reid posegen sample` needs pids and poses (run `reid pose`)")
            if want_bank and tar_rule(sample).passed:
                scan.bank.append(_pose_entry(sample, m, conditions, render_size))
            if int(m["pid"]) < 0:
                continue
            pid = identity(m)
            scan.owner.setdefault(pid, n)
            seen.add(pid)
            if scan.owner[pid] in mine and ref_rule(sample).passed:
                fld = image_field(sample)
                if fld is None:
                    raise SampleError(sample["__shard__"], sample["__key__"], "no image field")
                scan.refs.setdefault(pid, []).append(
                    Reference(sample["__key__"], sample["__shard__"], image_bytes(sample, fld), dict(m)))
    scan.no_ref = {p for p in seen if scan.owner[p] in mine and p not in scan.refs}
    return scan


def plan_jobs(scan: PersonScan, bank: list[PoseEntry], shard_no: int, per_id: int, seed: int,
              targets: dict | None = None) -> list[Job]:
    jobs = []
    for ident in sorted(p for p, o in scan.owner.items() if o == shard_no and p in scan.refs):
        refs = scan.refs[ident]
        made = None if targets is None else targets.get(ident, [])
        for index in (range(per_id) if made is None else [i for i, _ in made]):
            r = rng(seed, "posegen", *ident, index)
            ref = refs[int(r.integers(len(refs)))]
            if made is None:
                target = bank[int(r.integers(len(bank)))]
            else:
                target = next(e for i, e in made if i == index)
            jobs.append(Job(ident, index, ref, target, derive_seed(seed, "posegen-noise", *ident, index)))
    return jobs


# ----------------------------------------------------------------------------- the model
class PoseGenerator:
    """A fit checkpoint loaded for sampling: VAE and scheduler of the base, both U-Nets, guiders,
    image encoder (+ projection)."""

    def __init__(self, ckpt_dir: str, manifest: dict, *, base: str | None = None, image_encoder: str | None = None,
                 device: str | None = None, dtype: str = "fp16"):
        from reidtools.generate.posegen.net import ImageEncoder
        from reidtools.runtime import best_device, torch_dtype

        o = manifest["options"]
        self.manifest, self.ckpt_dir = manifest, ckpt_dir
        self.base = base or manifest["base"]
        self.image_encoder = image_encoder or manifest["image_encoder"]
        self.device = best_device(device)
        self.dtype = torch_dtype(dtype, self.device)
        ref_dir = os.path.join(ckpt_dir, REFERENCE)
        vae, base_unet, noise, _ = load_base(self.base, with_unet=not os.path.isdir(ref_dir))
        unet = load_unet_folder(os.path.join(ckpt_dir, DENOISING))
        reference = load_unet_folder(ref_dir) if base_unet is None else base_unet
        self.encoder = ImageEncoder(self.image_encoder)
        if self.encoder.dim != manifest.get("embed_dim", self.encoder.dim):
            raise ReidError(f"--image-encoder {self.image_encoder}: embeddings of width {self.encoder.dim}, "
                            f"the checkpoint was trained with {manifest['embed_dim']}")
        self.conditions = list(o["conditions"])
        self.threshold = float(o["skeleton_threshold"])
        self.net = build_net(unet, reference, self.conditions, o["guider_channels"], o["inject"], self.encoder.dim,
                             False, vae)
        load_parts(self.net, ckpt_dir, manifest)
        import torch

        half = {"dtype": self.dtype} if self.dtype != torch.float32 else {}
        self.net.eval().to(self.device, **half)
        self.vae = vae.eval().to(self.device, **half)
        self.encoder.to(self.device, self.dtype if half else None)
        self.scheduler_config = noise.config

    @classmethod
    def from_parts(cls, net, vae, encoder, scheduler_config, conditions, threshold: float, device, dtype):
        """A sampler around models already in memory (`posegen fit`'s validation images)."""
        gen = cls.__new__(cls)
        gen.net, gen.vae, gen.encoder, gen.scheduler_config = net, vae, encoder, scheduler_config
        gen.conditions, gen.threshold, gen.device, gen.dtype = list(conditions), float(threshold), device, dtype
        gen.manifest, gen.ckpt_dir = None, None
        return gen

    def scheduler(self, name: str):
        from reidtools.generate.schedulers import make_scheduler

        # AnimateAnyone (on which Pose-dIVE builds) samples with DDIM; "default" means that here
        return make_scheduler("ddim" if name == "default" else name, self.scheduler_config)

    def __call__(self, jobs: list[Job], *, steps: int, guidance: float, size, scheduler: str):
        """One PIL image per job."""
        import torch
        from PIL import Image

        dev, dt = self.device, self.dtype
        refs = [decode(j.ref.image, "RGB") for j in jobs]
        conds: dict = {c: [] for c in self.conditions}
        for j in jobs:
            for name, t in condition_tensors(j.target.pose, j.target.extras, self.conditions, size, self.threshold,
                                             (j.target.shard, j.target.key)).items():
                conds[name].append(t)
        h, w = size
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        shape = (1, self.net.denoising_unet.config.in_channels, h // factor, w // factor)
        latents = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(j.seed)) for j in jobs])
        sched = self.scheduler(scheduler)
        sched.set_timesteps(steps, device=dev)
        cfg = guidance > 1.0
        with torch.no_grad():
            sf = self.vae.config.scaling_factor
            ref_latents = self.vae.encode(torch.stack([pixels(r, size) for r in refs]).to(dev, dt)).latent_dist.mean * sf
            raw = self.encoder(refs).to(dt)
            context = self.net.project(raw)
            uncond = self.net.project(torch.zeros_like(raw)) if cfg else None
            self.net.encode_reference(ref_latents, context)
            guide = self.net.guiders({k: torch.stack(v).to(dev, dt) for k, v in conds.items()})
            latents = latents.to(dev, dt) * sched.init_noise_sigma
            for t in sched.timesteps:
                x = sched.scale_model_input(latents, t)
                pred = self.net.denoise(x, t, context, guide)
                if cfg:   # unconditional: no reference at all, as trained with --uncond-prob
                    bank, self.net.control.bank = self.net.control.bank, {}
                    try:
                        u = self.net.denoise(x, t, uncond, guide)
                    finally:
                        self.net.control.bank = bank
                    pred = u + guidance * (pred - u)
                latents = sched.step(pred, t, latents).prev_sample
            self.net.control.clear()
            img = self.vae.decode(latents / sf).sample
        arr = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a, "RGB") for a in arr]


def make_sample(job: Job, img, *, model: str, params: dict) -> dict:
    from reidtools.shards import derive, history_entry

    t = job.target
    entry = history_entry("posegen", model=model, seed=job.seed, **params, reference=job.ref.key, index=job.index,
                          target_pose={"format": t.pose["format"], "points": t.pose["points"]},
                          target_source=t.key, target_camid=t.camid,
                          **({"target_viewpoint": t.viewpoint} if t.viewpoint is not None else {}))
    ref = {"__key__": job.ref.key, "__shard__": job.ref.shard, "json": job.ref.meta}
    out = derive(ref, job.key, entry, jpg=img)
    for k in CONTENT_KEYS:
        out["json"].pop(k, None)
    return out


# ----------------------------------------------------------------------------- writing
@dataclass(kw_only=True)
class SampleRun(GeneratorOptions):
    """`reid posegen sample`'s options (Pose-dIVE seed 004; AnimateAnyone's sampler where it is silent)."""
    ckpt_dir: str
    inputs: tuple                        # person shards (references)
    output: str
    poses: tuple = ()                    # pose-bank shards; () or ("dataset",) = the person shards' own
    targets: tuple = ()                  # `reid posegen poses` output: one image per target instead
    per_id: int = 15                     # Fig. 2: ~15 per identity
    steps: int = 25
    scheduler: str = "ddim"
    guidance: float = 3.5
    size: tuple[int, int] | None = None  # None = the training size
    tau_ref: float = 0.6                 # eq. 3
    tau_tar: float = 0.6                 # eq. 4
    keypoints: list | None = None
    base: str | None = None
    image_encoder: str | None = None


def run_sample(run: SampleRun, *, progress: bool = True) -> int:
    from reidtools.generate.posegen.checkpoint import read_manifest
    from reidtools.shards import expand_inputs

    manifest = read_manifest(run.ckpt_dir)
    size = tuple(run.size) if run.size else tuple(manifest["options"]["size"])
    poses = list(run.poses)
    if poses and poses != ["dataset"] and "dataset" in poses:
        raise ReidError("--poses: `dataset` cannot be mixed with pose shards")
    pose_shards = expand_inputs(poses) if poses and poses != ["dataset"] else None
    target_shards = expand_inputs(list(run.targets)) if run.targets else None
    return sample_to(run.ckpt_dir, expand_inputs(list(run.inputs)), run.output, manifest, poses=pose_shards,
                     targets=target_shards, per_id=run.per_id, steps=run.steps, scheduler=run.scheduler,
                     guidance=run.guidance, size=size, batch_size=run.batch_size, dtype=run.dtype, device=run.device,
                     seed=run.seed, tau_ref=run.tau_ref, tau_tar=run.tau_tar, keypoints=run.keypoints, base=run.base,
                     image_encoder=run.image_encoder, task=(run.shard_index, run.num_shards), progress=progress)


def sample_to(ckpt_dir: str, shards: list[str], output: str, manifest: dict, *, poses: list[str] | None,
              targets: list[str] | None = None,
              per_id: int, steps: int, scheduler: str, guidance: float, size, batch_size: int, dtype: str,
              device: str | None, seed: int, tau_ref: float, tau_tar: float, keypoints=None,
              base: str | None = None, image_encoder: str | None = None, task=(0, 1), progress: bool = True) -> int:
    """Generate and write; returns the number of samples written."""
    from tqdm import tqdm

    from reidtools.shards import STDIN, STDOUT, split_shards
    from reidtools.shards.mapping import write_plans

    from reidtools.generate.schedulers import NAMES

    if scheduler not in NAMES:
        raise ReidError(f"--scheduler {scheduler!r} is not one of {', '.join(NAMES)}")
    conditions = list(manifest["options"]["conditions"])
    index, count = task
    mine_paths = split_shards(shards, index, count)
    mine = {n for n, s in enumerate(shards) if s in set(mine_paths)}
    todo = []
    for n in sorted(mine):
        path = None if output == STDOUT else os.path.join(output, os.path.basename(shards[n]) if shards[n] != STDIN
                                                          else "stdin-000000.tar")
        if path is not None and os.path.exists(path):
            log.info("%s exists, skipping %s", path, shards[n])
            continue
        todo.append((n, path))
    if not todo:
        return 0
    if targets is not None and poses is not None:
        raise ReidError("--targets and --poses both give the target poses: use one")
    # a checkpoint fit on rendered maps gets the bank's maps from the same renderer (at the output size)
    render_size = tuple(size) if manifest["options"].get("render_conditions") and set(conditions) - {"skeleton"} else None
    scan = scan_persons(shards, {n for n, _ in todo}, conditions=conditions, tau_ref=tau_ref, tau_tar=tau_tar,
                        keypoints=keypoints, want_bank=poses is None and targets is None, render_size=render_size)
    made = None
    if targets is not None:
        made = read_targets(targets, conditions)
        bank = [e for items in made.values() for _, e in items]
        mine_ids = {p for p, o in scan.owner.items() if o in {n for n, _ in todo} and p in scan.refs}
        without = sorted(mine_ids - set(made))
        if without:
            log.warning("%d identities have no target in --targets and get no new images: %s", len(without),
                        ", ".join(f"{d}/{p}" if d else str(p) for d, p in without[:10]))
        unknown = set(made) - set(scan.owner)
        if unknown:
            log.warning("%d identities of --targets are not in the person shards: their targets are unused",
                        len(unknown))
    else:
        bank = scan.bank if poses is None else read_pose_bank(poses, conditions, tau_tar, keypoints, render_size)
    if not bank:
        what = "--targets" if targets is not None else "the person shards" if poses is None else "--poses"
        raise ReidError(f"the pose bank is empty: no sample of {what} "
                        + ("holds a target" if targets is not None else f"passes pose-target (--tau-tar {tau_tar})"))
    if scan.no_ref:
        log.warning("%d identities have no image passing pose-ref (--tau-ref %s) and get no new images: %s",
                    len(scan.no_ref), tau_ref, ", ".join(f"{d}/{p}" if d else str(p) for d, p in sorted(scan.no_ref)[:10]))
    plans = [(path, plan_jobs(scan, bank, n, per_id, seed, made)) for n, path in todo]
    total = sum(len(j) for _, j in plans)
    log.info("%d images for %d identities from a bank of %d poses", total, len(scan.refs), len(bank))
    if total == 0:
        raise ReidError("nothing to generate: no identity has a reference image passing pose-ref "
                        f"(--tau-ref {tau_ref})")
    gen = PoseGenerator(ckpt_dir, manifest, base=base, image_encoder=image_encoder, device=device, dtype=dtype)
    params = {"checkpoint": os.path.abspath(ckpt_dir), "checkpoint_step": manifest.get("step"),
              "image_encoder": gen.image_encoder, "conditions": conditions, "steps": steps, "scheduler": scheduler,
              "guidance_scale": guidance, "size": list(size), "skeleton_threshold": gen.threshold,
              "pose_bank": "targets" if targets is not None else "dataset" if poses is None else "shards"}
    bar = tqdm(total=total, desc="posegen", unit="img", disable=not progress, dynamic_ncols=True, leave=False)

    def samples(jobs):
        for i in range(0, len(jobs), batch_size):
            chunk = jobs[i:i + batch_size]
            for job, img in zip(chunk, gen(chunk, steps=steps, guidance=guidance, size=size, scheduler=scheduler)):
                yield make_sample(job, img, model=gen.base, params=params)
            bar.update(len(chunk))

    try:  # AtomicShard creates the output folder
        return write_plans(plans, output, samples, prefix="posegen")
    finally:
        bar.close()
