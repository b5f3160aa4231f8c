"""`reid invert` (DiVE): tiny random-weight SD, fit on synthetic rgb+ir shards, sample, reload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reidtools.commands import main
from reidtools.errors import ReidError
from reidtools.generate.inversion.checkpoint import EMBEDS, LORA
from reidtools.generate.inversion.data import PAPER_TEMPLATE, camera_codes, caption, id_token, read_train_set
from reidtools.generate.inversion.model import PlaceholderRows, add_id_tokens
from reidtools.generate.inversion.sample import Job, select_cameras, select_ids
from reidtools.generate.inversion.training import FitOptions
from reidtools.generate.training import batch_indices

FIT = ["--steps", "3", "--batch-size", "2", "--size", "64x32", "--min-images-per-id", "4", "--rank", "4",
       "--lr", "1e-2", "--save-every", "1", "-q"]


def run(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from reidtools.testing.sd import build_txt2img_pipeline

    folder = tmp_path_factory.mktemp("tiny_sd")
    build_txt2img_pipeline(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def ckpt(tiny_sd, synth_ir_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "c"
    assert run(["invert", "fit", str(synth_ir_dir / "train-000000.tar"), "-o", str(out), "--base", tiny_sd, *FIT]) == 0
    return out


def test_fit_writes_a_complete_checkpoint(ckpt, synth_ir_dir):
    from safetensors.torch import load_file

    from reidtools.shards import iter_samples

    man = json.loads((ckpt / "manifest.json").read_text())
    train_pids = sorted({s["json"]["pid"] for s in iter_samples([str(synth_ir_dir / "train-000000.tar")])})
    assert {k: v["token"] for k, v in man["ids"].items()} == {str(p): f"<id_{p}>" for p in train_pids}
    assert all(v["pid"] == int(k) and v["dataset"] == "synth" and v["images"] >= 4 for k, v in man["ids"].items())
    assert man["step"] == 3
    cams = man["cameras"]
    assert {(v["modality"], v["camid"]) for v in cams.values()} == {("rgb", 1), ("ir", 2)}
    assert all(len(v["code"]) == 8 and v["code"].isalnum() for v in cams.values())
    embeds = load_file(str(ckpt / EMBEDS))
    assert sorted(embeds) == sorted(v["token"] for v in man["ids"].values())
    assert all(t.shape == (1, 32) for t in embeds.values())
    lora = load_file(str(ckpt / LORA))
    assert lora and all(k.startswith("unet.") for k in lora)
    assert any("to_q" in k for k in lora) and not any("to_out" in k for k in lora)   # paper: q, k, v only


def test_checkpoint_loads_with_diffusers_own_loaders(ckpt, tiny_sd):
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    base = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    base_rows = base.text_encoder.get_input_embeddings().weight.detach().clone()
    base_q = dict(base.unet.named_parameters())["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"].detach().clone()
    init = base_rows[base.tokenizer.encode("person", add_special_tokens=False)].mean(0)
    embeds = load_file(str(ckpt / EMBEDS))
    tokens = list(embeds)

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    pipe.load_textual_inversion([{t: embeds[t]} for t in tokens], token=tokens)
    pipe.load_lora_weights(str(ckpt), weight_name=LORA)
    rows = pipe.text_encoder.get_input_embeddings().weight.detach()
    n = base_rows.shape[0]
    assert torch.equal(rows[:n], base_rows)                      # the base vocabulary is untouched
    for t in tokens:
        tid = pipe.tokenizer.convert_tokens_to_ids(t)
        assert tid >= n and torch.allclose(rows[tid], embeds[t][0])
        assert not torch.allclose(embeds[t][0], init)            # the identity rows were trained
    # the LoRA is active: the fused q projection differs from the base one
    pipe.fuse_lora()
    fused = dict(pipe.unet.named_parameters())["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.base_layer.weight"]
    assert not torch.allclose(fused, base_q)

    # a single identity file alone is diffusers' one-token layout: load_textual_inversion(folder-less dict)
    one = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None, requires_safety_checker=False)
    one.load_textual_inversion({tokens[0]: embeds[tokens[0]]})
    assert tokens[0] in one.tokenizer.get_vocab()


def test_only_placeholder_rows_are_trained(tiny_sd):
    # A few AdamW steps with weight decay through the frozen text encoder: the embedding matrix must not
    # move, the placeholder rows must; written back, only the new rows differ.
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_sd, subfolder="tokenizer")
    te = CLIPTextModel.from_pretrained(tiny_sd, subfolder="text_encoder")
    te.requires_grad_(False)
    first = add_id_tokens(tok, te, ["<id_1>", "<id_2>"], "person")
    emb = te.get_input_embeddings()
    before = emb.weight.detach().clone()
    rows = PlaceholderRows(emb, first, emb.weight[first:])
    opt = torch.optim.AdamW([rows.weight], lr=0.1, weight_decay=0.1)
    ids = tok(["a photo of a <id_1> person", "<id_2>"], padding="max_length", max_length=77,
              return_tensors="pt").input_ids
    for _ in range(2):
        te(ids)[0].pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(emb.weight, before)
    assert not torch.allclose(rows.weight, before[first:])
    rows.write_into(emb)
    changed = (emb.weight != before).any(1).nonzero().flatten().tolist()
    assert changed == [first, first + 1]


def test_sample_writes_valid_ir_shards(ckpt, tmp_path):
    from reidtools.shards import image, iter_samples

    man = json.loads((ckpt / "manifest.json").read_text())
    out = tmp_path / "gen"
    ids = sorted(man["ids"], key=int)[:2]
    assert run(["invert", "sample", str(ckpt), "-o", str(out), "--ids", ",".join(ids), "--per-id", "2",
                "--steps", "2", "--batch-size", "3", "-q"]) == 0
    samples = list(iter_samples([str(out / "invert-000000.tar")]))
    assert len(samples) == 4                                      # 2 ids x 1 IR camera (default) x 2
    ir = next(k for k, v in man["cameras"].items() if v["modality"] == "ir")
    for s in samples:
        m = s["json"]
        assert str(m["pid"]) in ids and m["camid"] == 2 and m["modality"] == "ir" and m["split"] == "train"
        assert m["clothes"] == str(m["pid"])   # `reid train` reads it; no clothes ids in DiVE's data
        assert "source" not in m
        h = m["history"][-1]
        assert h["tool"] == "invert" and h["parameters"]["steps"] == 2 and h["parameters"]["scheduler"] == "dpm++"
        assert h["prompt"] == f"a {man['cameras'][ir]['code']} photo of <id_{m['pid']}> person"
        assert image(s).size == (32, 64)
    assert len({s["__key__"] for s in samples}) == 4
    # a re-run skips the finished shard
    before = (out / "invert-000000.tar").stat().st_mtime_ns
    assert run(["invert", "sample", str(ckpt), "-o", str(out), "--ids", ",".join(ids), "--per-id", "2",
                "--steps", "2", "-q"]) == 0
    assert (out / "invert-000000.tar").stat().st_mtime_ns == before


def test_resume_reproduces_an_uninterrupted_run(ckpt, tiny_sd, synth_ir_dir, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "r"
    train = str(synth_ir_dir / "train-000000.tar")
    args = ["invert", "fit", train, "-o", str(out), "--base", tiny_sd, *FIT]
    steps2 = list(args)
    steps2[steps2.index("--steps") + 1] = "2"
    assert run(steps2) == 0
    assert json.loads((out / "manifest.json").read_text())["step"] == 2
    # --save-every 1 with the default --keep-checkpoints 1: only the newest resumable folder is left
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert {"train_state.safetensors", "train_state.json", "manifest.json"} <= {p.name for p in (out / "checkpoint-2").iterdir()}
    assert run(args) == 1                                          # exists: needs --resume
    assert run([*args, "--resume"]) == 0
    for name in (EMBEDS, LORA):
        a, b = load_file(str(out / name)), load_file(str(ckpt / name))
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-5, atol=1e-6)


def test_a_corrupted_weight_file_is_one_error_naming_it(ckpt, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    man = json.loads((bad / "manifest.json").read_text())
    assert set(man["files"]) == {EMBEDS, LORA} and all(len(v) == 64 for v in man["files"].values())
    data = bytearray((bad / LORA).read_bytes())
    data[-3] ^= 0x55
    (bad / LORA).write_bytes(bytes(data))
    assert run(["invert", "sample", str(bad), "-o", str(tmp_path / "o"), "--per-id", "1", "--steps", "1", "-q"]) == 1
    assert f"{bad / LORA}: SHA-256 differs" in capsys.readouterr().err


def test_fit_rejects_too_few_images(tiny_sd, synth_ir_dir, tmp_path, capsys):
    code = run(["invert", "fit", str(synth_ir_dir / "train-000000.tar"), "-o", str(tmp_path / "x"),
                "--base", tiny_sd, "--min-images-per-id", "1000", "--steps", "1"])
    assert code == 1
    assert "--min-images-per-id" in capsys.readouterr().err


def test_camera_codes_are_fixed_distinct_and_sized():
    a = camera_codes(["rgb1", "ir2", "ir3"], 8, seed=0)
    assert a == camera_codes(["ir3", "ir2", "rgb1"], 8, seed=0)
    assert a["ir2"] == camera_codes(["ir2"], 8, seed=0)["ir2"]   # independent of the other cameras
    assert len({c.lower() for c in a.values()}) == 3 and all(len(c) == 8 for c in a.values())
    assert all(len(c) == 4 for c in camera_codes(["rgb1", "ir2"], 4, seed=0).values())   # released code
    assert camera_codes(["ir2"], 8, seed=1) != camera_codes(["ir2"], 8, seed=0)


def test_batches_depend_only_on_seed_and_step():
    n, b = 7, 3
    seq = [i for s in range(7) for i in batch_indices(n, s, b, seed=0)]
    for e in range(3):                                             # every epoch is a permutation
        assert sorted(seq[e * n:(e + 1) * n]) == list(range(n))
    assert batch_indices(n, 4, b, seed=0) == seq[12:15]


def test_captions_and_camera_selection():
    # seed 002 §3: 'prompts of the form "a [k] photo of [p] person"', with [k] the camera code
    assert caption(PAPER_TEMPLATE, "b8zBXKoH", "<id_3>", True) == "a b8zBXKoH photo of <id_3> person"
    assert caption(PAPER_TEMPLATE, "b8zBXKoH", "<id_3>", False) == "b8zBXKoH"
    man = {"cameras": {"rgb1": {"modality": "rgb"}, "ir2": {"modality": "ir"}, "ir5": {"modality": "ir"}},
           "ids": {"a/1": {"pid": 1}, "a/4": {"pid": 4}, "b/4": {"pid": 4}}}
    assert select_cameras(man, None) == ["ir2", "ir5"]
    assert select_cameras(man, ["rgb", "ir5"]) == ["rgb1", "ir5"]
    with pytest.raises(ReidError, match="knows cameras"):
        select_cameras(man, ["ir9"])
    assert select_ids(man, None) == ["a/1", "a/4", "b/4"]
    assert select_ids(man, ["1", "b/4"]) == ["a/1", "b/4"]
    with pytest.raises(ReidError, match="not in the checkpoint"):
        select_ids(man, ["2"])
    with pytest.raises(ReidError, match="ambiguous"):
        select_ids(man, ["4"])


def test_mixed_datasets_keep_equal_pids_apart(tmp_path):
    # DiVE trains Market-1501 (RGB) and SYSU-MM01 (RGB+IR) together: pid 1 of each is a different person.
    from PIL import Image

    from reidtools.shards import ShardWriter

    with ShardWriter(str(tmp_path), prefix="mix") as w:
        for i, (ds, pid, mod, cam) in enumerate([("market", 1, "rgb", 1), ("market", 1, "rgb", 2),
                                                 ("sysu", 1, "ir", 3), ("sysu", 1, "rgb", 1), ("sysu", 2, "ir", 3)]):
            w.write({"__key__": f"k{i}", "json": {"dataset": ds, "pid": pid, "camid": cam, "modality": mod},
                     "jpg": Image.new("RGB", (16, 32))})
    ts = read_train_set([str(tmp_path / "mix-000000.tar")], FitOptions(min_images_per_id=2))
    assert sorted(ts.id_info) == ["market/1", "sysu/1"] and ts.skipped == {"sysu/2": 1}
    assert id_token(ts.id_info["market/1"], ts.multi) == "<id_market_1>"
    assert set(ts.cam_info) == {"market-rgb1", "market-rgb2", "sysu-ir3", "sysu-rgb1"}
    assert ts.cam_info["sysu-ir3"] == {"modality": "ir", "camid": 3, "dataset": "sysu"}
    assert Job("sysu/1", "sysu-ir3", 4).key == "dive-sysu_1-sysu-ir3-004"
    per_mod = read_train_set([str(tmp_path / "mix-000000.tar")],
                                 FitOptions(min_images_per_id=2, codes_per="modality"))
    assert set(per_mod.cam_info) == {"market-rgb", "sysu-ir", "sysu-rgb"}


@pytest.mark.slow
def test_fit_with_two_processes(tiny_sd, synth_ir_dir, tmp_path):
    """Two gloo processes on the CPU (torchrun): DDP for the LoRA, an all-reduce for the token rows."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    out = tmp_path / "mp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "reidtools", "invert", "fit",
                    str(synth_ir_dir / "train-000000.tar"), "-o", str(out), "--base", tiny_sd, "--device", "cpu",
                    *FIT], check=True, timeout=900)
    assert json.loads((out / "manifest.json").read_text())["step"] == 3
    assert len(load_file(str(out / EMBEDS))) == 4


def test_lora_partition_gives_each_code_its_own_block_of_the_rank():
    """Seed 002 §3: "one LoRA module ... with each placeholder token activating its corresponding
    portion of the LoRA parameters". Rank 4 over codes ir1, rgb1: ir1 owns rank rows 0-1, rgb1 rows 2-3.
    With A = [[1,0],[0,1],[1,1],[2,0]] (r x in) and B = [[1,1,1,1],[0,1,0,1]] (out x r), alpha = r
    (scale 1) and x = (1, 2): A x = (1, 2, 3, 2); ir1 keeps (1, 2, 0, 0) -> B = (3, 2); rgb1 keeps
    (0, 0, 3, 2) -> B = (5, 2); both (shared LoRA) -> (8, 4)."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    from reidtools.generate.inversion.model import LoraPartition

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.to_q = torch.nn.Linear(2, 2, bias=False)

        def forward(self, x):
            return self.to_q(x)

    net = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q"]), Net())
    with torch.no_grad():
        net.to_q.base_layer.weight.zero_()
        net.to_q.lora_A["default"].weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.], [2., 0.]]))
        net.to_q.lora_B["default"].weight.copy_(torch.tensor([[1., 1., 1., 1.], [0., 1., 0., 1.]]))
    part = LoraPartition(net, ["rgb1", "ir1"], rank=4)
    assert part.ranges == {"ir1": (0, 2), "rgb1": (2, 4)}
    x = torch.tensor([[1., 2.], [1., 2.]])
    part.select(["ir1", "rgb1"])
    out = net(x)
    assert out.tolist() == [[3., 2.], [5., 2.]]
    # classifier-free guidance doubles the batch: the mask repeats
    assert net(torch.cat([x, x])).tolist() == [[3., 2.], [5., 2.], [3., 2.], [5., 2.]]
    # an ir1 image trains only ir1's block
    part.select(["ir1"])
    net(x[:1]).sum().backward()
    ga, gb = net.to_q.lora_A["default"].weight.grad, net.to_q.lora_B["default"].weight.grad
    assert ga[2:].abs().sum() == 0 and gb[:, 2:].abs().sum() == 0 and ga[:2].abs().sum() > 0
    part.remove()
    assert net(x).tolist() == [[8., 4.], [8., 4.]]                  # no mask: the whole (shared) LoRA
    with pytest.raises(ReidError, match="--rank 1 cannot give each of 2"):
        LoraPartition(net, ["a", "b"], rank=1)


def test_validation_images_every_n_steps(tiny_sd, synth_ir_dir, tmp_path):
    """diffusers' training scripts' --validation_* convention: every N steps, images of the first
    identities under every camera code, from fixed seeds, under OUT/validation/step-N/."""
    from PIL import Image

    out = tmp_path / "v"
    args = ["invert", "fit", str(synth_ir_dir / "train-000000.tar"), "-o", str(out), "--base", tiny_sd, *FIT,
            "--validation-every", "2", "--validation-images", "1", "--validation-steps", "1"]
    args[args.index("--steps") + 1] = "2"
    assert run(args) == 0
    man = json.loads((out / "manifest.json").read_text())
    first = next(iter(man["ids"].values()))["token"].strip("<>")
    got = sorted(p.name for p in (out / "validation" / "step-2").iterdir())
    assert got == sorted(f"{first}-{cam}.png" for cam in man["cameras"])
    assert not (out / "validation" / "step-1").exists()
    assert Image.open(out / "validation" / "step-2" / got[0]).size == (32, 64)
