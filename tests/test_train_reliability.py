"""`reid train` under failure (issue 22): killed runs resume without repeating log records, a NaN
loss can be continued with a lower --lr, bad training labels and option values are refused, weight
files carry a SHA-256, damaged run folders and a full disk are one line naming the file."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from _train_data import write_train
from reidtools.commands import cli as group
from reidtools.commands._options import run_cli

TINY = ["--backbone", "resnet-tiny", "--size", "32x16", "--batch", "3x4", "--workers", "0", "-q"]


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    write_train(str(root / "train"), maxcount=20)
    write_train(str(root / "test"), ids=4, per=1, prefix="query", split="query", pid0=100)
    write_train(str(root / "test"), ids=4, per=1, prefix="gallery", split="gallery", pid0=100)
    return root


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished one-epoch run (copied by tests that damage it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "1") == 0
    return run


def _log(run):
    with open(os.path.join(run, "log.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _shape(records):
    return [(r["type"], r.get("epoch"), r.get("step")) for r in records]


def _fail_at(monkeypatch, call: int, exc):
    """Make the trainer's triplet loss fail at its `call`-th use (a kill or a NaN in mid-epoch)."""
    from reidtools.reid import trainer

    calls = {"n": 0}
    real = trainer.batch_hard_triplet

    def flaky(dist, labels, margin):
        calls["n"] += 1
        out = real(dist, labels, margin)
        if calls["n"] == call:
            if exc == "nan":
                return out * float("nan")
            raise exc
        return out

    monkeypatch.setattr(trainer, "batch_hard_triplet", flaky)


def test_resume_after_a_kill_does_not_repeat_log_records(data, tmp_path, monkeypatch):
    """Issue 22.11: a run killed in epoch 2 had written step records of epoch 2; the resumed run
    writes them again. The log must read as if the run had never stopped."""
    args = [data / "train", *TINY, "--log-every", "1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert reid("train", *args, "-o", straight, "--epochs", "2") == 0
    _fail_at(monkeypatch, 6, KeyboardInterrupt())
    assert reid("train", *args, "-o", killed, "--epochs", "2") != 0   # (SIGINT's exit code is issue 22.12)
    partial = _log(killed)
    assert ("step", 2, 5) in _shape(partial) and ("epoch", 2, None) not in [(t, e, None) for t, e, _ in _shape(partial)]
    monkeypatch.undo()
    assert reid("train", *args, "-o", killed, "--epochs", "2", "--resume") == 0
    a, b = _log(straight), _log(killed)
    assert _shape(a) == _shape(b)
    steps = [r["step"] for r in b if r["type"] == "step"]
    assert steps == sorted(set(steps))
    assert [r["loss"] for r in a if r["type"] == "epoch"] == [r["loss"] for r in b if r["type"] == "epoch"]


def test_nan_loss_says_how_to_continue_and_resume_accepts_a_lower_lr(data, tmp_path, monkeypatch, capsys):
    """Issue 22.16: the NaN message said "lower --lr" but --resume refused a changed --lr."""
    run = tmp_path / "run"
    _fail_at(monkeypatch, 6, "nan")
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "3", "--log-every", "1") == 1
    err = capsys.readouterr().err
    assert "--resume" in err and "lower --lr" in err and "epoch-0001" in err
    monkeypatch.undo()
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "3", "--log-every", "1", "--resume",
                "--lr", "1e-4") == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["lr"] == 1e-4
    assert cfg["resumes"] == [{"after_epoch": 1, "changed": {"lr": {"from": 3.5e-4, "to": 1e-4}}}]
    assert "changed on resume after epoch 1" in cfg["sources"]["lr"]
    epochs = [r for r in _log(run) if r["type"] == "epoch"]
    # the schedule restarts from the new base: epoch 1 trained at 3.5e-4, epochs 2-3 at 1e-4 (no milestone yet)
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert [r["lr"] for r in epochs] == [3.5e-4, 1e-4, 1e-4]
    resume = [r for r in _log(run) if r["type"] == "resume"]
    assert resume and resume[0]["changed"]["lr"] == {"from": 3.5e-4, "to": 1e-4}


def test_junk_pid_and_single_identity_are_refused(tmp_path, capsys):
    """Issue 22.15: pid -1 (Market/Duke junk) and one identity (every loss 0) trained silently."""
    from _train_data import person
    from reidtools.shards import ShardWriter

    write_train(str(tmp_path / "junk"), ids=3)
    with ShardWriter(str(tmp_path / "junk"), prefix="distractors") as w:
        w.write({"__key__": "0000_c1s1_000151_01", "jpg": person(0, 0, 0, 0),
                 "json": {"dataset": "tiny", "split": "train", "pid": -1, "camid": 0, "clothes": "x", "modality": "rgb"}})
    assert reid("train", tmp_path / "junk", "-o", tmp_path / "a", *TINY, "--batch", "2x4", "--epochs", "1") == 1
    err = capsys.readouterr().err.strip()
    assert "pid -1" in err and "junk" in err and "0000_c1s1_000151_01" in err and "distractors-000000.tar" in err
    assert "\n" not in err
    assert not (tmp_path / "a").exists()
    write_train(str(tmp_path / "one"), ids=1)
    assert reid("train", tmp_path / "one", "-o", tmp_path / "b", *TINY, "--batch", "1x4", "--epochs", "1") == 1
    err = capsys.readouterr().err.strip()
    assert "single identity (pid 0)" in err and "\n" not in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("option,value", [("--lr", "nan"), ("--lr", "inf"), ("--weight-decay", "nan"),
                                          ("--epochs", "0"), ("--margin", "-inf")])
def test_non_finite_or_empty_values_are_usage_errors(data, tmp_path, capsys, option, value):
    rc = reid("train", data / "train", "-o", tmp_path / "run", *TINY, option, value)
    err = capsys.readouterr().err
    assert rc == 2 and option in err and "internal error" not in err
    assert not (tmp_path / "run").exists()


def test_weight_files_record_their_sha256(finished):
    from reidtools.reid.run import file_sha256

    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    assert cfg["files"]["model.safetensors"] == file_sha256(str(finished / "model.safetensors"))
    state = json.loads((finished / "checkpoints" / "epoch-0001" / "state.json").read_text())
    ckpt = finished / "checkpoints" / "epoch-0001"
    assert set(state["files"]) == {"model.safetensors", "optimizer.pt", "rng-0.safetensors"}
    for name, digest in state["files"].items():
        assert file_sha256(str(ckpt / name)) == digest


def _copy(run, to):
    import shutil

    shutil.copytree(run, to)
    return to


def _eval(data, run):
    return reid("eval", data / "test" / "query-000000.tar", "-g", data / "test" / "gallery-000000.tar",
                "--model", run, "-q")


def test_flipped_or_truncated_weights_are_one_line_naming_the_file(data, finished, tmp_path, capsys):
    """Issue 22.17 and 22.7: a flipped tail went unnoticed; a truncated file was an internal error."""
    flipped = _copy(finished, tmp_path / "flipped")
    path = flipped / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert _eval(data, flipped) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "SHA-256" in err and "\n" not in err

    cut = _copy(finished, tmp_path / "cut")
    path = cut / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    assert _eval(data, cut) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "\n" not in err and "internal error" not in err

    # a run from before digests were recorded: the damage is still one line
    old = _copy(finished, tmp_path / "old")
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    del cfg["files"]
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    path = old / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    assert _eval(data, old) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "not a readable safetensors file" in err and "\n" not in err


@pytest.mark.parametrize("text,why", [("options: [unclosed", "not valid YAML"), ("- just\n- a list\n", "no 'options'"),
                                      ("options: {backbone: resnet-tiny}\n", "incomplete")])
def test_bad_config_yaml_is_one_line_naming_it(data, finished, tmp_path, capsys, text, why):
    run = _copy(finished, tmp_path / "bad")
    (run / "config.yaml").write_text(text)
    assert _eval(data, run) == 1
    err = capsys.readouterr().err.strip()
    assert str(run / "config.yaml") in err and why in err and "\n" not in err
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "2", "--resume") == 1
    err = capsys.readouterr().err.strip()
    assert str(run / "config.yaml") in err and "\n" not in err


def test_damaged_checkpoint_is_named_on_resume(data, finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "ckpt")
    opt = run / "checkpoints" / "epoch-0001" / "optimizer.pt"
    raw = bytearray(opt.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    opt.write_bytes(bytes(raw))
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "2", "--resume") == 1
    err = capsys.readouterr().err.strip()
    assert str(opt) in err and "SHA-256" in err and "\n" not in err


def _limit_file_size(monkeypatch, limit: int):
    """Writes past `limit` bytes fail with EFBIG (SIGXFSZ ignored), as on a disk that fills up."""
    import resource
    import signal

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    return lambda: (resource.setrlimit(resource.RLIMIT_FSIZE, old), signal.signal(signal.SIGXFSZ, handler))


def test_full_disk_while_checkpointing_is_one_line_and_leaves_no_tmp(data, finished, tmp_path, capsys, monkeypatch):
    """Issue 22.7: a full disk showed a C++ `enforce fail` and left optimizer.pt.tmp behind. The
    optimizer state (Adam: two moments per weight) is the largest file a checkpoint writes, so a
    limit just above the model's size lets everything else through and fails exactly there."""
    model_size = os.path.getsize(finished / "checkpoints" / "epoch-0001" / "model.safetensors")
    opt_size = os.path.getsize(finished / "checkpoints" / "epoch-0001" / "optimizer.pt")
    assert opt_size > model_size + 4096
    run = tmp_path / "full"
    restore = _limit_file_size(monkeypatch, model_size + 4096)
    try:
        rc = reid("train", data / "train", "-o", run, *TINY, "--epochs", "1")
    finally:
        restore()
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "internal error" not in err and "enforce" not in err
    assert "optimizer.pt: cannot write" in err and str(run) in err
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(run) for f in files if f.endswith(".tmp")]
    assert leftovers == []
    # the epoch is not marked complete, so a resume (with space again) redoes it
    assert not (run / "checkpoints" / "epoch-0001" / "state.json").exists()
    assert reid("train", data / "train", "-o", run, *TINY, "--epochs", "1", "--resume") == 0
