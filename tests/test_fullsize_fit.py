"""The training steps of DiVE (`reid invert fit`), Pose-dIVE (`reid posegen fit`) and DCAC (`reid train
--method dcac`) at published size: SD-1.5 (`sd15`), CLIP ViT-B/16 and CLIP ViT-L/14 with random weights
in the hub layout (configs in reidtools/testing/fullsize/), through the real command at a small resolution
(64x32; DCAC's ReID input 128x64) with 1-2 optimiser steps.

Outside the default suite: `pytest -m fullsize tests/test_fullsize_fit.py`. Every build and run is its
own process, one at a time. REID_FULLSIZE_LOG=FILE appends one JSON line per process (wall time, peak
RSS) as tests/test_fullsize.py does; REID_FULLSIZE_LOCK=FILE runs each process under `flock FILE nice
-n 19` (machines shared by several big jobs), timing it from when it holds the lock. A process is
killed, and its test fails saying so, when the machine's MemAvailable drops below 1 GiB
(REID_FULLSIZE_MIN_AVAIL_GIB), so a model too big for a shared machine fails its own test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from test_fullsize import REID, _meta

pytestmark = pytest.mark.fullsize

# SD-1.5's transformer blocks (sd15.json: block_out_channels 320/640/1280/1280, layers_per_block 2,
# cross-attention blocks in down 0-2 (2 each), mid (1) and up 1-3 (3 each, channels reversed)):
# the channel width of each of the 16 blocks
SD15_BLOCK_WIDTHS = [320] * 2 + [640] * 2 + [1280] * 2 + [1280] + [1280] * 3 + [640] * 3 + [320] * 3
SD15_TEXT_DIM = 768   # cross_attention_dim: CLIP ViT-L/14's text width

_GUARD = r"""
import os, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
floor, killed = float(sys.argv[1]) * 2**20, False
while p.poll() is None:
    with open("/proc/meminfo") as fh:
        avail = next(int(l.split()[1]) for l in fh if l.startswith("MemAvailable:"))
    if avail < floor:
        p.kill(); p.wait(); killed = True
        break
    time.sleep(0.25)
sys.stderr.write("\nGUARD wall=%.1f rss_kb=%d killed=%d\n" % (time.perf_counter() - t0,
                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, killed))
sys.exit(p.returncode)
"""


def _run(name: str, argv: list[str]) -> subprocess.CompletedProcess:
    """`argv` in its own process (under the lock, if any), with its wall time and peak RSS."""
    floor = os.environ.get("REID_FULLSIZE_MIN_AVAIL_GIB", "1.0")
    cmd = [sys.executable, "-c", _GUARD, floor, *argv]
    lock = os.environ.get("REID_FULLSIZE_LOCK")
    if lock:
        cmd = ["flock", lock, "nice", "-n", "19", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in proc.stderr.splitlines()[::-1] if ln.startswith("GUARD ")), None)
    assert line is not None, f"{name}: the guard did not report\n{proc.stderr[-3000:]}"
    fields = dict(kv.split("=") for kv in line.split()[1:])
    wall, rss_kb, killed = float(fields["wall"]), int(fields["rss_kb"]), fields["killed"] == "1"
    log = os.environ.get("REID_FULLSIZE_LOG")
    if log:
        shown = argv[3:] if argv[:3] == REID else argv
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"run": name, "argv": " ".join(shown), "rc": proc.returncode, "wall_s": round(wall, 1),
                                 "peak_rss_gib": round(rss_kb / 2**20, 2), "killed_low_memory": killed}) + "\n")
    assert not killed, f"{name}: killed at {rss_kb / 2**20:.1f} GiB, MemAvailable fell below {floor} GiB"
    assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    proc.wall, proc.rss_gib = wall, rss_kb / 2**20
    return proc


def _build(name: str, folder) -> str:
    _run(f"build {name}", [sys.executable, "-c",
                           f"from reidtools.testing.fullsize import build; build({name!r}, {str(folder)!r})"])
    return str(folder)


def _synth(folder, *extra) -> str:
    """2 training identities x 2 cameras x 2 images at 128x64 (ground-truth `pose` included)."""
    _run("synth", [*REID, "synth", "-o", str(folder), "--ids", "4", "--outfits", "1", "--cams", "2",
                   "--images-per", "2", "--size", "128x64", *extra])
    return os.path.join(str(folder), "train-000000.tar")


def _header(path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:   # the header only: no tensor is read
        return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}


def _lora_params(linears: list[tuple[int, int]], rank: int) -> int:
    """A LoRA branch on a Linear in -> out adds A (r x in) and B (out x r)."""
    return sum(rank * (i + o) for i, o in linears)


def _dcac_lora_linears() -> list[tuple[int, int]]:
    """DCAC §4.2 (eq. 9), the paper's LoRA targets as (in, out) Linears: attention q, k, v, out (self:
    C -> C; cross: q, out C -> C, k, v 768 -> C) and both feed-forward Linears (GEGLU C -> 2 x 4C, then
    4C -> C) in each of SD-1.5's 16 transformer blocks."""
    return [lin for c in SD15_BLOCK_WIDTHS
            for lin in [(c, c)] * 4 + [(c, c), (SD15_TEXT_DIM, c), (SD15_TEXT_DIM, c), (c, c)]
            + [(c, 8 * c), (4 * c, c)]]


def _posegen_fit(train, ckpt, sd15, encoder) -> list[str]:
    """`reid posegen fit` at full size, 1 step at 64x32 (both full-size posegen test files run it)."""
    return [*REID, "posegen", "fit", str(train), "-o", str(ckpt), "--base", str(sd15), "--image-encoder", str(encoder),
            "--steps", "1", "--batch-size", "1", "--size", "64x32", *POSEGEN_MEMORY, "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    return _build("sd15", tmp_path_factory.mktemp("sd15") / "model")


def test_clip_vit_large_parameter_count():
    """Pose-dIVE's image encoder: CLIP ViT-L/14 is 427,616,513 parameters (the CLIPModel checkpoint),
    (224 / 14)^2 = 256 patches + the class token, projected to 768 = SD-1.5's cross-attention width."""
    from reidtools.testing.fullsize import shapes

    s = shapes("clip-vit-large-patch14")["model"]
    assert sum(math.prod(v) for v in s.values()) == 427_616_513
    assert s["vision_model.embeddings.position_embedding.weight"] == (257, 1024)
    assert s["visual_projection.weight"] == (768, 1024)


# ----------------------------------------------------------------------------- DiVE
def test_dive_fit_and_sample_sd15_lora_r128(sd15, tmp_path):
    from safetensors.torch import load_file

    train = _synth(tmp_path / "synth", "--modalities", "rgb,ir")
    ckpt = tmp_path / "dive"
    # no --rank: the command's default is DiVE's r = 128
    _run("invert fit sd15", [*REID, "invert", "fit", train, "-o", str(ckpt), "--base", sd15, "--steps", "2",
                             "--batch-size", "2", "--size", "64x32", "--min-images-per-id", "1", "--device", "cpu",
                             "-q"])
    # only the adapter and the embeddings: no U-Net, text encoder or VAE weights in the artefact
    assert sorted(os.listdir(ckpt)) == ["checkpoint-2", "learned_embeds.safetensors", "manifest.json",
                                        "pytorch_lora_weights.safetensors"]
    man = json.loads((ckpt / "manifest.json").read_text())
    assert man["step"] == 2 and math.isfinite(man["last_loss"]) and man["options"]["rank"] == 128
    assert man["lora_partition"] == {"ir2": [0, 64], "rgb1": [64, 128]}   # 2 camera codes share r = 128
    embeds = load_file(str(ckpt / "learned_embeds.safetensors"))
    assert {k: tuple(v.shape) for k, v in embeds.items()} == {"<id_1>": (1, SD15_TEXT_DIM), "<id_2>": (1, SD15_TEXT_DIM)}

    lora = _header(ckpt / "pytorch_lora_weights.safetensors")
    # q, k, v of self-attention (C -> C) and of cross-attention (q: C -> C; k, v: 768 -> C) in 16 blocks
    linears = [lin for c in SD15_BLOCK_WIDTHS for lin in [(c, c)] * 4 + [(SD15_TEXT_DIM, c)] * 2]
    assert len(lora) == 2 * len(linears) == 192
    assert sum(math.prod(s) for s in lora.values()) == _lora_params(linears, 128) == 19_120_128
    key = "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora"
    assert lora[f"{key}.down.weight"] == (128, 768) and lora[f"{key}.up.weight"] == (1280, 128)
    size = (ckpt / "pytorch_lora_weights.safetensors").stat().st_size
    assert 4 * 19_120_128 < size < 4 * 19_120_128 + 100_000   # fp32 and a header

    out = tmp_path / "gen"
    _run("invert sample sd15", [*REID, "invert", "sample", str(ckpt), "-o", str(out), "--per-id", "1", "--steps", "1",
                                "--dtype", "fp32", "--device", "cpu", "-q"])
    samples = _meta(out)
    assert sorted(m["pid"] for m in samples) == [1, 2] and all(m["modality"] == "ir" for m in samples)
    assert all(m["history"][-1]["parameters"]["steps"] == 1 for m in samples)


# ----------------------------------------------------------------------------- Pose-dIVE
# In fp32 (the CPU's `auto`) the fit holds the trained denoising U-Net with its gradients and two AdamW
# moments (4 x 3.44 GB), the frozen reference U-Net (3.44 GB), the VAE and CLIP ViT-L/14: measured
# 18.0 GiB peak RSS at 64x32, too close to a 24 GiB machine's limit beside other jobs. bf16 autocast
# (AnimateAnyone-style training uses fp16 autocast on GPUs) keeps the trained U-Net and its optimizer
# in fp32 but the frozen reference U-Net, VAE and encoder in bf16: 15.9 GiB (BENCHMARKS.md).
POSEGEN_MEMORY = ["--mixed-precision", "bf16"]


def test_posegen_fit_two_sd15_unets_clip_large(sd15, tmp_path):
    encoder = _build("clip-vit-large-patch14", tmp_path / "clip-l")
    train = _synth(tmp_path / "synth")
    ckpt = tmp_path / "posegen"
    _run("posegen fit sd15 x2", _posegen_fit(train, ckpt, sd15, encoder))
    man = json.loads((ckpt / "manifest.json").read_text())
    assert man["options"]["mixed_precision"] == "bf16" and man["step"] == 1 and math.isfinite(man["last_loss"])
    # CLIP ViT-L/14's projection is already SD-1.5's 768-wide cross-attention: no learned projection
    # (the tiny test models differ, 16 vs 32, and have one)
    assert man["embed_dim"] == SD15_TEXT_DIM and not (ckpt / "image_proj.safetensors").exists()
    assert not (ckpt / "reference_unet").exists()     # frozen by default: only the denoising U-Net is saved
    unet = _header(ckpt / "denoising_unet" / "diffusion_pytorch_model.safetensors")
    assert round(sum(math.prod(s) for s in unet.values()) / 1e6, 1) == 859.5
    guiders = _header(ckpt / "pose_guiders.safetensors")
    # the skeleton guider ends at conv_in's width, SD-1.5's first block: 320 channels from 256
    assert guiders["skeleton.conv_out.weight"] == (320, 256, 3, 3)
    assert guiders["skeleton.conv_in.weight"] == (16, 3, 3, 3)


# ----------------------------------------------------------------------------- DCAC
def test_dcac_train_clip_b16_with_sd15_lora(sd15, tmp_path):
    from safetensors import safe_open

    clip = _build("clip-vit-base-patch16", tmp_path / "clip")
    train = _synth(tmp_path / "synth")
    run = tmp_path / "run"
    # 8 images, 2x2 per batch: 2 iterations in the one epoch; --diffusion-size 64 (released: 128)
    _run("train dcac clip-b16 + sd15", [*REID, "train", train, "-o", str(run), "--method", "dcac", "--backbone",
                                        "clip-b16", "--pretrained", clip, "--diffusion-model", sd15, "--epochs", "1",
                                        "--batch", "2x2", "--size", "128x64", "--diffusion-size", "64", "--cpu",
                                        "--workers", "0", "--log-every", "1", "-q"])
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert len(steps) == 2 and all(math.isfinite(r[k]) for r in steps for k in ("id", "pcl", "dif", "loss"))
    (ckpt,) = (run / "checkpoints").glob("*/model.safetensors")
    shapes = _header(ckpt)
    lora = {k: s for k, s in shapes.items() if "lora_" in k}
    # the paper's targets at rank 8 (the synthetic dataset is not one of §5.2's: the released base rank)
    linears = _dcac_lora_linears()
    assert len(lora) == 2 * len(linears) == 320
    assert sum(math.prod(s) for s in lora.values()) == _lora_params(linears, 8) == 2_992_128
    assert shapes["dcac.condition.prompts"] == (2, SD15_TEXT_DIM)    # one ID prompt per identity, eq. 12
    final = _header(run / "model.safetensors")
    assert not any("lora_" in k or k.startswith("dcac.") for k in final)   # the diffusion branch is training-only
    assert final["backbone.net.visual_projection.weight"] == (512, 768)
    with safe_open(str(run / "model.safetensors"), "pt") as fh:
        assert all(math.isfinite(float(fh.get_tensor(k).float().abs().sum())) for k in fh.keys())
