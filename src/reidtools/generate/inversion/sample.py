"""`reid invert sample`: new images of any identity under any camera (DiVE), as jobs (pid x camera x
index) written into atomic shards.

Output shard n holds jobs [n*shard_size, (n+1)*shard_size) of the fixed job order, so a re-run skips
finished shards and array tasks (every count-th shard) never collide.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from reidtools.errors import ReidError
from reidtools.generate.options import GeneratorOptions
from reidtools.generate.inversion.checkpoint import load_pipeline
from reidtools.generate.inversion.data import PAPER_TEMPLATE
from reidtools.seeding import derive_seed

log = logging.getLogger("reidtools")


def select_cameras(manifest: dict, wanted: list[str] | None) -> list[str]:
    """Camera keys to sample: names (`ir3`) or modalities (`ir`); default every IR camera (DiVE
    synthesises infrared images), or every camera when the checkpoint has no IR camera."""
    cams = manifest["cameras"]
    if not wanted:
        ir = [k for k, v in cams.items() if v["modality"] == "ir"]
        return sorted(ir or cams)
    out: list[str] = []
    for w in wanted:
        if w in cams:
            out.append(w)
        elif any(v["modality"] == w for v in cams.values()):
            out.extend(k for k, v in sorted(cams.items()) if v["modality"] == w)
        else:
            raise ReidError(f"--cameras {w!r}: the checkpoint knows cameras {', '.join(sorted(cams))}")
    return list(dict.fromkeys(out))


def select_ids(manifest: dict, wanted: list[str] | None) -> list[str]:
    """Identity keys to sample: keys ("17", "market/17") or bare pids when they are unambiguous."""
    ids = manifest["ids"]
    if not wanted:
        return list(ids)
    out = []
    for w in wanted:
        w = str(w).strip()
        hits = [w] if w in ids else [k for k, v in ids.items() if str(v["pid"]) == w]
        if len(hits) != 1:
            why = "is ambiguous (use DATASET/PID)" if hits else "is not in the checkpoint"
            raise ReidError(f"--ids: {w} {why}; it has {len(ids)} identities, e.g. {next(iter(ids))}")
        out.append(hits[0])
    return list(dict.fromkeys(out))


@dataclass
class Job:
    identity: str    # identity key of the manifest
    camera: str      # camera key of the manifest
    index: int

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"dive-{self.identity}-{self.camera}-{self.index:03d}")


def jobs(ids: list[str], cameras: list[str], per_id: int) -> list[Job]:
    return [Job(p, c, i) for p in ids for c in cameras for i in range(per_id)]


def generate(pipe, manifest: dict, batch: list[Job], *, seed: int, steps: int, guidance: float,
             size: tuple[int, int], scheduler: str, ckpt_dir: str, template: str | None = None) -> list[dict]:
    """Samples for `batch`: one image per job, each from its own seed derive_seed(seed, identity,
    camera, index), so an image does not depend on the batch it was made in."""
    import torch

    template = template or manifest["options"].get("template", PAPER_TEMPLATE)
    prompts, gens, seeds = [], [], []
    for j in batch:
        cam = manifest["cameras"][j.camera]
        prompts.append(template.format(camera=cam["code"], id=manifest["ids"][j.identity]["token"]))
        s = derive_seed(seed, j.identity, j.camera, j.index)
        seeds.append(s)
        gens.append(torch.Generator("cpu").manual_seed(s))
    h, w = size
    images = pipe(prompt=prompts, height=h, width=w, num_inference_steps=steps, guidance_scale=guidance,
                  generator=gens, output_type="pil").images
    out = []
    for j, img, prompt, s in zip(batch, images, prompts, seeds):
        cam, ident = manifest["cameras"][j.camera], manifest["ids"][j.identity]
        # clothes: one id per identity, as `reid pack` labels datasets without clothes ids (Market,
        # SYSU); `reid train` needs one for every sample
        meta = {"split": "train", "pid": ident["pid"], "clothes": str(ident["pid"]), "modality": cam["modality"],
                "history": [{"tool": "invert", "model": manifest["base"], "seed": s, "prompt": prompt,
                             "parameters": {"checkpoint": os.path.abspath(ckpt_dir), "camera": j.camera,
                                            "index": j.index, "steps": steps, "scheduler": scheduler,
                                            "guidance_scale": guidance, "size": [h, w]}}]}
        if cam.get("camid") is not None:
            meta["camid"] = cam["camid"]
        if ident.get("dataset"):
            meta["dataset"] = ident["dataset"]
        out.append({"__key__": j.key, "__shard__": "<invert>", "json": meta, "jpg": img})
    return out


@dataclass(kw_only=True)
class SampleRun(GeneratorOptions):
    ckpt_dir: str
    output: str
    ids: str | None = None               # comma-separated identity keys or pids; None = every identity
    cameras: tuple = ()                  # camera keys or modalities; () = every IR camera
    per_id: int = 18                     # DiVE §4.1
    steps: int = 25                      # DiVE §4.1 (released code: 50)
    scheduler: str = "dpm++"             # DiVE §4.1: DPM-Solver++
    guidance: float = 7.5
    size: tuple[int, int] | None = None  # None = the training size
    base: str | None = None
    shard_size: int = 1000


def run_sample(run: SampleRun, *, progress: bool = True) -> int:
    """Render the selected identities under the selected cameras; returns the samples written."""
    from reidtools.generate.inversion.checkpoint import read_manifest

    manifest = read_manifest(run.ckpt_dir)
    wanted = [p.strip() for p in run.ids.split(",") if p.strip()] if run.ids else None
    size = tuple(run.size) if run.size else tuple(manifest["options"]["size"])
    return sample_to(run, manifest, select_ids(manifest, wanted), select_cameras(manifest, list(run.cameras)), size,
                     progress=progress)


def sample_to(run: SampleRun, manifest: dict, ids: list[str], cameras: list[str], size, *, progress: bool = True) -> int:
    """Generate and write; returns the number of samples written."""
    from tqdm import tqdm

    from reidtools.shards import STDOUT
    from reidtools.shards.mapping import write_plans

    todo = jobs(ids, cameras, run.per_id)
    index, count, output = run.shard_index, run.num_shards, run.output
    chunks = [todo[i:i + run.shard_size] for i in range(0, len(todo), run.shard_size)]
    if output == STDOUT:
        if count > 1:
            raise ReidError("-o - cannot be split across tasks; write a folder")
        mine = [(None, c) for c in chunks]
    else:
        if len(chunks) < count:
            raise ReidError(f"{len(chunks)} output shard(s) for {count} tasks: lower --shard-size or run fewer tasks")
        mine = []
        for n in range(index, len(chunks), count):
            path = os.path.join(output, f"invert-{n:06d}.tar")
            if os.path.exists(path):
                log.info("%s exists, skipping", path)
                continue
            mine.append((path, chunks[n]))
    if not mine:
        return 0
    pipe, manifest, partition = load_pipeline(run.ckpt_dir, base=run.base, scheduler=run.scheduler,
                                              device=run.device, dtype=run.dtype)
    bar = tqdm(total=sum(len(c) for _, c in mine), desc="sample", unit="img", disable=not progress,
               dynamic_ncols=True, leave=False)

    def batches(chunk):
        for i in range(0, len(chunk), run.batch_size):
            batch = chunk[i:i + run.batch_size]
            if partition is not None:   # each image renders with its camera code's portion of the LoRA
                partition.select([j.camera for j in batch])
            out = generate(pipe, manifest, batch, seed=run.seed, steps=run.steps, guidance=run.guidance, size=size,
                           scheduler=run.scheduler, ckpt_dir=run.ckpt_dir)
            bar.update(len(out))
            yield from out

    try:
        return write_plans(mine, output, batches, prefix="invert")
    finally:
        bar.close()
