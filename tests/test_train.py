"""`reid train` end to end on tiny shards: smoke train + extract + eval, resume equivalence,
NaN handling, label checks, pretrained loading through save_pretrained folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from _train_data import write_generated, write_train
from reidtools.commands import cli as group
from reidtools.commands._options import run_cli
from reidtools.errors import ReidError

TINY = ["--backbone", "resnet-tiny", "--size", "32x16", "--batch", "3x4", "--workers", "0", "-q"]


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("traindata")
    keys = write_train(str(root / "train"), maxcount=20)
    write_generated(str(root / "gen"), keys, variants=2, maxcount=24)
    write_train(str(root / "test"), ids=4, per=1, prefix="query", split="query", pid0=100)
    write_train(str(root / "test"), ids=4, per=1, prefix="gallery", split="gallery", pid0=100)
    return root


def _log(run):
    with open(os.path.join(run, "log.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def test_smoke_train_extract_and_eval(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "1") == 0
    for name in ("model.safetensors", "config.yaml", "labels.json", "log.jsonl"):
        assert (run / name).is_file()
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["epochs"] == 1 and cfg["options"]["backbone"] == "resnet-tiny"
    assert cfg["sources"]["epochs"] == "command line"
    assert "Simple-CCReID" in cfg["sources"]["lr"]           # a default records where it comes from
    assert cfg["options"]["pooling"] == "avg" and cfg["options"]["triplet_weight"] == 1.0
    records = _log(run)
    assert records[0]["type"] == "dataset" and records[0]["real"] == 48 and records[0]["ids"] == 6
    epoch = [r for r in records if r["type"] == "epoch"][0]
    assert {"id", "triplet", "loss", "lr", "images_per_s", "n_hp", "n_hn"} <= set(epoch)
    assert epoch["images"] == epoch["steps"] * 12

    from reidtools.reid.extract import extract_features, load_run
    from reidtools.shards import expand_inputs, iter_samples

    samples = list(iter_samples(expand_inputs([str(data / "test" / "query-000000.tar")])))
    feats = extract_features(str(run), samples, batch_size=5, progress=False)
    model = load_run(str(run))
    assert feats.dtype == np.float32 and feats.shape == (len(samples), model.dim)
    assert not model.training
    # batching does not change the features
    np.testing.assert_allclose(extract_features(str(run), samples, batch_size=128, progress=False), feats,
                               rtol=1e-5, atol=1e-6)
    # flip-averaged: a mirrored image gets the same feature
    from PIL import Image, ImageOps

    from reidtools.shards import image

    mirrored = [dict(s, jpg=ImageOps.mirror(image(s))) for s in samples[:2]]
    plain = [dict(s, jpg=image(s)) for s in samples[:2]]
    np.testing.assert_allclose(extract_features(str(run), mirrored, progress=False),
                               extract_features(str(run), plain, progress=False), rtol=1e-4, atol=1e-5)
    _ = Image

    out = tmp_path / "m.json"
    rc = reid("eval", data / "test" / "query-000000.tar", "-g", data / "test" / "gallery-000000.tar",
              "--model", run, "--protocol", "cc", "--json", out, "-q")
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["mAP"] <= 1.0


def test_resume_is_bit_exact(data, tmp_path):
    from safetensors.torch import load_file

    common = [data / "train", "--generated", data / "gen", *TINY, "--method", "cal+hsal", "--cal-start-epoch", "1",
              "--progressive-epochs", "1", "--progressive-fractions", "0.5"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert reid("train", *common, "-o", straight, "--epochs", "2") == 0
    assert reid("train", *common, "-o", split, "--epochs", "1") == 0
    assert reid("train", *common, "-o", split, "--epochs", "2", "--resume") == 0
    a, b = load_file(straight / "model.safetensors"), load_file(split / "model.safetensors")
    assert a.keys() == b.keys() and "clothes_classifier.weight" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ea = [r for r in _log(straight) if r["type"] == "epoch"]
    eb = [r for r in _log(split) if r["type"] == "epoch"]
    assert [r["loss"] for r in ea] == [r["loss"] for r in eb]
    assert "adversarial" in ea[1] and "adversarial" not in ea[0]      # CAL switched on at epoch index 1
    assert ea[0]["variant_fraction"] == 0.5 and ea[1]["variant_fraction"] == 1.0
    assert ea[1]["n_hp_generated"] > ea[0]["n_hp_generated"]          # the variant pool grew
    assert ea[0]["n_hn_generated"] > 0                                 # shared catalogue clothes
    assert sorted(os.listdir(split / "checkpoints")) == ["epoch-0002"]


def test_resume_rejects_changed_options(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "1") == 0
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "2") == 1
    assert "pass --resume" in capsys.readouterr().err
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "2", "--resume", "--margin", "0.1") == 1
    assert "'margin' (--margin)" in capsys.readouterr().err
    other = data / "test" / "query-000000.tar"    # other identities
    assert reid("train", other, "-o", run, *TINY, "--epochs", "2", "--resume") == 1
    assert "labels.json" in capsys.readouterr().err


def test_generated_pid_not_in_training_is_an_error(data, tmp_path, capsys):
    bad = tmp_path / "bad"
    write_generated(str(bad), ["p000_o0_c0_0"], variants=1, bad_pid=77)
    assert reid("train", data / "train", "--generated", bad, "-o", tmp_path / "run", *TINY, "--epochs", "1") == 1
    err = capsys.readouterr().err
    assert "pid 77" in err and "not in the training shards" in err


def test_concat_mix_puts_generated_in_the_pool(data, tmp_path):
    run = tmp_path / "run"
    assert reid("train", data / "train", "--generated", data / "gen" / "gen-000000.tar", "-o", run, *TINY,
                "--epochs", "1", "--mix", "concat", "--method", "hsal") == 0
    epoch = [r for r in _log(run) if r["type"] == "epoch"][0]
    assert "variant_fraction" not in epoch and "hatrip" in epoch
    assert epoch["n_hp_generated"] == _log(run)[0]["n_hp_generated"]   # every variant, from epoch 1
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["hsal_lambda"] == 1.0      # lambda_orig: the metric baseline's triplet weight


def test_nan_loss_stops_with_step_and_term(data, tmp_path, monkeypatch, capsys):
    from reidtools.reid import trainer

    calls = {"n": 0}
    real = trainer.batch_hard_triplet

    def flaky(dist, labels, margin):
        calls["n"] += 1
        out = real(dist, labels, margin)
        return out * float("nan") if calls["n"] == 6 else out

    monkeypatch.setattr(trainer, "batch_hard_triplet", flaky)
    run = tmp_path / "run"
    rc = reid("train", data / "train", "-o", run, *TINY, "--epochs", "3")
    err = capsys.readouterr().err
    assert rc == 1
    assert "step 6 (epoch 2)" in err and "'triplet'" in err and "nan" in err
    assert "epoch-0001" in err and (run / "checkpoints" / "epoch-0001" / "state.json").is_file()


def test_pretrained_folder_goes_through_from_pretrained(tmp_path, data):
    from reidtools.reid.backbones import build_backbone, default_config

    for name in ("resnet-tiny", "vit-tiny"):
        from transformers import CLIPVisionModel, ResNetModel

        cls = CLIPVisionModel if name.startswith("vit") else ResNetModel
        torch.manual_seed(1)
        ref = cls(default_config(name))
        folder = tmp_path / name
        ref.save_pretrained(folder)
        bb = build_backbone(name, str(folder))
        for k, v in ref.state_dict().items():
            assert torch.equal(bb.net.state_dict()[k], v)
        x = torch.randn(2, 3, 32, 16)
        assert bb(x).shape[0] == 2
    with pytest.raises(ReidError, match="not in the local cache"):
        build_backbone("resnet50", "microsoft/resnet-50-not-here")
    # ViT trains through the CLI too, from the saved folder
    run = tmp_path / "vit"
    args = [data / "train", "-o", run, *TINY, "--epochs", "1"]
    args[args.index("resnet-tiny")] = "vit-tiny"
    assert reid("train", *args, "--pretrained", tmp_path / "vit-tiny") == 0


def test_last_stride_is_one():
    from reidtools.reid.backbones import build_backbone

    bb = build_backbone("resnet-tiny")
    # embedder /4, stages 2 and 3 /2 each, last stage stride 1: 32x16 -> 2x1
    assert tuple(bb(torch.randn(1, 3, 32, 16)).shape[2:]) == (2, 1)


def test_progressive_needs_source(data, tmp_path, capsys):
    from reidtools.shards import ShardWriter

    from _train_data import person

    with ShardWriter(str(tmp_path / "nosrc"), prefix="gen") as w:
        w.write({"__key__": "orphan", "jpg": person(0, 1, 0, 0),
                 "json": {"dataset": "tiny", "split": "train", "pid": 0, "camid": 0, "clothes": "x", "modality": "rgb"}})
    assert reid("train", data / "train", "--generated", tmp_path / "nosrc", "-o", tmp_path / "run", *TINY,
                "--epochs", "1") == 1
    err = capsys.readouterr().err
    assert "orphan" in err and "source" in err and "--mix concat" in err


@pytest.mark.slow
def test_two_processes_with_torchrun(data, tmp_path):
    """Two gloo processes on the CPU, each reading its own shards (3 train shards: 2 + 1)."""
    import subprocess
    import sys

    run = tmp_path / "mp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "-m", "reidtools", "train", str(data / "train"), "-o", str(run),
           "--generated", str(data / "gen"), *TINY, "--batch", "2x4", "--cpu", "--epochs", "2",
           "--method", "cal+hsal", "--cal-start-epoch", "1"]
    subprocess.run(cmd, check=True, timeout=600)
    log = _log(run)
    assert log[0]["processes"] == 2 and log[0]["real"] == 48
    assert sorted(os.listdir(run / "checkpoints" / "epoch-0002")) == [
        "model.safetensors", "optimizer.pt", "rng-0.safetensors", "rng-1.safetensors", "state.json"]
    assert (run / "model.safetensors").is_file()


def test_too_few_ids_for_p_fails_before_creating_the_run(data, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", data / "train", "-o", run, *TINY, "--epochs", "1"]
    assert reid(*[a if a != "3x4" else "9x4" for a in args]) == 1
    assert "lower P" in capsys.readouterr().err
    assert not run.exists()  # so the corrected command can simply be run again
    assert reid(*args) == 0


def test_crop_padding_scales_with_the_input_width():
    """BoT (Luo et al. 2019, §4 'Standard Baseline'): images are resized to 256x128 and 'padded with
    10 pixels with zero value, then randomly cropped'. That is a shift of at most 10/128 = 7.8% of the
    width; the default keeps the ratio: 10 * W // 128 px, so 10 at 256x128, 2 at 64x32 (not 10, which
    would move a 32-px-wide person by a third of its width), and an explicit --pad wins."""
    from reidtools.reid.config import TrainConfig, resolve

    for size, pad in (((256, 128), 10), ((384, 192), 15), ((64, 32), 2), ((32, 16), 1)):
        cfg, sources = resolve(TrainConfig(backbone="resnet-tiny", size=size), {})
        assert cfg.pad == pad, size
        assert "10 * W // 128" in sources["pad"]
    cfg, sources = resolve(TrainConfig(backbone="resnet-tiny", size=(64, 32), pad=10), {"pad": "command line"})
    assert cfg.pad == 10 and sources["pad"] == "command line"


def test_pad_option_reaches_the_config(data, tmp_path):
    import yaml

    run = tmp_path / "run"
    assert reid("train", str(data / "train" / "train-*.tar"), "-o", run, *TINY, "--epochs", "1", "--pad", "3") == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["options"]["pad"] == 3
    assert reid("train", str(data / "train" / "train-*.tar"), "-o", tmp_path / "r2", *TINY, "--pad", "-1") == 2
