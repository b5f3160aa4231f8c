"""`--mixed-precision` of the diffusion fits (`invert fit`, `posegen fit`, `finetune`) on the CPU.

accelerate (1.x) runs no fp16 autocast and no loss scaling on the CPU, while the fits cast their frozen
weights to the mixed dtype: fp16 there would be fp16 weights and unscaled fp16 gradients through slow
CPU kernels, so it is refused. bf16 is accelerate's CPU autocast and stays (it halves the frozen
weights), but on a CPU without native bf16 kernels a full-size SD-1.5 fit step runs many times slower
than fp32 (bench/cpu_precision.py), so the user is told.
"""

from __future__ import annotations

import logging

import pytest

from reidtools.commands import main
from reidtools.errors import UsageError
from reidtools.generate.training import mixed_precision


def run(argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "bf16" in r.getMessage()]


def test_auto_follows_the_device_it_runs_on():
    assert mixed_precision("auto", cpu=True) == "no"
    # a CUDA machine with --device cpu used to get fp16 (auto looked at torch.cuda only)
    assert mixed_precision("auto", cpu=False) == "fp16"
    assert mixed_precision("fp16", cpu=False) == "fp16" and mixed_precision("no", cpu=True) == "no"


def test_fp16_on_the_cpu_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--mixed-precision fp16 needs a GPU"):
        mixed_precision("fp16", cpu=True)


@pytest.mark.parametrize("kernels", [False, True])
def test_bf16_on_a_cpu_without_bf16_kernels_is_warned_about(monkeypatch, caplog, kernels):
    from reidtools import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_kernels", lambda: kernels)
    with caplog.at_level(logging.WARNING, logger="reidtools"):
        assert mixed_precision("bf16", cpu=True) == "bf16"
        assert mixed_precision("bf16", cpu=False) == "bf16"     # a GPU: nothing to say
    warned = _warnings(caplog)
    assert len(warned) == (0 if kernels else 1)
    if not kernels:
        assert "--mixed-precision no" in warned[0] and "slower" in warned[0]


def test_invert_fit_refuses_fp16_on_the_cpu_before_loading_a_model(synth_ir_dir, tmp_path, capsys):
    # --base names no model: the refusal must come first, as one line naming the option, exit 2
    out = tmp_path / "ckpt"
    rc = run(["invert", "fit", synth_ir_dir / "train-000000.tar", "-o", out, "--base", tmp_path / "no-model",
              "--mixed-precision", "fp16", "--device", "cpu", "--steps", "1", "--min-images-per-id", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--mixed-precision fp16 needs a GPU" in err[0], err
    assert not (out / "manifest.json").exists()


def test_invert_fit_warns_about_bf16_on_a_cpu_without_kernels(synth_ir_dir, tmp_path, monkeypatch, capsys):
    from reidtools import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_kernels", lambda: False)
    # the warning comes before the data is read: a set with too few images still shows it, then its
    # own error (and no Accelerator is made, whose bf16 state would outlive this test in the process)
    rc = run(["invert", "fit", synth_ir_dir / "train-000000.tar", "-o", tmp_path / "ckpt", "--base",
              tmp_path / "no-model", "--mixed-precision", "bf16", "--device", "cpu", "--steps", "1",
              "--min-images-per-id", "1000", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "--mixed-precision bf16 on a CPU without native bf16 kernels" in err, err
    assert "--min-images-per-id" in err.strip().splitlines()[-1]
