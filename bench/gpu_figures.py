"""Device-aware figures that the other bench scripts measure on the CPU only (used by bench/gpu.sh).

    python bench/gpu_figures.py train   --device cuda --backbones resnet50,clip-b16 [--quick]
    python bench/gpu_figures.py extract --device cuda --images 93820 [--quick]

- train: ReID training images/s (forward + CE + triplet + backward + Adam, AMP fp16 on CUDA) of
  `reid train`'s model (reidtools.reid.heads.ReidModel) at 256x128, batch 64 (16x4), random
  full-size weights; median over steps after a warm-up. Peak GPU memory.
- extract: `reid eval --model RUN`'s GPU part, feature extraction (ResNet-50, 256x128, batch 256, fp16),
  images/s, and the time it projects for MSMT17's test set (11,659 query + 82,161 gallery images).
- rank: `reid eval`'s ranking step (reidtools.metrics.evaluate, CPU) at MSMT17 scale on
  bench/eval_speed.py's random features; extract + rank is `reid eval` at MSMT17 scale.
--quick: tiny backbones, 64x32, a few steps (the CPU check of the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gib(device: str):
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def train(device: str, backbone: str, size: tuple[int, int], p: int, k: int, steps: int) -> dict:
    import torch

    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.heads import ReidModel
    from reidtools.reid.losses import batch_hard_triplet, cross_entropy_ls, pairwise_distance

    torch.manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model = ReidModel(build_backbone(backbone, "none"), 751).to(device).train()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=3.5e-4)
    amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(p * k, 3, *size, device=device)
    y = torch.arange(p, device=device).repeat_interleave(k)
    times = []
    for i in range(steps + 2):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = model(x)
            loss = cross_entropy_ls(out["logits"].float(), y) + batch_hard_triplet(pairwise_distance(out["feat"].float()), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        _sync(device)
        if i >= 2:   # two warm-up steps: allocator, cuDNN autotuning
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"figure": "train", "backbone": backbone, "device": device, "size": list(size), "batch": p * k,
            "amp_fp16": amp, "median_step_s": round(med, 4), "images_per_s": round(p * k / med, 1),
            "peak_gpu_gib": _peak_gib(device)}


def extract(device: str, backbone: str, size: tuple[int, int], batch: int, batches: int, total: int) -> dict:
    import torch

    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.heads import ReidModel

    torch.manual_seed(0)
    model = ReidModel(build_backbone(backbone, "none"), 751).to(device).eval()
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model = model.to(dtype)
    x = torch.randn(batch, 3, *size, device=device, dtype=dtype)
    with torch.inference_mode():
        model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
        _sync(device)
    wall = time.perf_counter() - t0
    rate = batch * batches / wall
    return {"figure": "extract", "backbone": backbone, "device": device, "size": list(size), "batch": batch,
            "dtype": str(dtype).replace("torch.", ""), "images_per_s": round(rate, 1),
            "projected_s_for_images": {str(total): round(total / rate, 1)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["train", "extract", "rank"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", default="resnet50,clip-b16")
    ap.add_argument("--images", type=int, default=11659 + 82161, help="extract: images to project the time for")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import torch

    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    quick = args.quick
    size = (64, 32) if quick else (256, 128)
    names = ["resnet-tiny", "clip-tiny"] if quick else args.backbones.split(",")
    if args.what == "train":
        for name in names:
            print(json.dumps(train(args.device, name, size, 2 if quick else 16, 2 if quick else 4, 2 if quick else 20)),
                  flush=True)
    elif args.what == "rank":
        sys.path.insert(0, os.path.dirname(__file__))
        from eval_speed import child   # the same data and timing as BENCHMARKS.md's eval figures

        scale = "market" if quick else "msmt"
        res = child("reid", scale)
        print(json.dumps({"figure": "rank", "scale": scale, "wall_s": round(res["wall_s"], 2),
                          "peak_rss_gib": round(res["peak_bytes"] / 2**30, 2), "mAP": round(res["mAP"], 4)}), flush=True)
    else:
        name = names[0]
        print(json.dumps(extract(args.device, name, size, 8 if quick else 256, 2 if quick else 20, args.images)),
              flush=True)


if __name__ == "__main__":
    main()
