"""One process per GPU under accelerate/torchrun: every model-bearing command takes cuda:LOCAL_RANK.

`reid inpaint` used its own LOCAL_RANK-aware helper while `tryon`/`tryoff` asked for the best device,
so under `accelerate launch` every try-on process landed on cuda:0. The device is now chosen in one
place (`reidtools.runtime.best_device`); these tests fake a 4-GPU machine and check where each
command's models are moved. Training (`train`, `invert fit`, `posegen fit`, `finetune`) places models
through accelerate, which reads LOCAL_RANK itself.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.errors import ReidError
from reidtools.runtime import best_device

ROOT = pathlib.Path(__file__).resolve().parents[1]


class _Moved(Exception):
    pass


@pytest.fixture
def four_gpus(monkeypatch):
    """torch believes in 4 GPUs; the first move of a module to one is recorded and stops the command."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    seen: list[str] = []
    real_to = torch.nn.Module.to

    def to(self, *args, **kwargs):
        dev = kwargs.get("device", args[0] if args else None)
        if dev is not None and not isinstance(dev, torch.dtype) and torch.device(dev).type == "cuda":
            seen.append(str(torch.device(dev)))
            raise _Moved(str(dev))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    return seen


def test_best_device_follows_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert str(best_device()) == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert str(best_device()) == "cuda:3"
    monkeypatch.setenv("LOCAL_RANK", "6")          # more processes than GPUs: wrap around
    assert str(best_device()) == "cuda:2"
    assert str(best_device("cpu")) == "cpu"        # an explicit --device wins
    monkeypatch.setenv("LOCAL_RANK", "two")
    with pytest.raises(ReidError, match="LOCAL_RANK='two'"):
        best_device()


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    from reidtools.data.synth import write_dataset

    out = tmp_path_factory.mktemp("people")
    write_dataset(str(out / "synth"), ids=2, outfits=1, cams=2, images_per=2, size=(32, 16), seed=0)
    assert run_cli(cli, ["mask", "-q", "--engine", "labels", str(out / "synth" / "train-000000.tar"),
                         "-o", str(out / "masked")]) == 0
    return str(out / "masked" / "train-000000.tar")


def test_inpaint_tryoff_and_caption_put_their_models_on_cuda_local_rank(tmp_path, monkeypatch, four_gpus, people):
    from reidtools.testing.models import build_inpaint_pipeline, build_llava
    from reidtools.testing.tryoff import write_tiny_tryoff

    sd, llava = str(tmp_path / "sd"), str(tmp_path / "llava")
    build_inpaint_pipeline(sd)
    build_llava(llava)
    tryoff = write_tiny_tryoff(str(tmp_path / "tryoff"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    commands = {
        "inpaint": ["inpaint", people, "-o", str(tmp_path / "g"), "--model", sd, "--prompts", "fixed:a shirt"],
        "tryoff": ["tryoff", people, "-o", str(tmp_path / "c"), "--model", tryoff["model"], "--vae", tryoff["vae"],
                   "--weights", tryoff["weights"]],
        "caption": ["caption", people, "-o", str(tmp_path / "cap"), "--model", llava],
    }
    for name, argv in commands.items():
        four_gpus.clear()
        assert run_cli(cli, argv + ["-q"]) == 1, name   # stopped at the first move to a GPU
        assert four_gpus and set(four_gpus) == {"cuda:1"}, (name, four_gpus)


def test_no_command_or_library_module_picks_a_gpu_by_itself():
    """Device choice lives in runtime.best_device (or accelerate); a literal cuda device elsewhere would
    put every process of a multi-GPU run on one GPU again."""
    pattern = re.compile(r"""torch\.device\(\s*["']cuda|\.cuda\(\s*\)|["']cuda:0["']""")
    offenders = []
    for folder in (ROOT / "src" / "reidtools", ROOT / "commands"):
        for path in folder.rglob("*.py"):
            if path.name == "runtime.py" or "testing" in path.parts:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders


@pytest.mark.parametrize("kernels", [False, True])
def test_bf16_on_a_cpu_is_kept_and_warned_about_without_native_kernels(monkeypatch, caplog, kernels):
    """Measured on this project's AVX2 machine: a bf16 convolution ran at 0.03 GFLOPS vs 29 in fp32, so
    `reid tryoff`'s default bf16 took 120-210 s per image at one step. bf16 stays (it is what fits
    IDM-VTON in 24 GiB), but the user is told once; fp16 on a CPU still becomes fp32."""
    import logging

    import torch

    from reidtools import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_kernels", lambda: kernels)
    monkeypatch.setattr(runtime, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="reidtools"):
        assert runtime.torch_dtype("bf16", "cpu") is torch.bfloat16
        assert runtime.torch_dtype("bf16", "cpu") is torch.bfloat16
    warned = [r.message for r in caplog.records if "bf16" in r.message]
    assert len(warned) == (0 if kernels else 1)
    if not kernels:
        assert "--dtype fp32" in warned[0]
    assert runtime.torch_dtype("fp16", "cpu") is torch.float32
    assert runtime.torch_dtype("bf16") is torch.bfloat16      # no device: nothing to check, no warning
