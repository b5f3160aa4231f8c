"""`reid train --method dcac` end to end through the CLI: a tiny CLIP (saved as a full CLIPModel, as
openai/clip-vit-base-patch16 is) and a tiny Stable Diffusion folder, on the synthetic shards, then
`reid eval --model RUN`."""

from __future__ import annotations

import json

import pytest
import torch

from reidtools.commands import cli as group
from reidtools.commands._options import run_cli


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from reidtools.testing.sd import build_txt2img_pipeline

    root = tmp_path_factory.mktemp("dcac_models")
    build_txt2img_pipeline(str(root / "sd"))
    torch.manual_seed(0)
    cfg = CLIPConfig(vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                        patch_size=8, image_size=32),
                     text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      vocab_size=100, max_position_embeddings=16),
                     projection_dim=24)
    CLIPModel(cfg).save_pretrained(root / "clip")
    return root


TINY = ["--method", "dcac", "--backbone", "clip-tiny", "--size", "32x16", "--batch", "4x2", "--diffusion-size", "32",
        "--lora-rank", "4", "--workers", "0", "-q"]


def test_dcac_trains_through_the_cli_and_evaluates(synth_dir, models, tmp_path, capsys):
    import yaml
    from safetensors.torch import load_file

    run = tmp_path / "run"
    rc = reid("train", synth_dir / "train-000000.tar", "-o", run, *TINY, "--pretrained", models / "clip",
              "--diffusion-model", models / "sd", "--epochs", "2", "--lr", "1e-3", "--log-every", "1")
    assert rc == 0, capsys.readouterr().err
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    opts, sources = cfg["options"], cfg["sources"]
    assert opts["method"] == "dcac" and opts["condition"] == "correlation" and opts["dif_weight"] == 1.0
    # DCAC's recipe fills what the command line left at default; the command line still wins
    assert opts["milestones"] == [30, 50] and opts["warmup_epochs"] == 10 and opts["weight_decay"] == 1e-4
    assert opts["triplet_weight"] == 0.0 and "DCAC" in sources["milestones"] and sources["lr"] == "command line"
    assert opts["lr"] == 1e-3 and (opts["batch_p"], opts["batch_k"]) == (4, 2)
    assert cfg["backbone_config"]["projection_dim"] == 24

    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert steps and {"id", "pcl", "dif", "loss"} <= set(steps[0]) and "triplet" not in steps[0]
    assert all(r["dif"] > 0 for r in steps)

    # only the ReID encoder is kept for test time; the checkpoint also keeps LoRA + ID prompts to resume
    final = load_file(str(run / "model.safetensors"))
    assert not any("lora" in k or k.startswith("dcac.") for k in final)
    assert final["classifier.weight"].shape == (4, 24) and final["bnneck.weight"].shape == (24,)
    ckpt = load_file(str(run / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert ckpt["dcac.condition.prompts"].shape == (4, 32)            # N x U-Net cross-attention dim
    assert any("lora_B" in k for k in ckpt)
    # the patch projection is frozen; the rest of the encoder trained
    from reidtools.reid.backbones import build_backbone

    ref = build_backbone("clip-tiny", str(models / "clip")).net.state_dict()
    assert ref["visual_projection.weight"].shape == (24, 32)         # loaded, not re-initialised
    patch = "backbone.net.vision_model.embeddings.patch_embedding.weight"
    assert torch.equal(final[patch], ref["vision_model.embeddings.patch_embedding.weight"])
    q = "backbone.net.vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(final[q], ref["vision_model.encoder.layers.0.self_attn.q_proj.weight"])

    out = tmp_path / "m.json"
    rc = reid("eval", synth_dir / "query-000000.tar", "-g", synth_dir / "gallery-000000.tar", "--model", run,
              "--protocol", "market", "--json", out, "-q")
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0


def test_dcac_option_errors(synth_dir, models, tmp_path, capsys):
    base = [synth_dir / "train-000000.tar", *TINY, "--pretrained", models / "clip", "--epochs", "1"]
    args = [a if a != "clip-tiny" else "resnet-tiny" for a in base]
    assert reid("train", *args, "-o", tmp_path / "a", "--diffusion-model", models / "sd") == 1
    assert "needs a CLIP ViT backbone" in capsys.readouterr().err
    assert reid("train", *base, "-o", tmp_path / "b", "--diffusion-model", "nobody/no-such-sd") == 1
    assert "not in the local cache" in capsys.readouterr().err
    assert reid("train", *base, "-o", tmp_path / "c", "--diffusion-model", models / "sd", "--condition", "onehot") == 2


def test_multi_source_keeps_identities_of_different_datasets_apart(synth_dir, tmp_path):
    """Leave-one-out training mixes datasets whose pids overlap: identities are (dataset, pid)."""
    from reidtools.shards import ShardWriter, expand_inputs, iter_samples, meta

    src = list(iter_samples(expand_inputs([str(synth_dir / "train-000000.tar")])))
    with ShardWriter(str(tmp_path / "other"), prefix="train", maxcount=1000) as w:
        for s in src:
            w.write({"__key__": "o" + s["__key__"], "jpg": s["jpg"], "json": dict(meta(s), dataset="other")})
    n_ids = len({meta(s)["pid"] for s in src})
    run = tmp_path / "run"
    assert reid("train", synth_dir / "train-000000.tar", tmp_path / "other", "-o", run, "--backbone", "resnet-tiny",
                "--size", "32x16", "--batch", "4x2", "--epochs", "1", "--workers", "0", "-q") == 0
    labels = json.loads((run / "labels.json").read_text())
    assert len(labels["pids"]) == 2 * n_ids and any(k.startswith("other/") for k in labels["pids"])
    record = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert record["ids"] == 2 * n_ids


def test_dcac_resume_is_bit_exact(synth_dir, models, tmp_path):
    """The checkpoint keeps LoRA + ID prompts (and the RNG state for t, noise and the VAE sample)."""
    from safetensors.torch import load_file

    args = [synth_dir / "train-000000.tar", *TINY, "--pretrained", models / "clip", "--diffusion-model", models / "sd",
            "--lr", "1e-3"]
    assert reid("train", *args, "-o", tmp_path / "a", "--epochs", "2") == 0
    assert reid("train", *args, "-o", tmp_path / "b", "--epochs", "1") == 0
    assert reid("train", *args, "-o", tmp_path / "b", "--epochs", "2", "--resume") == 0
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca = load_file(str(tmp_path / "a" / "checkpoints" / "epoch-0002" / "model.safetensors"))
    cb = load_file(str(tmp_path / "b" / "checkpoints" / "epoch-0002" / "model.safetensors"))
    assert all(torch.equal(ca[k], cb[k]) for k in ca if k.startswith("dcac."))


def test_dif_weight_zero_is_the_reid_baseline_without_diffusion(synth_dir, models, tmp_path):
    """DCAC's baseline (Tables 5-7): CLIP + L_id + L_pcl; no diffusion model is even loaded."""
    run = tmp_path / "base"
    assert reid("train", synth_dir / "train-000000.tar", "-o", run, *TINY, "--pretrained", models / "clip",
                "--diffusion-model", "nobody/not-needed", "--dif-weight", "0", "--epochs", "1", "--log-every", "1") == 0
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert steps and "pcl" in steps[0] and "dif" not in steps[0]


def _as_dataset(synth_dir, out, name):
    from reidtools.shards import ShardWriter, expand_inputs, iter_samples, meta

    with ShardWriter(str(out), prefix="train", maxcount=1000) as w:
        for s in iter_samples(expand_inputs([str(synth_dir / "train-000000.tar")])):
            w.write({"__key__": s["__key__"], "jpg": s["jpg"], "json": dict(meta(s), dataset=name)})
    return out


def test_tau_and_rank_come_from_the_training_dataset(synth_dir, models, tmp_path, monkeypatch):
    """DCAC §5.2 (0.6 and r = 8 for Market1501), derived from the shards' `dataset` field, reach the
    condition and the LoRA adapters, and config.yaml says where they came from."""
    import yaml
    from safetensors.torch import load_file

    from reidtools.reid import trainer

    heads = []
    real = trainer._dcac_head
    monkeypatch.setattr(trainer, "_dcac_head", lambda *a, **k: heads.append(real(*a, **k)) or heads[-1])
    market = _as_dataset(synth_dir, tmp_path / "market", "market1501")
    args = [a for a in TINY if a not in ("--lora-rank", "4")]
    run = tmp_path / "run"
    assert reid("train", market, "-o", run, *args, "--pretrained", models / "clip", "--diffusion-model", models / "sd",
                "--epochs", "1") == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["condition_tau"] == 0.6 and cfg["options"]["lora_rank"] == 8
    assert "market1501" in cfg["sources"]["condition_tau"] and "§5.2" in cfg["sources"]["lora_rank"]
    assert heads[-1].condition.tau == 0.6
    ckpt = load_file(str(run / "checkpoints" / "epoch-0001" / "model.safetensors"))
    assert {v.shape[0] for k, v in ckpt.items() if "lora_A" in k} == {8}

    run = tmp_path / "override"
    assert reid("train", market, "-o", run, *TINY, "--pretrained", models / "clip", "--diffusion-model", models / "sd",
                "--epochs", "1", "--condition-tau", "0.3") == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["options"]["condition_tau"], cfg["options"]["lora_rank"]) == (0.3, 4)
    assert cfg["sources"]["condition_tau"] == "command line" and heads[-1].condition.tau == 0.3


def test_total_loss_is_eq_13(synth_dir, models, tmp_path, monkeypatch):
    """Eq. 13: L_total = L_ReID + lambda L_dif, eq. 8: L_ReID = L_id + L_pcl. With --dif-weight 0.5
    each step's logged `dif` is 0.5 x the diffusion loss the head returned, and `loss` the sum."""
    from reidtools.reid.dcac import DcacHead

    raw = []
    real = DcacHead.forward

    def spy(self, *a, **k):
        out = real(self, *a, **k)
        raw.append(float(out.detach()))
        return out

    monkeypatch.setattr(DcacHead, "forward", spy)
    run = tmp_path / "run"
    assert reid("train", synth_dir / "train-000000.tar", "-o", run, *TINY, "--pretrained", models / "clip",
                "--diffusion-model", models / "sd", "--epochs", "1", "--dif-weight", "0.5", "--log-every", "1") == 0
    steps = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]
    assert len(steps) == len(raw) > 0
    for rec, value in zip(steps, raw):
        assert rec["dif"] == pytest.approx(0.5 * value, rel=1e-6)
        assert rec["loss"] == pytest.approx(rec["id"] + rec["pcl"] + rec["dif"], rel=1e-5)


def test_recipe_leaves_tau_and_rank_to_the_data():
    """recipes/dcac.mk no longer hard-codes tau_c 0.6 / rank 8 (wrong for MSMT17, CUHK03 and multi-source)."""
    import subprocess
    from pathlib import Path

    mk = Path(__file__).resolve().parents[1] / "recipes" / "dcac.mk"

    def train_line(*extra):
        out = subprocess.run(["make", "-n", "-f", str(mk), "OUT=/tmp/o", "REID=reid", "train", *extra],
                             capture_output=True, text=True, check=True).stdout
        return next(line for line in out.replace("\\\n", " ").splitlines() if " train " in line)

    default = train_line("SOURCE=msmt17")
    assert "--condition-tau" not in default and "--lora-rank" not in default
    assert "--condition-tau 0.3 " in train_line("TAU=0.3") and "--lora-rank 16 " in train_line("LORA_RANK=16")
