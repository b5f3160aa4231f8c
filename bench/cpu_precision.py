"""One DiVE fit step (`reid invert fit`) at published size on the CPU, fp32 against bf16 mixed precision.

The step `reid invert fit` runs, component by component, with SD-1.5's VAE, U-Net (+ LoRA r = 128 on
q/k/v, fp32 as the fit keeps it) and CLIP ViT-L/14 text encoder built from the full-size configs
(reidtools/testing/fullsize/sd15.json) with random weights (timings do not depend on the weights):
VAE encode (no grad), text encoder forward, U-Net forward, backward to the LoRA and the token
embeddings. `bf16` is what `--mixed-precision bf16` does: frozen weights cast to bf16, the step under
accelerate's CPU autocast (torch.autocast("cpu", bfloat16)). Medians over --repeats.

    flock /work/notes/bigmem.lock nice -n 19 .venv/bin/python bench/cpu_precision.py --size 64x32 --repeats 3
    nice -n 19 .venv/bin/python bench/cpu_precision.py --convs --repeats 3   # single convolutions only

On a CPU without native bf16 kernels (`reidtools.runtime.cpu_has_bf16_kernels()` False: no
AVX512-BF16 / AMX) oneDNN falls back to slow reference kernels; this measures by how much.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time


def build(rank: int):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextConfig, CLIPTextModel

    from reidtools.testing.fullsize import load_config

    cfg = load_config("sd15")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(cfg["unet"])
    vae = AutoencoderKL.from_config(cfg["vae"])
    text = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    for m in (unet, vae, text):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v"]))
    return vae, unet, text


def step(vae, unet, text, size, dtype, autocast: bool) -> dict:
    import torch
    import torch.nn.functional as F

    h, w = size
    x = torch.randn(1, 3, h, w).to(dtype)
    ids = torch.randint(0, 49408, (1, 77))
    # the token embedding is trained (DiVE's identity rows): the backward reaches it through the encoder
    text.get_input_embeddings().weight.requires_grad_(True)
    times = {}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        t0 = time.perf_counter()
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.mean * 0.18215
        times["vae_encode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cond = text(ids)[0]
        times["text_forward"] = time.perf_counter() - t0
        noise = torch.randn_like(latents)
        t0 = time.perf_counter()
        pred = unet(latents + noise, torch.tensor([500]), cond).sample
        times["unet_forward"] = time.perf_counter() - t0
        loss = F.mse_loss(pred.float(), noise.float())
    t0 = time.perf_counter()
    loss.backward()
    times["backward"] = time.perf_counter() - t0
    times["step"] = sum(times.values())
    return times


# (in, out, H, W): SD's VAE encoder's first block at a 64x32 and a 512x256 image (DiVE's test and
# paper sizes), the U-Net's first block at those images' latents (8x4, 64x32), its deepest at 8x4
CONVS = [(128, 128, 64, 32), (128, 128, 512, 256), (320, 320, 8, 4), (320, 320, 64, 32), (1280, 1280, 2, 1)]


def convs(repeats: int) -> list[dict]:
    """One 3x3 convolution per shape, fp32 against bf16 weights and input (no autocast needed)."""
    import torch

    rows = []
    for cin, cout, h, w in CONVS:
        conv, x = torch.nn.Conv2d(cin, cout, 3, padding=1), torch.randn(1, cin, h, w)
        row = {"conv": f"{cin}->{cout} at {h}x{w}"}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            c, xx = conv.to(dtype), x.to(dtype)
            with torch.no_grad():
                c(xx)
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    c(xx)
                    ts.append(time.perf_counter() - t0)
            sec = statistics.median(ts)
            row[f"{name}_ms"], row[f"{name}_gflops"] = round(sec * 1e3, 1), round(2 * cin * cout * 9 * h * w / sec / 1e9, 2)
        row["ratio"] = round(row["bf16_ms"] / row["fp32_ms"], 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    import torch

    from reidtools.runtime import cpu_has_bf16_kernels

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="64x32", help="image HxW (latent = /8); 64x32 as tests/test_fullsize_fit.py")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16-repeats", type=int, default=None, help="[default: --repeats]")
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--convs", action="store_true", help="only time single convolutions at SD's shapes (small memory)")
    a = ap.parse_args()
    if a.convs:
        out = {"bf16_kernels": cpu_has_bf16_kernels(), "threads": torch.get_num_threads(), "convs": convs(a.repeats)}
        if a.json:
            with open(a.json, "w", encoding="utf-8") as fh:
                json.dump(out, fh, indent=1)
        return
    size = tuple(int(v) for v in a.size.lower().split("x"))
    t0 = time.perf_counter()
    vae, unet, text = build(a.rank)
    out = {"size": list(size), "threads": torch.get_num_threads(), "bf16_kernels": cpu_has_bf16_kernels(),
           "torch": torch.__version__, "build_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out), flush=True)
    for name, n in (("fp32", a.repeats), ("bf16", a.bf16_repeats or a.repeats)):
        if name == "bf16":   # what the fit does: frozen weights in bf16, LoRA kept fp32
            for m in (vae, unet, text):
                m.to(torch.bfloat16)
            for p in unet.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
        dtype = torch.bfloat16 if name == "bf16" else torch.float32
        runs = []
        for i in range(n + 1):   # the first is a warm-up, not counted
            r = step(vae, unet, text, size, dtype, autocast=name == "bf16")
            print(json.dumps({"precision": name, "run": i, **{k: round(v, 3) for k, v in r.items()}}), flush=True)
            if i:
                runs.append(r)
        out[name] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    out["ratio_bf16_over_fp32"] = {k: round(out["bf16"][k] / out["fp32"][k], 1) for k in out["fp32"]}
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(out), flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
