"""`reid train --init RUN` (issue 16.1, HSGL Alg. 1 lines 17-21: pretrain, then train from it): the
backbone comes from the run, the classifiers are new, config.yaml says so."""

from __future__ import annotations

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
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    write_train(str(root / "coarse"), ids=6)                    # the pretraining set: 6 identities
    write_train(str(root / "fine"), ids=4, pid0=50)             # the fine-tuning set: 4 others
    run = root / "pre"
    assert reid("train", root / "coarse", "-o", run, *TINY, "--epochs", "1", "--seed", "3") == 0
    return root, run


def test_init_loads_the_backbone_and_starts_new_heads(pretrained, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from reidtools.reid import start
    from reidtools.reid.run import file_sha256

    root, pre = pretrained
    seen = {}
    real = start.apply_init

    def spy(model, init):   # the weights the fine-tuning run starts from, before its first step
        out = real(model, init)
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return out

    monkeypatch.setattr(start, "apply_init", spy)
    run = tmp_path / "fine"
    assert reid("train", root / "fine", "-o", run, *TINY, "--batch", "2x4", "--epochs", "1", "--init", pre,
                "--method", "cal", "--pooling", "avg", "--cal-start-epoch", "0") == 0
    before = load_file(pre / "model.safetensors")
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(seen[k], before[k]) for k in backbone)
    assert torch.equal(seen["bnneck.weight"], before["bnneck.weight"])
    assert torch.equal(seen["bnneck.running_mean"], before["bnneck.running_mean"])
    # new heads: 4 identities here (6 there), drawn fresh
    assert seen["classifier.weight"].shape[0] == 4 and before["classifier.weight"].shape[0] == 6
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["init"] == str(pre) and cfg["sources"]["init"] == "command line"
    assert cfg["init"]["loaded"] == ["backbone", "bnneck"] and cfg["init"]["new"] == ["classifier"]
    assert cfg["init"]["weights_sha256"] == file_sha256(str(pre / "model.safetensors"))
    after = load_file(run / "model.safetensors")
    assert "clothes_classifier.weight" in after            # CAL's head, new in this run
    assert any(not torch.equal(after[k], before[k]) for k in backbone)   # and then it trained


def test_init_without_it_differs(pretrained, tmp_path):
    """Control: without --init the same seed starts from a different backbone."""
    from safetensors.torch import load_file

    root, pre = pretrained
    a, b = tmp_path / "a", tmp_path / "b"
    args = [root / "fine", *TINY, "--batch", "2x4", "--epochs", "1"]
    assert reid("train", *args, "-o", a, "--init", pre) == 0
    assert reid("train", *args, "-o", b) == 0
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa if k.startswith("backbone."))


def test_init_pooling_mismatch_keeps_backbone_only(pretrained, tmp_path):
    root, pre = pretrained
    run = tmp_path / "maxavg"
    assert reid("train", root / "fine", "-o", run, *TINY, "--batch", "2x4", "--epochs", "1", "--init", pre,
                "--pooling", "maxavg") == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["init"]["loaded"] == ["backbone"] and cfg["init"]["new"] == ["bnneck", "classifier"]


def test_init_errors_are_one_line(pretrained, tmp_path, capsys):
    root, pre = pretrained
    args = [root / "fine", *TINY, "--batch", "2x4", "--epochs", "1"]
    assert reid("train", *args, "-o", tmp_path / "a", "--init", tmp_path / "nowhere") == 1
    assert "not a run folder" in capsys.readouterr().err
    other = [a if a != "resnet-tiny" else "vit-tiny" for a in args]
    assert reid("train", *other, "-o", tmp_path / "b", "--init", pre) == 1
    err = capsys.readouterr().err.strip()
    assert "--init" in err and "resnet-tiny" in err and "vit-tiny" in err and "\n" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
