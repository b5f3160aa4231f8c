"""What Pose-dIVE's conditioning costs per denoising step, against a plain U-Net step (the baseline).

Random weights, a U-Net of SD-1.5's block layout at reduced widths (64, 128, 256, 256) on a
512x256 image (64x32 latent), CPU. Per step, median of --repeats:
- baseline: the plain U-Net (no reference, no guiders);
- posegen step: the denoising U-Net reading the reference bank (self-attention over 2N tokens) with
  the guider output added after conv_in (what every sampling step runs);
- reference pass: the reference U-Net writing its features (once per image, not per step);
- guiders: skeleton + depth + normal guiders at 512x256 (once per image);
- skeleton rendering at 512x256 (once per image).
Run: .venv/bin/python bench/posegen.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


def median_time(fn, repeats: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()

    import torch
    from diffusers import UNet2DConditionModel

    from reidtools.generate.posegen.net import build_net
    from reidtools.vision.skeleton import render_skeleton
    from reidtools.data.synth import iter_synth

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dict(block_out_channels=(64, 128, 256, 256), layers_per_block=2, cross_attention_dim=768,
               attention_head_dim=8, norm_num_groups=32,
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, **cfg).eval()
    ref = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, **cfg).eval()
    plain = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, **cfg).eval()
    plain.load_state_dict(unet.state_dict())
    net = build_net(unet, ref, ["skeleton", "depth", "normal"], (16, 32, 96, 256), "conv_in", 768, False).eval()
    b = args.batch
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(b, 4, 64, 32, generator=g), torch.randn(b, 1, 768, generator=g)
    conds = {"skeleton": torch.rand(b, 3, 512, 256), "depth": torch.rand(b, 1, 512, 256),
             "normal": torch.rand(b, 3, 512, 256)}
    t = torch.tensor([500] * b)
    pose = next(iter_synth(ids=2, outfits=1, cams=2, images_per=2, size=(128, 64)))["json"]["pose"]
    with torch.no_grad():
        base = median_time(lambda: plain(x, t, encoder_hidden_states=ctx), args.repeats)
        net.encode_reference(x, ctx)
        guide = net.guiders(conds)
        step = median_time(lambda: net.denoise(x, t, ctx, guide), args.repeats)
        refp = median_time(lambda: net.encode_reference(x, ctx), args.repeats)
        guid = median_time(lambda: net.guiders(conds), args.repeats)
    skel = median_time(lambda: render_skeleton(pose, (512, 256)), max(args.repeats, 20))
    print(f"threads={torch.get_num_threads()} batch={b} repeats={args.repeats} (median seconds)")
    print(f"baseline plain U-Net step      {base:.4f}")
    print(f"posegen denoising step         {step:.4f}  ({step / base:.2f}x baseline)")
    print(f"reference pass (once/image)    {refp:.4f}  ({refp / base:.2f}x baseline)")
    print(f"3 guiders (once/image)         {guid:.4f}  ({guid / base:.2f}x baseline)")
    print(f"skeleton render 512x256        {skel * 1000:.2f} ms")
    for steps in (25, 50):
        total = steps * step + refp + guid
        print(f"per image, {steps} steps, no CFG   {total:.2f} s  ({total / (steps * base):.2f}x {steps} plain steps)")


if __name__ == "__main__":
    main()
