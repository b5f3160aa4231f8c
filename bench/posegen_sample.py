"""`reid posegen sample`'s generation throughput (img/s) and peak memory, with random weights.

--arch full: Pose-dIVE's published architecture, built by `reidtools.testing.fullsize` in the hub
layout (`sd15`: SD-1.5's U-Net, VAE and scheduler as the reference and denoising U-Nets' base;
`clip-vit-large-patch14`: the CLIP ViT-L/14 image encoder, 768 = SD-1.5's cross-attention width, so no
projection). --arch tiny: the tests' tiny models (`reidtools.testing.posegen`).

A checkpoint is written as `reid posegen fit` writes one (denoising U-Net, zero-initialised pose
guiders for skeleton + depth + normal, manifest with SHA-256s; no training step: the weights are
random either way), then loaded by `PoseGenerator`, the class `reid posegen sample` uses, and timed
on batches of `reid synth` identities with depth/normal maps rendered from their poses
(`--render-conditions`). Defaults are `reid posegen sample`'s: 512x256 (the training size), 25 DDIM
steps, guidance 3.5 (so every step runs the denoising U-Net twice), batch 8, fp16.

    .venv/bin/python bench/posegen_sample.py --arch tiny --device cpu --dtype fp32 --steps 2 --size 64x32
    python bench/posegen_sample.py --arch full --device cuda            # the GPU figure (bench/gpu.sh)
    python bench/posegen_sample.py --arch full --device cpu --size 64x32 --steps 1 --batch 1 --repeats 1
                                                                        # the same path on a CPU (~9 GiB)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

CONDITIONS = ("skeleton", "depth", "normal")   # seed 004 §B, Fig. 1: the three spatially aligned conditions


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(device) -> dict:
    import torch

    if device.type == "cuda":
        return {"peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def build_models(arch: str, work: str, device) -> dict:
    """{"base": folder, "image_encoder": folder} of random-weight models in the hub layout."""
    if arch == "tiny":
        from reidtools.testing.posegen import write_tiny_posegen

        return write_tiny_posegen(work)
    from reidtools.testing.fullsize import build

    # fp32, as the hub's SD-1.5 and CLIP weights are; made on the device (the CPU's RNG is serial)
    return {"base": build("sd15", os.path.join(work, "sd15"), device=device),
            "image_encoder": build("clip-vit-large-patch14", os.path.join(work, "clip-l"), device=device)}


def write_checkpoint(folder: str, base: str, image_encoder: str, size, guider_channels) -> dict:
    """What `reid posegen fit` writes (`save_artifact`), for the net as fit initialises it."""
    from dataclasses import asdict

    from reidtools.generate.posegen.checkpoint import FORMAT, load_unet_folder, save_artifact
    from reidtools.generate.posegen.net import ImageEncoder, build_net, load_base
    from reidtools.generate.posegen.training import FitOptions

    opts = FitOptions(base=base, image_encoder=image_encoder, conditions=CONDITIONS, size=tuple(size),
                      guider_channels=tuple(guider_channels), render_conditions=True, steps=1)
    vae, unet, _, path = load_base(base)
    reference = load_unet_folder(os.path.join(path, "unet"))
    encoder = ImageEncoder(image_encoder)
    net = build_net(unet, reference, opts.conditions, opts.guider_channels, opts.inject, encoder.dim, False, vae)
    manifest = {"format": FORMAT, "base": base, "image_encoder": image_encoder, "dataset": "synthetic",
                "pairs": {}, "embed_dim": encoder.dim, "step": 0, "last_loss": math.nan,
                "options": {**asdict(opts), "size": list(opts.size), "conditions": list(opts.conditions),
                            "guider_channels": list(opts.guider_channels), "keypoints": None}}
    manifest = save_artifact(folder, net, manifest, False)
    net.control.remove()
    return manifest


def plan(work: str, size, count: int, seed: int = 0):
    """`count` jobs (reference image, target pose with rendered depth/normal, noise seed) over synthetic ids."""
    from reidtools.data.synth import write_dataset
    from reidtools.generate.posegen.sample import plan_jobs, scan_persons

    ids = max(2, math.ceil(count / 4))
    write_dataset(os.path.join(work, "synth"), ids=ids, outfits=1, cams=2, images_per=2, size=(128, 64))
    shard = os.path.join(work, "synth", "train-000000.tar")
    scan = scan_persons([shard], {0}, conditions=CONDITIONS, tau_ref=0.6, tau_tar=0.6, keypoints=None,
                        want_bank=True, render_size=tuple(size))
    jobs = plan_jobs(scan, scan.bank, 0, per_id=4, seed=seed)
    if len(jobs) < count:
        raise SystemExit(f"only {len(jobs)} jobs from the synthetic identities (wanted {count})")
    return jobs[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp16", help="reid posegen sample's --dtype (fp16 runs fp32 on a CPU)")
    ap.add_argument("--size", default="512x256", help="HxW (reid posegen fit's default training size)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=3.5)
    ap.add_argument("--scheduler", default="ddim")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="timed batches (median reported), after one warm-up batch")
    ap.add_argument("--work", default=None, help="folder for the models and checkpoint (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="also append the result here (one JSON line)")
    args = ap.parse_args()

    import torch

    from reidtools.generate.inpaint.pipeline import quiet_loading
    from reidtools.generate.posegen.checkpoint import read_manifest
    from reidtools.generate.posegen.sample import PoseGenerator
    from reidtools.runtime import best_device, dtype_name

    quiet_loading()
    h, w = (int(v) for v in args.size.lower().split("x"))
    device = best_device(args.device)
    work = args.work or tempfile.mkdtemp(prefix="posegen-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        t = time.perf_counter()
        models = build_models(args.arch, os.path.join(work, "models"), device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        build_s = time.perf_counter() - t
        from reidtools.testing.posegen import TINY_GUIDER_CHANNELS
        from reidtools.generate.posegen.training import FitOptions

        channels = TINY_GUIDER_CHANNELS if args.arch == "tiny" else FitOptions().guider_channels
        t = time.perf_counter()
        ckpt = os.path.join(work, "ckpt")
        write_checkpoint(ckpt, models["base"], models["image_encoder"], (h, w), channels)
        gc.collect()   # the writer's two U-Nets (reference-attention hooks hold cycles) before the sampler's
        jobs = plan(work, (h, w), args.batch)
        prep_s = time.perf_counter() - t
        t = time.perf_counter()
        gen = PoseGenerator(ckpt, read_manifest(ckpt), device=str(device), dtype=args.dtype)
        _sync(device)
        load_s = time.perf_counter() - t
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        call = dict(guidance=args.guidance, size=(h, w), scheduler=args.scheduler)
        images = gen(jobs, steps=min(args.steps, 2), **call)   # warm-up: kernels, cuDNN's algorithm choice
        assert len(images) == args.batch and images[0].size == (w, h)
        times = []
        for _ in range(args.repeats):
            _sync(device)
            t = time.perf_counter()
            gen(jobs, steps=args.steps, **call)
            _sync(device)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        res = {"figure": "posegen sample", "arch": "Pose-dIVE: 2 x SD-1.5 U-Net + CLIP ViT-L/14" if args.arch == "full"
               else "tiny", "device": str(device), "dtype": dtype_name(gen.dtype), "size": [h, w],
               "steps": args.steps, "scheduler": args.scheduler, "guidance": args.guidance,
               "conditions": list(CONDITIONS), "batch": args.batch, "repeats": args.repeats,
               "s_per_batch": round(sec, 3), "img_per_s": round(args.batch / sec, 3),
               "build_s": round(build_s, 1), "checkpoint_s": round(prep_s, 1), "load_s": round(load_s, 1),
               **_peak(device)}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res), flush=True)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
