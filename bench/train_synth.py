"""Train a small ReID model on `reid synth` data (CPU) and evaluate it under the cc and sc protocols;
then measure training throughput (images/s) of the tiny and ResNet-50 configurations.

    .venv/bin/python bench/train_synth.py [--work DIR] [--epochs 20] [--skip-demo] [--skip-throughput]

Everything runs through the public CLI (`reid synth`, `reid train`, `reid eval`) except the
throughput probe, which times forward + losses + backward + Adam step on fixed batches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REID = [sys.executable, "-m", "reidtools"]


def sh(*args) -> None:
    print("$", " ".join(str(a) for a in args), file=sys.stderr, flush=True)
    subprocess.run([str(a) for a in args], check=True)


def demo(work: str, epochs: int, method: str) -> dict:
    data = os.path.join(work, "synth")
    if not os.path.exists(os.path.join(data, "train-000000.tar")):
        sh(*REID, "synth", "-o", data, "--ids", 80, "--outfits", 3, "--cams", 4, "--images-per", 4,
           "--size", "128x64", "-q")
    run = os.path.join(work, f"run-{method}")
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(run, "model.safetensors")):
        sh(*REID, "train", os.path.join(data, "train-*.tar"), "-o", run, "--backbone", "resnet-small",
           "--method", method, "--size", "64x32", "--epochs", epochs, "--milestones", str(int(epochs * 0.75)),
           "--batch", "8x4", "--lr", "1e-3", "--workers", 1, "--cpu", "-q", "--log-every", 0)
    train_s = time.perf_counter() - t0
    out = {"method": method, "train_seconds": round(train_s, 1)}
    for protocol in ("cc", "sc"):
        js = os.path.join(work, f"{method}-{protocol}.json")
        sh(*REID, "eval", os.path.join(data, "query-*.tar"), "-g", os.path.join(data, "gallery-*.tar"),
           "--model", run, "--protocol", protocol, "--json", js, "-q")
        with open(js) as fh:
            m = json.load(fh)
        out[protocol] = {"rank1": m["rank1"], "mAP": m["mAP"]}
    with open(os.path.join(run, "log.jsonl")) as fh:
        epochs_log = [json.loads(line) for line in fh if '"epoch"' in line and '"type": "epoch"' in line]
    out["images_per_s_median"] = statistics.median(r["images_per_s"] for r in epochs_log)
    out["final_loss"] = epochs_log[-1]["loss"]
    return out


def throughput(backbone: str, size: tuple[int, int], p: int, k: int, steps: int) -> dict:
    import torch

    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.heads import ReidModel
    from reidtools.reid.losses import batch_hard_triplet, cross_entropy_ls, pairwise_distance

    torch.manual_seed(0)
    model = ReidModel(build_backbone(backbone, "none"), 100).train()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=3.5e-4)
    x = torch.randn(p * k, 3, *size)
    y = torch.arange(p).repeat_interleave(k)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        out = model(x)
        loss = cross_entropy_ls(out["logits"], y) + batch_hard_triplet(pairwise_distance(out["feat"]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"backbone": backbone, "size": f"{size[0]}x{size[1]}", "batch": p * k, "steps": steps,
            "median_step_s": round(med, 3), "images_per_s": round(p * k / med, 1),
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--methods", default="baseline")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="reid-train-bench-")
    os.makedirs(work, exist_ok=True)
    results = {"work": work}
    if not args.skip_demo:
        results["demo"] = [demo(work, args.epochs, m) for m in args.methods.split(",")]
        print(json.dumps(results["demo"], indent=1), flush=True)
    if not args.skip_throughput:
        results["throughput"] = [
            throughput("resnet-tiny", (64, 32), 8, 4, 10),
            throughput("resnet-small", (64, 32), 8, 4, 10),
            throughput("resnet-tiny", (256, 128), 8, 4, 5),
            throughput("resnet50", (256, 128), 4, 4, 3),
        ]
        print(json.dumps(results["throughput"], indent=1), flush=True)
    with open(os.path.join(work, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
