"""Training you can watch (issue 20.1): `reid train --eval-every N --query Q --gallery G -p P` logs
`reid eval`'s metrics in log.jsonl, keeps best.safetensors by --best-metric, and reports to an
accelerate tracker (tensorboard, wandb offline)."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
import yaml

from _train_data import write_train
from reidtools.commands import cli as group
from reidtools.commands._options import run_cli

TINY = ["--backbone", "resnet-tiny", "--size", "32x16", "--batch", "3x4", "--workers", "0", "-q"]


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch")
    write_train(str(root / "train"), maxcount=20)
    # unseen identities, two outfits each: the clothes-changing protocol is hard enough to move
    write_train(str(root / "test"), ids=10, per=1, prefix="query", split="query", pid0=100)
    write_train(str(root / "test"), ids=10, per=1, prefix="gallery", split="gallery", pid0=100)
    return root


def _log(run):
    with open(os.path.join(run, "log.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _watch(data, protocol="cc"):
    return ["--eval-every", "1", "--query", data / "test" / "query-000000.tar",
            "-g", data / "test" / "gallery-000000.tar", "-p", protocol]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_logged_metrics_are_reid_evals_and_best_is_that_epoch(data, tmp_path, capsys):
    """The eval records are `reid eval --model`'s numbers for the weights of that epoch."""
    import shutil

    from safetensors.torch import load_file

    run = tmp_path / "run"
    rc = reid("train", data / "train", "-o", run, *TINY, "--epochs", "2", "--lr", "3e-3", "--keep-checkpoints", "2",
              *_watch(data))
    assert rc == 0, capsys.readouterr().err
    evals = [r for r in _log(run) if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2] and all(r["protocol"] == "cc" for r in evals)
    values = [r["mAP"] for r in evals]
    best_epoch = evals[values.index(max(values))]["epoch"]
    best = load_file(run / "best.safetensors")
    assert _same(best, load_file(run / "checkpoints" / f"epoch-{best_epoch:04d}" / "model.safetensors"))

    copy = tmp_path / "best-run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.copy(copy / "best.safetensors", copy / "model.safetensors")
    c = yaml.safe_load((copy / "config.yaml").read_text())
    c["files"]["model.safetensors"] = c["files"]["best.safetensors"]
    (copy / "config.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    out = tmp_path / "m.json"
    assert reid("eval", data / "test" / "query-000000.tar", "-g", data / "test" / "gallery-000000.tar",
                "--model", copy, "-p", "cc", "--json", out, "-q") == 0
    metrics = json.loads(out.read_text())
    logged = evals[best_epoch - 1]
    assert metrics["mAP"] == pytest.approx(logged["mAP"], abs=1e-6)
    assert metrics["rank1"] == pytest.approx(logged["rank1"], abs=1e-6)


# scripted evaluations: the best is neither the last epoch nor (for rank1) decided without the tie rule
SCRIPT = {"mAP": [0.2, 0.5, 0.5], "rank1": [0.6, 0.3, 0.6]}
BEST = {"mAP": 2, "rank1": 1}


@pytest.mark.parametrize("metric", ["mAP", "rank1"])
def test_best_safetensors_is_the_best_epochs_weights(data, tmp_path, monkeypatch, metric):
    from safetensors.torch import load_file

    from reidtools.reid import validate

    real = validate.Validator.evaluate
    calls = []

    def scripted(self, model, device):
        result = real(self, model, device)     # still evaluated for real (and must run)
        i = len(calls)
        calls.append(i)
        return {**result, "mAP": SCRIPT["mAP"][i], "rank1": SCRIPT["rank1"][i]}

    monkeypatch.setattr(validate.Validator, "evaluate", scripted)
    run = tmp_path / "run"
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "3", "--keep-checkpoints", "3",
                *_watch(data), "--best-metric", metric) == 0
    evals = [r for r in _log(run) if r["type"] == "eval"]
    assert [r[metric] for r in evals] == SCRIPT[metric]
    assert [r["epoch"] for r in evals if r["best"]][-1] == BEST[metric]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["best"]["epoch"] == BEST[metric] and cfg["best"]["metric"] == metric
    best = load_file(run / "best.safetensors")
    for epoch in (1, 2, 3):
        ckpt = load_file(run / "checkpoints" / f"epoch-{epoch:04d}" / "model.safetensors")
        assert _same(best, ckpt) == (epoch == BEST[metric])
    from reidtools.reid.run import file_sha256

    assert cfg["files"]["best.safetensors"] == file_sha256(str(run / "best.safetensors"))


def test_evaluation_does_not_change_training_and_survives_resume(data, tmp_path):
    """Evaluating uses no random numbers and leaves BatchNorm statistics alone: the weights equal an
    unwatched run's; a resumed watched run keeps its best and logs each evaluation once."""
    from safetensors.torch import load_file

    plain, watched = tmp_path / "plain", tmp_path / "watched"
    assert reid("train", data / "train", "-o", plain, *TINY, "--epochs", "2") == 0
    assert reid("train", data / "train", "-o", watched, *TINY, "--epochs", "1", *_watch(data)) == 0
    assert reid("train", data / "train", "-o", watched, *TINY, "--epochs", "2", *_watch(data), "--resume") == 0
    a, b = load_file(plain / "model.safetensors"), load_file(watched / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in _log(watched) if r["type"] == "eval"] == [1, 2]
    assert (watched / "best.safetensors").is_file()


def test_eval_options_need_each_other(data, tmp_path, capsys):
    assert reid("train", data / "train", "-o", tmp_path / "a", *TINY, "--eval-every", "1") == 2
    assert "--query" in capsys.readouterr().err
    assert reid("train", data / "train", "-o", tmp_path / "b", *TINY, "--query", data / "test") == 2
    assert "--eval-every" in capsys.readouterr().err
    assert reid("train", data / "train", "-o", tmp_path / "c", *TINY, "--eval-every", "1", "--query",
                tmp_path / "nothing-here.tar", "-g", data / "test") == 1
    assert "nothing-here.tar" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")


def _tfevent_tags(folder) -> set[str]:
    """Scalar tags of the TFRecord event files under `folder` (record: u64 length, u32 crc, data, u32 crc)."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for root, _, files in os.walk(folder):
        for f in files:
            if not f.startswith("events.out.tfevents"):
                continue
            raw = open(os.path.join(root, f), "rb").read()
            pos = 0
            while pos < len(raw):
                (n,) = struct.unpack("<Q", raw[pos:pos + 8])
                ev = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + n])
                tags |= {v.tag for v in ev.summary.value}
                pos += 12 + n + 4
    return tags


def test_report_to_tensorboard_writes_losses_and_metrics(data, tmp_path):
    pytest.importorskip("tensorboardX")
    run = tmp_path / "tb"
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "1", *_watch(data),
                "--report-to", "tensorboard") == 0
    tags = _tfevent_tags(run / "trackers")
    assert {"train/loss", "train/id", "eval/mAP", "eval/rank1"} <= tags


def test_missing_tracker_package_is_one_line_before_training(data, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX", "wandb") else real(name, *a))
    assert reid("train", data / "train", "-o", tmp_path / "a", *TINY, "--report-to", "tensorboard") == 1
    err = capsys.readouterr().err.strip()
    assert "pip install 'reidtools[tensorboard]'" in err and "\n" not in err
    assert reid("train", data / "train", "-o", tmp_path / "b", *TINY, "--report-to", "wandb") == 1
    assert "pip install wandb" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_wandb_is_offline_unless_the_user_says_otherwise(tmp_path, monkeypatch):
    import importlib.util

    from reidtools.reid.validate import tracker_setup

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.delenv("WANDB_MODE", raising=False)
    kw = tracker_setup("wandb", str(tmp_path))
    assert os.environ["WANDB_MODE"] == "offline" and kw["log_with"] == "wandb"
    monkeypatch.setenv("WANDB_MODE", "online")
    tracker_setup("wandb", str(tmp_path))
    assert os.environ["WANDB_MODE"] == "online"
