"""DCAC training-step benchmark: time per iteration and peak memory of one optimisation step
(ReID forward + L_id + L_pcl + lambda L_dif through the frozen SD U-Net with LoRA, backward, Adam),
against the ReID-only baseline step (L_id + L_pcl) in the same session (DCAC Table 6: 140.3 ms vs
578.1 ms and 7.58 vs 18.15 GB at batch 64 on an A6000).

    .venv/bin/python bench/dcac_step.py                      # tiny models, CPU
    .venv/bin/python bench/dcac_step.py --arch full --device cuda --batch 64 --mixed-precision fp16

`--arch full` builds CLIP ViT-B/16 (512-d projection) and SD-1.5-sized VAE + U-Net from configs with
random weights (timings do not depend on the weights), 751 identities (Market-1501).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time


def build(arch: str, n_ids: int, rank: int, seed: int = 0, targets: str = "paper"):
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from reidtools.testing.models import SD15_UNET, SD15_VAE, TINY_UNET
    from reidtools.reid.backbones import build_backbone
    from reidtools.reid.dcac import DcacHead, DiffusionBranch, freeze_patch_projection
    from reidtools.reid.heads import ReidModel

    torch.manual_seed(seed)
    backbone = build_backbone("clip-b16" if arch == "full" else "clip-tiny")
    freeze_patch_projection(backbone)
    model = ReidModel(backbone, n_ids)
    ucfg, vch = (SD15_UNET, SD15_VAE) if arch == "full" else (TINY_UNET, (16, 32))
    unet = UNet2DConditionModel(sample_size=64 if arch == "full" else 32, in_channels=4, out_channels=4, **ucfg)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vch,
                        layers_per_block=2 if arch == "full" else 1, norm_num_groups=32 if arch == "full" else 8,
                        down_block_types=("DownEncoderBlock2D",) * len(vch), up_block_types=("UpDecoderBlock2D",) * len(vch))
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    head = DcacHead(DiffusionBranch(vae, unet, sched, lora_rank=rank, lora_targets=targets), n_ids, model.dim)
    return model, head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16, help="images per step (P x K)")
    ap.add_argument("--size", default=None, help="ReID input HxW [tiny: 64x32, full: 256x128]")
    ap.add_argument("--diffusion-size", type=int, default=None, help="[tiny: 32, full: 128]")
    ap.add_argument("--ids", type=int, default=None, help="identities [tiny: 16, full: 751]")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lora-targets", choices=["paper", "released"], default="paper")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    from reidtools.reid.dcac import PrototypeMemory, diffusion_input
    from reidtools.reid.losses import cross_entropy_ls

    if args.threads:
        torch.set_num_threads(args.threads)
    full = args.arch == "full"
    h, w = (int(v) for v in (args.size or ("256x128" if full else "64x32")).split("x"))
    side = args.diffusion_size or (128 if full else 32)
    n_ids = args.ids or (751 if full else 16)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    amp = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.mixed_precision]

    model, head = build(args.arch, n_ids, args.rank, targets=args.lora_targets)
    model.to(dev).train()
    head.to(dev).train()
    if args.gradient_checkpointing:
        net = model.backbone.net
        enable = getattr(net, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        head.branch.enable_gradient_checkpointing()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, h, w, generator=g).to(dev)
    x_dif = diffusion_input(torch.randint(0, 256, (args.batch, side, side, 3), generator=g, dtype=torch.uint8)).to(dev)
    labels = (torch.arange(args.batch) // 4 % n_ids).to(dev)
    memory = PrototypeMemory(torch.randn(n_ids, model.dim)).to(dev)
    scaler = torch.amp.GradScaler(enabled=args.mixed_precision == "fp16" and cuda)

    def run(with_diffusion: bool) -> list[float]:
        params = [p for p in model.parameters() if p.requires_grad]
        if with_diffusion:
            params += [p for p in head.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=5e-6, weight_decay=1e-4)
        times = []
        for step in range(args.warmup + args.steps):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                out = model(x)
                bn, logits = out["bn"].float(), out["logits"].float()
                loss = cross_entropy_ls(logits, labels) + memory.loss(bn, labels)
                if with_diffusion:
                    loss = loss + 1.0 * head(x_dif, logits, bn, labels)
            memory.update(bn, labels)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
        return times

    results = {}
    for name, dif in (("baseline (ReID only)", False), ("DCAC (LoRA)", True)):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        cpu0 = time.process_time()
        times = run(dif)
        cpu = (time.process_time() - cpu0) / (args.warmup + args.steps)
        peak = (torch.cuda.max_memory_allocated(dev) / 2**30 if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
        results[name] = (statistics.median(times), cpu, peak)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    extra = sum(p.numel() for p in head.parameters() if p.requires_grad)
    print(f"arch={args.arch} device={dev} batch={args.batch} reid={h}x{w} diffusion={side}x{side} ids={n_ids} "
          f"rank={args.rank} precision={args.mixed_precision} checkpointing={args.gradient_checkpointing} "
          f"threads={torch.get_num_threads()}")
    mem = "peak GPU GiB" if cuda else "peak RSS GiB (process, cumulative)"
    print(f"| step | median ms/iter | CPU s/iter | {mem} | trainable M |")
    print("| --- | --- | --- | --- | --- |")
    for name, (med, cpu, peak) in results.items():
        n = trainable + (extra if "DCAC" in name else 0)
        print(f"| {name} | {med * 1000:.1f} | {cpu:.2f} | {peak:.2f} | {n / 1e6:.2f} |")
    base, dcac = results["baseline (ReID only)"][0], results["DCAC (LoRA)"][0]
    print(f"DCAC / baseline step time: {dcac / base:.2f}x (paper, A6000, batch 64: 578.1 / 140.3 = 4.12x)")


if __name__ == "__main__":
    main()
