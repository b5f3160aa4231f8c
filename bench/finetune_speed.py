"""`reid finetune` training throughput (samples/s) against the bare objective on a fixed batch.

For each configuration it times `finetune()` (shard reading, per-sample decode/flip/seeds, the
objective, AdamW) for two step counts and takes the difference per step, so start-up (loading,
building the optimizer, the final save) cancels out; the baseline is the same objective
(`inpaint_loss` + backward + AdamW) on one pre-decoded batch, i.e. the cost of the model alone.
Medians over --repeats.

    .venv/bin/python bench/finetune_speed.py --shards 'demo-out/captioned/train-*.tar' [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

CONFIGS = {
    # the demo's generator: tiny pipeline, full training (U-Net + text encoder)
    "tiny-full": dict(method="full", unet=None, vae=(16, 32), size=(32, 16)),
    # SD-1.5 block layout at small width, LoRA on the attention projections
    "sd15-layout-lora": dict(method="lora", unet="sd15-small", vae=(16, 16, 16, 16), size=(64, 32)),
}


def build(folder, cfg):
    from reidtools.testing.models import SD15_UNET, build_inpaint_pipeline

    unet = None
    if cfg["unet"] == "sd15-small":
        unet = {**SD15_UNET, "block_out_channels": (32, 32, 64, 64), "cross_attention_dim": 32,
                "attention_head_dim": 4, "norm_num_groups": 8}
    build_inpaint_pipeline(folder, unet=unet, vae_channels=cfg["vae"])


def time_finetune(shards, base, cfg, steps, batch):
    from reidtools.generate.inpaint.training import FinetuneOptions, finetune

    with tempfile.TemporaryDirectory() as out:
        opts = FinetuneOptions(model=base, method=cfg["method"], steps=steps, batch_size=batch, size=cfg["size"],
                               lr=1e-4)
        t = time.perf_counter()
        finetune(shards, os.path.join(out, "o"), opts, progress=False, device="cpu")
        return time.perf_counter() - t


def time_bare(base, cfg, steps, batch):
    import torch
    from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline

    from reidtools.generate.inpaint.training import inpaint_loss

    pipe = StableDiffusionInpaintPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    if cfg["method"] == "lora":
        from peft import LoraConfig

        pipe.unet.requires_grad_(False)
        pipe.unet.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in pipe.unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    h, w = cfg["size"]
    pix = torch.rand(batch, 3, h, w) * 2 - 1
    masks = torch.zeros(batch, 1, h, w)
    masks[:, :, h // 4: 3 * h // 4] = 1
    prompts = ["red top blue pants black shoes"] * batch

    def step():
        gens = [torch.Generator().manual_seed(i) for i in range(batch)]
        loss = inpaint_loss(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched, pix, masks, prompts, gens,
                            outside_weight=0.1, scaling_factor=pipe.vae.config.scaling_factor)
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="the longer run's steps (the shorter: 2)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    from reidtools.shards import expand_inputs

    shards = expand_inputs([args.shards])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print("| configuration | size | reid finetune s/step | samples/s | bare objective s/step | finetune / bare |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        with tempfile.TemporaryDirectory() as base:
            build(base, cfg)
            per = []
            for _ in range(args.repeats):
                long = time_finetune(shards, base, cfg, args.steps, args.batch)
                short = time_finetune(shards, base, cfg, 2, args.batch)
                per.append((long - short) / (args.steps - 2))
            bare = statistics.median(time_bare(base, cfg, args.steps, args.batch) for _ in range(args.repeats))
        med = statistics.median(per)
        h, w = cfg["size"]
        print(f"| {name} | {h}x{w} | {med:.3f} | {args.batch / med:.1f} | {bare:.3f} | {med / bare:.2f}× |")


if __name__ == "__main__":
    main()
