"""`reid inpaint`: pairing, per-sample seeds, exact compositing, resume, offline models, and
discriminator guidance (eqs. 6-8) on tiny random-weight models loaded through the real code path."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.shards import ShardWriter, iter_samples, meta

SIZE = "32x16"    # tiny: latents 16x8 with the tiny VAE (factor 2)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from reidtools.testing.models import build_inpaint_pipeline

    folder = str(tmp_path_factory.mktemp("tiny-sd"))
    build_inpaint_pipeline(folder)
    return folder


def _write_shards(folder, n=4, per_shard=2, h=32, w=16):
    r = np.random.RandomState(0)
    with ShardWriter(str(folder), prefix="train", maxcount=per_shard) as wr:
        for i in range(n):
            img = Image.fromarray(r.randint(0, 255, (h, w, 3), dtype=np.uint8))
            m = np.zeros((h, w), np.uint8)
            m[4 + i: h - 6, 2:w - 2] = 255
            m[h - 6, 2:w - 2] = 128                       # a soft edge row: composited proportionally
            wr.write({"__key__": f"s{i}", "jpg": img, "mask.png": Image.fromarray(m, "L"),
                      "json": {"dataset": "t", "split": "train", "pid": i // 2, "camid": 0,
                               "clothes": f"{i // 2:04d}_{i % 2}", "caption": "old clothes",
                               "clothes_prompt": f"outfit {i % 3}"}})
    return str(folder)


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sd):
    from reidtools.generate.inpaint.pipeline import load_pipeline

    return load_pipeline(tiny_sd, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _write_shards(tmp_path_factory.mktemp("in"))


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank.json"
    path.write_text(json.dumps({f"{p:04d}_{o}": [f"Colour{p}{o} Shirt.", "jeans", "a"] for p in range(3) for o in range(2)}))
    return str(path)


def _reid(*args):
    return run_cli(cli, ["inpaint", "-q", *map(str, args)])


def _load(folder):
    from reidtools.shards import expand_inputs, image

    out = {}
    for s in iter_samples(expand_inputs([str(folder)])):
        out[s["__key__"]] = (np.asarray(image(s)), meta(s))
    return out


def _sources(folder):
    from reidtools.shards import expand_inputs, image, mask

    return {s["__key__"]: (np.asarray(image(s)), np.asarray(mask(s))) for s in iter_samples(expand_inputs([folder]))}


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory, tiny_sd, shards, bank):
    out = tmp_path_factory.mktemp("out")
    rc = _reid(shards, "-o", out, "--model", tiny_sd, "--prompts", f"bank:{bank}", "-k", 2, "--steps", 2,
               "--size", SIZE, "--batch-size", 3, "--dtype", "fp32", "--keep-source")
    assert rc == 0
    return out


def test_variants_keys_history_and_exact_pixels_outside_mask(bank_run, shards, tiny_sd):
    got, src = _load(bank_run), _sources(shards)
    assert set(got) == set(src) | {f"s{i}-inpaint{k:02d}" for i in range(4) for k in range(2)}
    for key, (pixels, m) in got.items():
        if "-inpaint" not in key:
            continue
        source = key.split("-")[0]
        orig, mask = src[source]
        assert m["source"] == source
        entry = m["history"][-1]
        assert entry["tool"] == "inpaint" and entry["model"] == tiny_sd
        assert entry["parameters"]["steps"] == 2 and entry["parameters"]["guidance"] == 7.5
        assert entry["parameters"]["scheduler"] == "PNDMScheduler" and entry["parameters"]["size"] == [32, 16]
        own = m["clothes"].split("+")[0]
        assert own == got[source][1]["clothes"]                      # source's clothes id ...
        assert entry["parameters"]["target_clothes"] != own          # ... never its own target
        assert m["clothes"] == f"{own}+{entry['parameters']['target_clothes']}"
        # DLCR normalisation: lower-case, no punctuation, items of <= 2 chars dropped
        assert entry["prompt"] == m["clothes_prompt"] and entry["prompt"].endswith("shirt jeans")
        assert "caption" not in m
        assert np.array_equal(pixels[mask == 0], orig[mask == 0])   # identity pixels bit-exact
        assert not np.array_equal(pixels[mask == 255], orig[mask == 255])
    # two variants of one sample target two different clothes ids
    t0 = got["s0-inpaint00"][1]["history"][-1]["parameters"]["target_clothes"]
    t1 = got["s0-inpaint01"][1]["history"][-1]["parameters"]["target_clothes"]
    assert t0 != t1


def test_soft_mask_edge_is_a_weighted_blend():
    from reidtools.generate.inpaint.pipeline import composite

    orig = Image.fromarray(np.full((2, 2, 3), 100, np.uint8))
    gen = Image.fromarray(np.full((2, 2, 3), 200, np.uint8))
    m = Image.fromarray(np.array([[0, 255], [128, 51]], np.uint8), "L")
    out = np.asarray(composite(orig, gen, m))[..., 0]
    # (m*200 + (255-m)*100 + 127) // 255: m=128 -> 150 (150.19), m=51 -> 120
    assert out.tolist() == [[100, 200], [150, 120]]


def test_same_output_whatever_batch_size_or_shard_split(bank_run, tmp_path, tiny_sd, shards, bank):
    base = _load(bank_run)     # one task, batch size 3 (batches straddle samples and shards' ends)
    # task 1 of 2, batch size 1: only the second shard (s2, s3)
    assert _reid(shards, "-o", tmp_path / "split", "--model", tiny_sd, "--prompts", f"bank:{bank}", "-k", 2,
                 "--steps", 2, "--size", SIZE, "--batch-size", 1, "--dtype", "fp32",
                 "--shard-index", 1, "--num-shards", 2) == 0
    other = _load(tmp_path / "split")
    assert set(other) == {f"s{i}-inpaint{k:02d}" for i in (2, 3) for k in range(2)}
    for key, (pixels, m) in other.items():
        assert m["history"][-1]["seed"] == base[key][1]["history"][-1]["seed"]
        assert m["clothes"] == base[key][1]["clothes"]
        # float reductions differ with the batch shape; after uint8 rounding at most one level
        diff = np.abs(pixels.astype(int) - base[key][0].astype(int))
        assert diff.max() <= 1, key


def test_each_output_is_conditioned_on_its_own_prompt_and_image(tiny_pipe):
    """Forward hooks on the tiny U-Net: row i of every call carries prompt i's text embedding and
    image i's mask, also with classifier-free guidance ([uncond; cond] halves)."""
    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, Job

    pipe = tiny_pipe
    prompts = ["red shirt", "blue coat", "green dress"]
    masks = []
    for i in range(3):
        m = np.zeros((32, 16), np.uint8)
        m[:8 * (i + 1)] = 255          # distinct mask area per image: 1/4, 2/4, 3/4 of the rows
        masks.append(Image.fromarray(m, "L"))
    img = Image.fromarray(np.zeros((32, 16, 3), np.uint8))
    jobs = [Job(img, masks[i], prompts[i], seed=i) for i in range(3)]
    seen = []
    handle = pipe.unet.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append((args[0].detach().clone(), kwargs["encoder_hidden_states"].clone())),
        with_kwargs=True)
    try:
        Inpainter(pipe, InpaintSettings(size=(32, 16), steps=2)).run(jobs)
    finally:
        handle.remove()
    with torch.no_grad():
        ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        own = pipe.text_encoder(ids)[0]
    assert seen
    for sample, hidden in seen:
        assert sample.shape[0] == 6 and hidden.shape[0] == 6
        cond = hidden[3:]
        for i in range(3):
            assert torch.allclose(cond[i], own[i], atol=1e-5)
            for j in range(3):
                if j != i:
                    assert not torch.allclose(cond[i], own[j], atol=1e-3)
            # channel 4 is the downsampled mask: rows 0..4(i+1) of 16 latent rows are 1
            mask_rows = sample[3 + i, 4].mean(dim=1)
            assert mask_rows.sum().item() == pytest.approx(4 * (i + 1))
            assert torch.equal(sample[i, 4], sample[3 + i, 4])


def test_resume_skips_finished_shards(bank_run, tiny_sd, shards, bank, caplog):
    before = {p: os.path.getmtime(os.path.join(bank_run, p)) for p in os.listdir(bank_run)}
    assert _reid(shards, "-o", bank_run, "--model", tiny_sd, "--prompts", f"bank:{bank}", "-k", 2, "--steps", 2,
                 "--size", SIZE, "--dtype", "fp32", "--keep-source") == 0
    assert {p: os.path.getmtime(os.path.join(bank_run, p)) for p in os.listdir(bank_run)} == before


def test_fixed_and_field_policies(tmp_path, tiny_sd, shards):
    assert _reid(shards, "-o", tmp_path / "f", "--model", tiny_sd, "--prompts", "field:clothes_prompt", "-k", 1,
                 "--steps", 1, "--size", SIZE, "--dtype", "fp32", "--batch-size", 4) == 0
    got = _load(tmp_path / "f")
    assert got["s3-inpaint00"][1]["history"][-1]["prompt"] == "outfit 0"
    from reidtools.generate.prompts import PromptPolicy

    policy = PromptPolicy("fixed:generate a new cloth for the person")
    ts = policy.targets({"__key__": "a"}, {"clothes": "c1"}, 3)
    assert {t.prompt for t in ts} == {"generate a new cloth for the person"}
    assert len({t.clothes for t in ts}) == 3 and all(t.clothes.startswith("c1+") for t in ts)


def test_usage_and_runtime_errors(tmp_path, tiny_sd, shards, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _reid(shards, "-o", tmp_path / "x", "--prompts", "fixed:a", "--model", "nobody/not-cached-model") == 1
    err = capsys.readouterr().err
    assert ("model nobody/not-cached-model is not in the local cache; download it with "
            "`huggingface-cli download nobody/not-cached-model` on a connected machine or pass a folder") in err
    assert _reid(shards, "-o", tmp_path / "x", "--prompts", "fixed:a", "--size", "30x16", "--model", tiny_sd) == 2
    assert "multiples of 8" in capsys.readouterr().err
    assert _reid(shards, "-o", tmp_path / "x", "--model", tiny_sd) == 2
    assert _reid(shards, "-o", tmp_path / "x", "--prompts", "nonsense", "--model", tiny_sd) == 2
    # a sample without a mask: one line naming shard and key
    nomask = tmp_path / "nomask"
    with ShardWriter(str(nomask), prefix="train") as wr:
        wr.write({"__key__": "k0", "jpg": Image.new("RGB", (16, 32)), "json": {"clothes": "c"}})
    assert _reid(nomask, "-o", tmp_path / "y", "--prompts", "fixed:a", "--model", tiny_sd, "--size", SIZE,
                 "--steps", 1) == 1
    err = capsys.readouterr().err
    assert "k0" in err and "mask.png" in err and "train-000000.tar" in err
    assert not os.path.exists(tmp_path / "y" / "train-000000.tar")


# ----------------------------------------------------------------------------- discriminator guidance
class _Toy(torch.nn.Module):
    """logit = c * sum(tanh(x)) + 0.001 t: d/dx log(d/(1-d)) = c * (1 - tanh(x)^2) while d is unclipped."""

    def __init__(self, c=0.5):
        super().__init__()
        self.c = c
        self.config = type("C", (), {"in_channels": 4})()

    def forward(self, x, t):
        return self.c * torch.tanh(x).flatten(1).sum(1) + 0.001 * t


def test_guidance_term_matches_hand_computation():
    from reidtools.generate.inpaint.discriminator import guidance_eps

    # DDPM with betas (0.1, 0.2, 0.3): alphabar_2 = 0.9 * 0.8 * 0.7 = 0.504, sigma = sqrt(0.496) = 0.704273
    betas = torch.tensor([0.1, 0.2, 0.3])
    alphabar = torch.cumprod(1 - betas, 0)[2]
    assert alphabar.item() == pytest.approx(0.504)
    x = torch.tensor([[[[0.0, 0.5], [-1.0, 2.0]]]]).repeat(1, 4, 1, 1)
    eps = guidance_eps(_Toy(0.5), x, 2, alphabar, weight=2.0)
    # x=0: -2 * 0.704273 * 0.5 * 1 = -0.704273; x=0.5: 1 - tanh(0.5)^2 = 0.786448 -> -0.553873
    assert eps[0, 0, 0, 0].item() == pytest.approx(-0.704273, abs=1e-5)
    assert eps[0, 0, 0, 1].item() == pytest.approx(-0.553873, abs=1e-5)
    expected = -2.0 * math.sqrt(0.496) * 0.5 * (1 - torch.tanh(x) ** 2)
    assert torch.allclose(eps, expected, atol=1e-6)
    # a saturated discriminator (d clipped to 1 - 1e-5) contributes nothing
    assert torch.count_nonzero(guidance_eps(_Toy(100.0), torch.ones(1, 4, 2, 2), 2, alphabar, 1.0)) == 0


def test_guidance_enters_the_sampler_and_w0_is_exact(tiny_pipe):
    from reidtools.generate.inpaint.discriminator import DiscriminatorConfig, GuidanceHook, LatentDiscriminator
    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, Job

    pipe = tiny_pipe
    torch.manual_seed(0)
    disc = LatentDiscriminator(DiscriminatorConfig(width=8, depth=2, time_dim=16)).eval()
    m = np.zeros((32, 16), np.uint8)
    m[4:28] = 255
    img = Image.fromarray(np.random.RandomState(1).randint(0, 255, (32, 16, 3), dtype=np.uint8))
    jobs = [Job(img, Image.fromarray(m, "L"), "red shirt", seed=7)]
    settings = InpaintSettings(size=(32, 16), steps=3)

    def run(weight=None, t_min=200.0):
        hook = None if weight is None else GuidanceHook(disc, pipe.scheduler.alphas_cumprod, weight, t_min)
        out = np.asarray(Inpainter(pipe, settings, guidance_hook=hook).run(jobs)[0])
        return out, hook

    plain, _ = run()
    zero, hook0 = run(0.0)
    assert hook0.applied_steps > 0 and np.array_equal(plain, zero)
    guided, hook = run(50.0)
    assert hook.applied_steps == hook0.applied_steps
    assert not np.array_equal(plain, guided)
    _, late = run(50.0, t_min=2000.0)      # cut-off above every timestep: never applied
    assert late.applied_steps == 0


def test_guidance_applies_at_every_step_by_default_and_released_cutoff_is_an_option(tiny_pipe):
    """DLCR supplementary §12.1 applies the correction "at each denoising step"; the released code skips
    t <= 200 (`--dg-min-t 201`)."""
    from reidtools.generate.inpaint.discriminator import DiscriminatorConfig, GuidanceHook, LatentDiscriminator
    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, Job

    pipe = tiny_pipe
    torch.manual_seed(0)
    disc = LatentDiscriminator(DiscriminatorConfig(width=8, depth=2, time_dim=16)).eval()
    m = np.zeros((32, 16), np.uint8)
    m[4:28] = 255
    img = Image.fromarray(np.full((32, 16, 3), 90, np.uint8))
    jobs = [Job(img, Image.fromarray(m, "L"), "red shirt", seed=7)]
    seen = []
    counter = pipe.unet.register_forward_pre_hook(lambda mod, args, kw: seen.append(float(args[1] if len(args) > 1
                                                  else kw["timestep"])), with_kwargs=True)
    try:
        paper = GuidanceHook(disc, pipe.scheduler.alphas_cumprod, 1.0)
        Inpainter(pipe, InpaintSettings(size=(32, 16), steps=5), guidance_hook=paper).run(jobs)
        assert paper.applied_steps == len(seen) > 0                    # every U-Net call was guided
        calls = len(seen)
        released = GuidanceHook(disc, pipe.scheduler.alphas_cumprod, 1.0, 201.0)
        Inpainter(pipe, InpaintSettings(size=(32, 16), steps=5), guidance_hook=released).run(jobs)
    finally:
        counter.remove()
    assert released.applied_steps == sum(t >= 201 for t in seen[calls:]) < calls


def test_train_discriminator_cli_then_guided_inpaint(tmp_path, tiny_sd, shards, bank_run):
    disc = tmp_path / "disc"
    assert run_cli(cli, ["discriminator", "-q", str(shards), "--fake", str(bank_run), "-o", str(disc), "--model",
                         str(tiny_sd), "--size", SIZE, "--steps", "3", "--batch-size", "4", "--width", "8",
                         "--dtype", "fp32"]) == 0
    assert {"config.json", "model.safetensors", "train_log.jsonl"} <= set(os.listdir(disc))
    cfg = json.loads((disc / "config.json").read_text())
    assert cfg["size"] == [32, 16] and cfg["num_train_timesteps"] == 1000
    assert cfg["format"] == "reid-discriminator/1" and len(cfg["files"]["model.safetensors"]) == 64
    out = tmp_path / "guided"
    assert _reid(shards, "-o", out, "--model", tiny_sd, "--prompts", "fixed:a shirt", "-k", 1, "--steps", 2,
                 "--size", SIZE, "--dtype", "fp32", "--discriminator", disc, "--dg-weight", 2) == 0
    entry = next(iter(_load(out).values()))[1]["history"][-1]
    assert entry["parameters"]["dg_weight"] == 2 and entry["parameters"]["dg_min_t"] == 0
    assert run_cli(cli, ["discriminator", str(shards), "-o", str(disc), "--model", str(tiny_sd)]) == 2   # no --fake
    # a flipped byte in the weights is one clear error, not silently different guidance
    w = disc / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    assert _reid(shards, "-o", tmp_path / "g3", "--model", tiny_sd, "--prompts", "fixed:a shirt", "-k", 1, "--steps", 1,
                 "--size", SIZE, "--dtype", "fp32", "--discriminator", disc) == 1


def test_synth_mask_caption_inpaint_pipeline(tmp_path, tiny_sd):
    """The acceptance chain: synthetic data -> DLCR masks -> template prompts + bank -> K variants whose
    pixels outside the mask equal the source's."""
    from reidtools.data.synth import write_dataset
    from reidtools.shards import expand_inputs, image, mask

    write_dataset(str(tmp_path / "synth"), ids=2, outfits=2, cams=2, images_per=2, size=(64, 32), seed=0)
    train = str(tmp_path / "synth" / "train-000000.tar")
    assert run_cli(cli, ["mask", "-q", train, "-o", str(tmp_path / "m")]) == 0
    assert run_cli(cli, ["caption", "-q", "--engine", "template", str(tmp_path / "m"), "-o", str(tmp_path / "c"),
                         "--bank", str(tmp_path / "bank.json")]) == 0
    assert _reid(tmp_path / "c", "-o", tmp_path / "g", "--model", tiny_sd, "--prompts", f"bank:{tmp_path / 'bank.json'}",
                 "-k", 1, "--steps", 1, "--size", "64x32", "--dtype", "fp32", "--batch-size", 8) == 0
    src = {s["__key__"]: s for s in iter_samples(expand_inputs([str(tmp_path / "c")]))}
    out = list(iter_samples(expand_inputs([str(tmp_path / "g")])))
    assert len(out) == len(src) > 0
    for s in out:
        m = meta(s)
        orig = src[m["source"]]
        keep = np.asarray(mask(orig)) == 0
        assert keep.any() and not keep.all()
        assert np.array_equal(np.asarray(image(s))[keep], np.asarray(image(orig))[keep])
        assert m["clothes_prompt"] != meta(orig)["clothes_prompt"] and "garments" not in m


def _diffusers_pil_call(pipe, jobs, size, steps, guidance):
    """What Inpainter.run did before its inputs were prepared off the GPU-feeding thread: PIL images and
    masks resized here, prompts encoded by the pipeline, output_type="np", uint8 by rint, composited."""
    from reidtools.generate.inpaint.pipeline import composite

    h, w = size
    negatives = [j.negative_prompt or "" for j in jobs]
    out = pipe(prompt=[j.prompt for j in jobs], image=[j.image.convert("RGB").resize((w, h), Image.BICUBIC) for j in jobs],
               mask_image=[j.mask.convert("L").resize((w, h), Image.NEAREST) for j in jobs],
               negative_prompt=negatives if any(negatives) else None, height=h, width=w, num_inference_steps=steps,
               guidance_scale=guidance, strength=1.0, num_images_per_prompt=1,
               generator=[torch.Generator("cpu").manual_seed(j.seed) for j in jobs], output_type="np")
    arrays = np.clip(np.rint(np.asarray(out.images) * 255.0), 0, 255).astype(np.uint8)
    return [np.asarray(composite(j.image, Image.fromarray(a, "RGB"), j.mask)) for j, a in zip(jobs, arrays)]


@pytest.mark.parametrize("guidance,negative", [(7.5, None), (7.5, "blurry"), (1.0, None)])
def test_prepared_tensor_inputs_and_cached_prompt_states_give_the_pil_path_bytes(tiny_sd, guidance, negative):
    """Inputs prepared as arrays (Inpainter.prepare), passed to diffusers as tensors, prompt states reused
    across batches and uint8 made on the device: the same bytes as diffusers' own PIL path, with soft mask
    edges and a source size that differs from the generation size; and the text encoder runs once per
    distinct batch of prompts."""
    from reidtools.generate.inpaint.pipeline import InpaintSettings, Inpainter, Job, load_pipeline

    reference = load_pipeline(tiny_sd, device="cpu", dtype=torch.float32)   # untouched by an Inpainter
    pipe = load_pipeline(tiny_sd, device="cpu", dtype=torch.float32)
    r = np.random.RandomState(3)
    jobs = []
    for i in range(3):
        m = np.zeros((40, 24), np.uint8)
        m[5 + i:30, 3:20] = 255
        m[30, 3:20] = 90
        img = Image.fromarray(r.randint(0, 255, (40, 24, 3), dtype=np.uint8))
        jobs.append(Job(img, Image.fromarray(m, "L"), "red shirt" if i < 2 else "blue coat", seed=10 + i,
                        negative_prompt=negative))
    inp = Inpainter(pipe, InpaintSettings(size=(32, 16), steps=2, guidance=guidance))
    calls = []
    pipe.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    for batch in (jobs, jobs, jobs[:2]):     # the first batch of prompts recurs: its states are reused
        for job in batch:
            job.prepared = inp.prepare(job.image, job.mask)
        got = [np.asarray(p) for p in inp.run(batch)]
        want = _diffusers_pil_call(reference, batch, (32, 16), 2, guidance)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert len(calls) == (4 if guidance > 1 else 2)      # (cond [+ uncond]) x 2 distinct prompt batches


def test_composite_is_the_rounded_blend_for_every_mask_level():
    from reidtools.generate.inpaint.pipeline import composite

    m, g, o = np.meshgrid(np.arange(256), np.arange(0, 256, 5), np.arange(0, 256, 3), indexing="ij")
    shape = (m.shape[0], -1)
    orig = np.repeat(o.reshape(shape)[..., None], 3, -1).astype(np.uint8)
    gen = np.repeat(g.reshape(shape)[..., None], 3, -1).astype(np.uint8)
    out = np.asarray(composite(Image.fromarray(orig), gen, Image.fromarray(m.reshape(shape).astype(np.uint8), "L")))
    want = np.floor((m * g + (255 - m) * o) / 255 + 0.5).reshape(shape)   # to nearest; 255 is odd, no ties
    assert np.array_equal(out[..., 0], want) and np.array_equal(out[..., 2], want)


@pytest.mark.slow
def test_sigint_while_stdin_blocks_the_reader_exits_130_and_leaves_no_shard(tiny_sd, tmp_path):
    """SIGINT while the run waits for more of stdin (with planner, finisher and encoder threads alive)
    ends it at once, with one line, and the shard being written is removed, not published."""
    import signal
    import subprocess
    import sys
    import tarfile
    import time

    from reidtools.shards.writer import _encode_sample

    r = np.random.RandomState(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(12):     # tarfile reads 10 KiB records: enough for s0-s2 to be read, s0 written
            m = np.zeros((32, 16), np.uint8)
            m[8:24, 4:12] = 255
            sample = {"jpg": Image.fromarray(r.randint(0, 255, (32, 16, 3), dtype=np.uint8)),
                      "mask.png": Image.fromarray(m, "L"),
                      "json": {"dataset": "t", "split": "train", "pid": i, "camid": 0, "clothes": f"{i}_0"}}
            for name, data in _encode_sample(f"s{i}", sample):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        members_end = tar.offset          # before the end-of-archive blocks: the stream stays open
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "reidtools", "inpaint", "-", "-o", str(out), "--model", tiny_sd,
                             "--prompts", "fixed:a shirt", "-k", "1", "--steps", "1", "--size", SIZE, "--dtype", "fp32",
                             "--batch-size", "1", "-q"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    try:
        proc.stdin.write(buf.getvalue()[:members_end])
        proc.stdin.flush()
        deadline = time.monotonic() + 300
        while not list(out.glob("*.tmp")):      # the first output is being written: the run is in the stage
            assert proc.poll() is None and time.monotonic() < deadline, "no output was written"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)            # stdin stays open: EOF must not be what ends the run
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert proc.returncode == 130 and lines == ["reid inpaint: interrupted"], err
    assert list(out.iterdir()) == []
