"""Inpainting throughput (images/s) of `reid inpaint`'s generation path with random weights.

Builds an SD-1.5-sized inpainting pipeline (U-Net 859.5M parameters: block_out_channels
(320, 640, 1280, 1280), cross_attention_dim 768, 9 input channels; SD's VAE; a 12-layer CLIP text tower)
and the tests' tiny one, applies the same speed settings as `reid inpaint` (SDPA, channels-last,
optional regional compile) and times `Inpainter.run` on batches of synthetic person crops.

    .venv/bin/python bench/inpaint_speed.py                         # CPU, small size (default)
    .venv/bin/python bench/inpaint_speed.py --device cuda --dtype fp16 --size 768x256 --steps 50 \
        --batch-sizes 1,8,16 --unets sd15 [--compile]              # the DLCR setting on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def jobs(n: int, size: tuple[int, int]):
    from reidtools.generate.inpaint.pipeline import Job

    h, w = size
    r = np.random.RandomState(0)
    out = []
    for i in range(n):
        img = Image.fromarray(r.randint(0, 255, (h, w, 3), dtype=np.uint8))
        m = np.zeros((h, w), np.uint8)
        m[h // 5: 4 * h // 5, w // 6: 5 * w // 6] = 255
        out.append(Job(img, Image.fromarray(m, "L"), f"blue shirt black jeans {i}", seed=i))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--size", default="256x128", help="HxW")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per setting (median reported)")
    ap.add_argument("--unets", default="tiny,sd15")
    ap.add_argument("--tiny-size", default="64x32",
                    help="HxW for the tiny model (its VAE downsamples by 2, not 8: 64x32 gives SD's latent size at 256x128)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import torch

    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, optimize_pipeline, quiet_loading
    from reidtools.testing.models import SD15_TEXT, SD15_UNET, SD15_VAE, make_inpaint_pipeline
    from reidtools.runtime import torch_dtype

    quiet_loading()
    dtype = torch_dtype(args.dtype, args.device)
    results = []
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, dtype {dtype}, "
          f"size {args.size} (tiny: {args.tiny_size})", flush=True)
    for name in args.unets.split(","):
        t0 = time.perf_counter()
        if name == "sd15":
            pipe = make_inpaint_pipeline(unet=SD15_UNET, text=SD15_TEXT, vae_channels=SD15_VAE)
        elif name == "tiny":
            pipe = make_inpaint_pipeline()
        else:
            raise SystemExit(f"unknown --unets entry {name!r}")
        if dtype != torch.float32:
            pipe = pipe.to(dtype=dtype)
        pipe = optimize_pipeline(pipe, args.device, channels_last=not args.no_channels_last, compile=args.compile)
        build_s = time.perf_counter() - t0
        steps = args.steps
        h, w = (int(v) for v in (args.tiny_size if name == "tiny" else args.size).split("x"))
        params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            inp = Inpainter(pipe, InpaintSettings(size=(h, w), steps=steps, guidance=args.guidance))
            batch = jobs(bs, (h, w))
            inp.run(batch)                                   # warm-up (allocations, compile)
            times, cpu = [], []
            for _ in range(args.repeats):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t, c = time.perf_counter(), time.process_time()
                inp.run(batch)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            med = statistics.median(times)
            # CPU seconds of this process: on a shared machine wall time also counts other jobs' load
            cpu_med = statistics.median(cpu)
            row = {"unet": name, "unet_params_M": round(params, 1), "batch": bs, "steps": steps, "size": [h, w],
                   "median_s": round(med, 3), "images_per_s": round(bs / med, 3),
                   "s_per_image_step": round(med / bs / steps, 4), "cpu_s": round(cpu_med, 3),
                   "images_per_cpu_s": round(bs / cpu_med, 3), "build_s": round(build_s, 1)}
            results.append(row)
            print(json.dumps(row), flush=True)
        del pipe
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
