"""Benchmark `reid tryon`'s pipeline (`TryOnPipeline`, what the command calls per pair): seconds per image.

--arch tiny (default): tiny random-weight IDM-VTON models on the CPU. Cases: the default (guidance
2.0: two try-on U-Net branches, garment U-Net every step, IP-Adapter), guidance off (1.0: one branch,
no unconditional reference), no IP-Adapter, and --offload's hooks with the CPU as execution device
(pure hook overhead: nothing moves). Tiny models measure the pipeline's overhead and relative costs,
not the real SDXL-size model (see docs/tryon.md).

--arch full: IDM-VTON at published size (`reidtools.testing.fullsize.build("idm-vton")`: two SDXL
U-Nets, CLIP-L + OpenCLIP-bigG text encoders, CLIP ViT-H/14, SDXL VAE; 7.1 B parameters), random
weights made on --device in --dtype and saved in the hub layout, then loaded by
`TryOnPipeline.from_pretrained` as `reid tryon --model DIR` loads them. Defaults are `reid tryon`'s:
1024x768, 30 DDPM steps, guidance 2.0, fp16 (the SDXL VAE runs in fp32: force_upcast). --cases
`default` and, on a GPU, `offload` (`reid tryon --offload`: one model on the GPU at a time); each
reports s/image (median of --repeats; on a GPU after a 2-step warm-up) and peak memory (GPU: max allocated
since the pipeline was loaded; CPU: the process's peak RSS).

    .venv/bin/python bench/tryon.py [--repeats 3] [--steps 5] [--size 128x96] [--pairs 2]
    python bench/tryon.py --arch full --device cuda                       # the GPU figure (bench/gpu.sh)
    python bench/tryon.py --arch full --device cpu --dtype bf16 --size 64x32 --steps 1 --repeats 1 --cases default
                                                                          # the same path on a CPU (~15 GiB)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def tiny(args) -> None:
    import torch

    from reidtools.generate.tryon.pipeline import TryOnPipeline, TryOnSettings
    from reidtools.testing.idmvton import write_tiny_idmvton

    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(3 * args.pairs)]
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 8: -w // 8] = 255
    mask = Image.fromarray(m, "L")
    with tempfile.TemporaryDirectory() as d:
        write_tiny_idmvton(d)
        pipes = {"default": TryOnPipeline.from_pretrained(d),
                 "no_ip_adapter": TryOnPipeline.from_pretrained(d, ip_adapter=False),
                 "offload_hooks_cpu": TryOnPipeline.from_pretrained(d, offload=True)}
        cases = {"default": ("default", 2.0), "no_guidance": ("default", 1.0),
                 "no_ip_adapter": ("no_ip_adapter", 2.0), "offload_hooks_cpu": ("offload_hooks_cpu", 2.0)}
        for p in pipes.values():   # warm-up
            p(imgs[0], mask, imgs[1], imgs[2], 0, TryOnSettings(steps=1, size=(h, w)))
        results = {}
        for name, (key, guidance) in cases.items():
            s = TryOnSettings(steps=args.steps, guidance=guidance, size=(h, w))
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for i in range(args.pairs):
                    pipes[key](imgs[3 * i], mask, imgs[3 * i + 1], imgs[3 * i + 2], i, s)
                times.append((time.perf_counter() - t) / args.pairs)
            results[name] = statistics.median(times)
    base = results["default"]
    print(f"tiny IDM-VTON pipeline, {h}x{w}, {args.steps} DDPM steps, {args.pairs} pairs, "
          f"median of {args.repeats}, s/pair:")
    for name, sec in results.items():
        print(f"  {name:18s} {sec:8.4f}  ({base / sec:.2f}x vs default)")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(h: int, w: int):
    """A ReID-sized person (256x128) with an upper-body mask, a pose image at the generation size and a
    garment at `reid tryoff`'s output size (512x384), as `reid tryon` hands them to the pipeline."""
    rng = np.random.default_rng(0)
    person = Image.fromarray(rng.integers(0, 255, (256, 128, 3), dtype=np.uint8))
    m = np.zeros((256, 128), np.uint8)
    m[64:160, 16:112] = 255
    pose = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    garment = Image.fromarray(rng.integers(0, 255, (512, 384, 3), dtype=np.uint8))
    return person, Image.fromarray(m, "L"), pose, garment


def full(args) -> None:
    import torch

    from reidtools.generate.inpaint.pipeline import quiet_loading
    from reidtools.generate.tryon.pipeline import TryOnPipeline, TryOnSettings
    from reidtools.runtime import best_device, torch_dtype

    quiet_loading()
    h, w = (int(v) for v in args.size.split("x"))
    device = best_device(args.device)
    dtype = torch_dtype(args.dtype, device)
    cases = args.cases.split(",")
    if "offload" in cases and device.type == "cpu":
        raise SystemExit("--cases offload: reid tryon --offload needs a GPU")
    work = args.model or tempfile.mkdtemp(prefix="tryon-bench-")
    build_s = None
    try:
        if not args.model:
            from reidtools.testing.fullsize import build

            t = time.perf_counter()
            # random weights made where they will run, in the dtype they will run in: the CPU's serial RNG
            # takes minutes for 7.1 B parameters, a GPU seconds
            build("idm-vton", work, device=device, dtype=dtype)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            build_s = round(time.perf_counter() - t, 1)
        person, mask, pose, garment = _inputs(h, w)
        for case in cases:
            t = time.perf_counter()
            pipe = TryOnPipeline.from_pretrained(work, device=device, dtype=dtype, offload=case == "offload")
            _sync(device)
            load_s = time.perf_counter() - t
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            settings = TryOnSettings(steps=args.steps, guidance=args.guidance, size=(h, w))
            if device.type == "cuda":   # lazy CUDA init, cuDNN's algorithm choice; a CPU run is a check, not a figure
                pipe(person, mask, pose, garment, 0, TryOnSettings(steps=min(2, args.steps), guidance=args.guidance,
                                                                   size=(h, w)))
            times = []
            for i in range(args.repeats):
                _sync(device)
                t = time.perf_counter()
                out = pipe(person, mask, pose, garment, i, settings)
                _sync(device)
                times.append(time.perf_counter() - t)
            assert out.size == person.size
            if device.type == "cuda":
                peak = {"peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
            else:
                peak = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
            res = {"figure": "tryon", "arch": f"IDM-VTON layout from {args.model}" if args.model else
                   "IDM-VTON (SDXL) full size", "case": case, "device": str(device),
                   **pipe.precision(),
                   "size": [h, w], "steps": args.steps, "guidance": args.guidance, "repeats": args.repeats,
                   "s_per_image": round(statistics.median(times), 3), "build_s": build_s, "load_s": round(load_s, 1),
                   **peak}
            print(json.dumps(res), flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(res) + "\n")
            del pipe, out
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if not args.model:
            shutil.rmtree(work, ignore_errors=True)   # 14 GB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="DDPM steps (tiny: 5; full: 30, reid tryon's)")
    ap.add_argument("--size", default=None, help="HxW (tiny: 128x96; full: 1024x768, reid tryon's)")
    ap.add_argument("--pairs", type=int, default=2, help="tiny: pairs per timed repeat")
    ap.add_argument("--device", default="cpu", help="full: where the models are made and run")
    ap.add_argument("--dtype", default="fp16", help="full: reid tryon's --dtype (fp16 runs fp32 on a CPU: "
                                                    "28 GB; use bf16 there)")
    ap.add_argument("--guidance", type=float, default=2.0, help="full: reid tryon's --guidance")
    ap.add_argument("--cases", default="default", help="full: default and/or offload (GPU only), comma-separated")
    ap.add_argument("--model", default=None, help="full: an IDM-VTON folder already built (kept); else one is "
                                                  "built in a temporary folder and removed")
    ap.add_argument("--json", default=None, help="full: also append each case's result here (JSON lines)")
    args = ap.parse_args()
    if args.arch == "tiny":
        args.steps, args.size = args.steps or 5, args.size or "128x96"
        tiny(args)
    else:
        args.steps, args.size = args.steps or 30, args.size or "1024x768"
        full(args)


if __name__ == "__main__":
    main()
