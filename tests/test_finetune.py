"""`reid finetune`: the inpainting objective learns, a full save reloads through `reid inpaint --model`,
LoRA on an SD-1.5-shaped pipeline saves only the adapter and reloads, resume is exact, bad input is
one clear line. Tiny random-weight models, loaded through the real `from_pretrained` path."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.shards import ShardWriter, iter_samples

SIZE = "32x16"


def _write(folder, n=4, prompt=True, h=32, w=16):
    r = np.random.RandomState(0)
    with ShardWriter(str(folder), prefix="train", maxcount=100) as wr:
        for i in range(n):
            img = Image.fromarray(r.randint(0, 255, (h, w, 3), dtype=np.uint8))
            m = np.zeros((h, w), np.uint8)
            m[h // 4: 3 * h // 4, 2:w - 2] = 255
            meta = {"dataset": "t", "split": "train", "pid": i // 2, "camid": 1, "clothes": f"{i // 2:04d}_{i % 2}"}
            if prompt:
                meta["clothes_prompt"] = ["red top blue pants", "green top black skirt"][i % 2]
            wr.write({"__key__": f"s{i}", "png": img, "mask.png": Image.fromarray(m, "L"), "json": meta})
    return str(folder)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from reidtools.testing.models import build_inpaint_pipeline

    folder = str(tmp_path_factory.mktemp("tiny-sd"))
    build_inpaint_pipeline(folder)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("in"))


def _reid(*args):
    return run_cli(cli, [*map(str, args)])


def test_loss_falls_on_a_fixed_batch():
    """The objective is learnable: 30 Adam steps on one batch (same noise and timesteps every step)
    must cut the weighted MSE clearly, and the weighting must be what it says."""
    from diffusers import DDPMScheduler

    from reidtools.generate.inpaint.training import inpaint_loss
    from reidtools.testing.models import make_inpaint_pipeline

    pipe = make_inpaint_pipeline(seed=1)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(0)
    pix = torch.rand(4, 3, 32, 16, generator=g) * 2 - 1
    masks = torch.zeros(4, 1, 32, 16)
    masks[:, :, 8:24, 2:14] = 1
    prompts = ["red top", "blue top", "green skirt", ""]

    def loss():
        gens = [torch.Generator().manual_seed(100 + i) for i in range(4)]
        return inpaint_loss(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched, pix, masks, prompts, gens,
                            outside_weight=0.1, scaling_factor=pipe.vae.config.scaling_factor)

    opt = torch.optim.Adam(pipe.unet.parameters(), lr=2e-3)
    first = float(loss())
    for _ in range(30):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
    last = float(loss())
    assert last < 0.5 * first, (first, last)


def test_loss_weights_the_mask_region():
    """outside_weight 0 ignores every latent pixel outside the mask: changing the U-Net's output
    there leaves the loss unchanged; with weight 1 it does not."""
    from diffusers import DDPMScheduler

    from reidtools.generate.inpaint.training import inpaint_loss
    from reidtools.testing.models import make_inpaint_pipeline

    pipe = make_inpaint_pipeline(seed=2)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    pix = torch.zeros(2, 3, 32, 16)
    masks = torch.zeros(2, 1, 32, 16)
    masks[:, :, :16] = 1                  # the top half of the latent grid (16x8 -> rows 0-7)
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731

    def loss(w, poke):
        handle = pipe.unet.register_forward_hook(lambda m, a, out: poke(out)) if poke else None
        try:
            with torch.no_grad():
                return float(inpaint_loss(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched, pix, masks,
                                          ["", ""], gens(), outside_weight=w, scaling_factor=0.2))
        finally:
            if handle:
                handle.remove()

    def bottom(out):
        out.sample[:, :, 8:] += 5.0
        return out

    assert loss(0.0, None) == pytest.approx(loss(0.0, bottom), rel=1e-6)
    assert loss(1.0, bottom) > loss(1.0, None) + 1.0


def test_full_finetune_saves_a_pipeline_that_reid_inpaint_loads(tmp_path, tiny_sd, shards):
    out = tmp_path / "tuned"
    rc = _reid("finetune", "-q", shards, "-o", out, "--model", tiny_sd, "--method", "full", "--steps", 3,
               "--vae-steps", 2, "--batch-size", 2, "--size", SIZE, "--lr", "1e-3", "--prediction-type", "v_prediction")
    assert rc == 0
    cfg = json.loads((out / "finetune.json").read_text())
    assert cfg["method"] == "full" and cfg["steps"] == 5 and cfg["samples"] == 4
    assert cfg["options"]["size"] == [32, 16] and cfg["prediction_type"] == "v_prediction"
    rows = [json.loads(ln) for ln in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["phase"] for r in rows] == ["vae", "vae", "unet", "unet", "unet"]
    assert "unet/diffusion_pytorch_model.safetensors" in cfg["files"]
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    assert not os.path.exists(os.path.join(tiny_sd, "finetune.json"))

    gen = tmp_path / "gen"
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"0000_0": ["red top"], "0000_1": ["blue top"], "0001_0": ["green top"]}))
    rc = _reid("inpaint", "-q", shards, "-o", gen, "--model", out, "--prompts", f"bank:{bank}", "-k", 1,
               "--steps", 2, "--size", SIZE, "--dtype", "fp32")
    assert rc == 0
    assert len(list(iter_samples([str(p) for p in gen.glob("*.tar")]))) == 4

    # a weight file that no longer matches its recorded SHA-256 is refused, naming it
    with open(out / "unet" / "diffusion_pytorch_model.safetensors", "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\0" if fh.read(1) != b"\0" else b"\1")
    rc = _reid("inpaint", "-q", shards, "-o", tmp_path / "gen2", "--model", out, "--prompts", f"bank:{bank}",
               "-k", 1, "--steps", 1, "--size", SIZE, "--dtype", "fp32")
    assert rc == 1


def test_lora_on_an_sd15_shaped_pipeline_saves_only_the_adapter(tmp_path, shards):
    """SD-1.5's U-Net block layout (4 levels, 2 layers per block, cross-attention in the first three)
    and an 8x VAE at small width: LoRA saves only adapter weights, and `reid inpaint --model` loads the
    base with the adapter fused in (the U-Net's attention projections then differ from the base's)."""
    from safetensors.torch import load_file

    from reidtools.generate.inpaint.pipeline import load_pipeline
    from reidtools.testing.models import SD15_UNET, build_inpaint_pipeline

    base = str(tmp_path / "base")
    unet = {**SD15_UNET, "block_out_channels": (32, 32, 64, 64), "cross_attention_dim": 32, "attention_head_dim": 4,
            "norm_num_groups": 8}
    build_inpaint_pipeline(base, unet=unet, vae_channels=(16, 16, 16, 16))
    out = tmp_path / "lora"
    rc = _reid("finetune", "-q", shards, "-o", out, "--model", base, "--method", "lora", "--steps", 3, "--rank", 4,
               "--batch-size", 2, "--size", SIZE, "--lr", "1e-2")
    assert rc == 0
    saved = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert saved == ["finetune.json", "loss.jsonl", "pytorch_lora_weights.safetensors",
                     "scheduler/scheduler_config.json"]
    weights = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert weights and all("lora" in k for k in weights)
    projections = {k.split(".lora")[0].rsplit(".", 1)[-1] for k in weights}
    assert projections <= {"to_q", "to_k", "to_v", "0"}      # to_out.0 ends in ".0"
    nbytes = sum(v.numel() * v.element_size() for v in weights.values())
    base_bytes = os.path.getsize(os.path.join(base, "unet", "diffusion_pytorch_model.safetensors"))
    assert nbytes < 0.25 * base_bytes
    cfg = json.loads((out / "finetune.json").read_text())
    assert cfg["method"] == "lora" and cfg["base"] == os.path.abspath(base)

    tuned = load_pipeline(str(out), device="cpu", dtype=torch.float32)
    plain = load_pipeline(base, device="cpu", dtype=torch.float32)
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    t, p = tuned.unet.state_dict()[name], plain.unet.state_dict()[name]
    assert t.shape == p.shape and not torch.allclose(t, p)
    assert not any("lora" in k for k in tuned.unet.state_dict())      # fused, adapter layers unloaded


def test_resume_from_a_checkpoint_gives_the_uninterrupted_result(tmp_path, tiny_sd, shards):
    from safetensors.torch import load_file

    args = [shards, "--model", tiny_sd, "--method", "full", "--steps", 4, "--batch-size", 2, "--size", SIZE,
            "--save-every", 2, "--freeze-text-encoder", "--seed", 3]
    whole = tmp_path / "whole"
    assert _reid("finetune", "-q", "-o", whole, *args) == 0
    assert (whole / "checkpoint-2" / "weights.safetensors").exists()
    # a run killed after its step-2 checkpoint: only that checkpoint and the log's first rows survive
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(whole / "checkpoint-2", part / "checkpoint-2")
    rows = (whole / "loss.jsonl").read_text().splitlines()
    (part / "loss.jsonl").write_text("\n".join(rows[:3]) + "\n")        # one row past the checkpoint
    assert _reid("finetune", "-q", "-o", part, *args) == 1             # without --resume: refused
    assert _reid("finetune", "-q", "-o", part, *args, "--resume") == 0
    a = load_file(str(whole / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(part / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda lines: [{k: v for k, v in json.loads(ln).items() if k != "seconds"} for ln in lines]  # noqa: E731
    assert strip((part / "loss.jsonl").read_text().splitlines()) == strip(rows)


def test_a_sample_without_a_prompt_is_one_line_naming_it(tmp_path, tiny_sd, capsys):
    bad = _write(tmp_path / "bad", n=2, prompt=False)
    rc = _reid("finetune", bad, "-o", tmp_path / "o", "--model", tiny_sd, "--method", "full", "--steps", 1,
               "--size", SIZE)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "s0" in err[0] and "clothes_prompt" in err[0]
    assert not (tmp_path / "o" / "finetune.json").exists()


def test_usage_errors(tmp_path, tiny_sd, shards):
    assert _reid("finetune", "-q", shards, "-o", "-", "--model", tiny_sd) == 2
    assert _reid("finetune", "-q", shards, "-o", tmp_path / "x", "--model", tiny_sd, "--vae-steps", 3) == 2
    assert _reid("finetune", "-q", shards, "-o", tmp_path / "x", "--model", tiny_sd, "--size", "30x16") == 2


def test_zero_snr_saves_a_ddim_pipeline_on_the_rescaled_schedule(tmp_path, tiny_sd, shards, capsys):
    out = tmp_path / "zs"
    rc = _reid("finetune", "-q", shards, "-o", out, "--model", tiny_sd, "--method", "full", "--steps", 2,
               "--batch-size", 2, "--size", SIZE, "--prediction-type", "v_prediction", "--zero-snr")
    assert rc == 0
    cfg = json.loads((out / "finetune.json").read_text())
    assert cfg["options"]["zero_snr"] is True
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler"
    assert sched["rescale_betas_zero_snr"] is True and sched["timestep_spacing"] == "trailing"
    assert sched["clip_sample"] is False and sched["prediction_type"] == "v_prediction"
    from reidtools.generate.inpaint.pipeline import load_pipeline

    pipe = load_pipeline(str(out), device="cpu", dtype=torch.float32)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and float(pipe.scheduler.alphas_cumprod[-1]) == 0.0

    # PNDM cannot sample this schedule: one line naming the option, not a silently wrong schedule
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"0000_0": ["red top"], "0001_0": ["green top"]}))
    capsys.readouterr()
    rc = _reid("inpaint", shards, "-o", tmp_path / "gen", "--model", out, "--prompts", f"bank:{bank}", "-k", 1,
               "--steps", 1, "--size", SIZE, "--dtype", "fp32", "--scheduler", "pndm")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "--scheduler pndm" in err[0]
    assert not any((tmp_path / "gen").glob("*.tar"))


def test_zero_snr_usage_errors(tmp_path, tiny_sd, shards):
    base = ("finetune", "-q", shards, "--model", tiny_sd, "--steps", 1, "--size", SIZE, "--zero-snr")
    assert _reid(*base, "-o", tmp_path / "a", "--method", "lora", "--prediction-type", "v_prediction") == 2
    assert _reid(*base, "-o", tmp_path / "b", "--method", "full", "--prediction-type", "epsilon") == 2
    # the tiny base's own target is epsilon: refused once the model is read, exit 1
    assert _reid(*base, "-o", tmp_path / "c", "--method", "full") == 1
    assert not (tmp_path / "c" / "finetune.json").exists()
