"""The settings the generator commands share (`generate/options.py`): one set of fields whose defaults
are the CLI's, and one set of checks that a library caller gets too."""

from __future__ import annotations

import dataclasses

import pytest

from reidtools.commands import cli
from reidtools.commands._options import resolve_task, run_cli
from reidtools.errors import ReidError, UsageError
from reidtools.generate.caption.run import CaptionRun
from reidtools.generate.inpaint.run import InpaintRun
from reidtools.generate.inversion.sample import SampleRun as InvertSampleRun
from reidtools.generate.options import GeneratorOptions
from reidtools.generate.posegen.sample import SampleRun as PosegenSampleRun
from reidtools.generate.tryoff.run import TryOffRun

SHARED = [f.name for f in dataclasses.fields(GeneratorOptions)]


def _commands():
    from reidtools.commands import caption, inpaint, invert, posegen, tryoff

    return [(caption.cli, CaptionRun), (inpaint.cli, InpaintRun), (tryoff.cli, TryOffRun),
            (invert.sample_cmd, InvertSampleRun), (posegen.sample_cmd, PosegenSampleRun)]


@pytest.mark.parametrize("command, run_cls", _commands(), ids=["caption", "inpaint", "tryoff", "invert-sample",
                                                                 "posegen-sample"])
def test_cli_defaults_are_the_runs_defaults(command, run_cls, monkeypatch):
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    defaults = {f.name: f.default for f in dataclasses.fields(run_cls)}
    params = {p.name: p for p in command.params}
    for name in ("batch_size", "dtype", "device", "seed"):
        assert params[name].default == defaults[name], (command.name, name)
    # the task options default to None on the command line and resolve to the run's 0 of 1
    assert params["shard_index"].default is None and params["num_shards"].default is None
    assert resolve_task(None, None) == (defaults["shard_index"], defaults["num_shards"])
    assert issubclass(run_cls, GeneratorOptions)


def test_tryoff_keeps_its_papers_defaults():
    # TryOffAnyone runs one image at a time in bf16 (its config.py); the base's 8 x fp16 must not leak in
    run = TryOffRun(inputs=("a.tar",), output="out")
    assert (run.batch_size, run.dtype) == (1, "bf16")
    assert (run.device, run.shard_index, run.num_shards, run.seed) == (None, 0, 1, 0)


@pytest.mark.parametrize("bad, error, named", [
    ({"batch_size": 0}, ReidError, "--batch-size 0"),
    ({"dtype": "fp8"}, ReidError, "--dtype 'fp8'"),
    ({"shard_index": 2, "num_shards": 2}, UsageError, "--shard-index 2 is not in 0..1"),
    ({"shard_index": -1, "num_shards": 2}, UsageError, "--shard-index -1"),
    ({"num_shards": 0}, UsageError, "--num-shards 0"),
])
def test_every_run_checks_the_shared_options(bad, error, named):
    for run_cls, required in ((CaptionRun, {"inputs": ("a.tar",), "output": "o"}),
                              (InvertSampleRun, {"ckpt_dir": "ck", "output": "o"}),
                              (PosegenSampleRun, {"ckpt_dir": "ck", "inputs": ("a.tar",), "output": "o"}),
                              (InpaintRun, {"inputs": ("a.tar",), "output": "o", "prompt_spec": "fixed:a shirt"}),
                              (TryOffRun, {"inputs": ("a.tar",), "output": "o"})):
        with pytest.raises(error, match=named.replace(".", r"\.").replace("(", r"\(")):
            run_cls(**required, **bad)


def test_runs_are_keyword_only():
    # a positional call would bind by a field order that the shared base reshuffled
    with pytest.raises(TypeError):
        CaptionRun(("a.tar",), "out")


def test_invert_sample_refuses_a_task_beyond_the_split(tmp_path, capsys):
    # it splits its output shards itself (not the input list), so --shard-index 2 of 2 used to redo task
    # 0's shards 2, 4, ... (or nothing) and exit 0; now it stops before the checkpoint is even read
    rc = run_cli(cli, ["invert", "sample", str(tmp_path / "no-ckpt"), "-o", str(tmp_path / "out"),
                       "--shard-index", "2", "--num-shards", "2"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and "--shard-index 2 is not in 0..1" in err[0], err
    assert not (tmp_path / "out").exists()
