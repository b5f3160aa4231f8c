"""DiVE's fit (`reid invert fit`) at published size with bf16 mixed precision on the CPU, against the
same step in fp32: SD-1.5 (`sd15`, random weights in the hub layout) + identity tokens + LoRA r = 128,
1 step of 1 image at 64x32.

On the CPU `--mixed-precision bf16` is accelerate's CPU autocast with the frozen VAE, text encoder and
U-Net cast to bf16 (the LoRA and the token rows stay fp32); fp16 is refused there
(tests/test_fit_precision.py). On a CPU without native bf16 kernels the step runs many times slower
than fp32 (bench/cpu_precision.py), and the command says so.

Outside the default suite: `pytest -m fullsize tests/test_fullsize_dive_bf16.py`; REID_FULLSIZE_LOG and
REID_FULLSIZE_LOCK as in tests/test_fullsize_fit.py (whose process guard this file uses).
"""

from __future__ import annotations

import json
import math
import os

import pytest
from test_fullsize import REID
from test_fullsize_fit import _build, _header, _run

pytestmark = pytest.mark.fullsize

LORA_PARAMS = 19_120_128   # r = 128 on q/k/v of SD-1.5's 16 blocks (hand count in tests/test_fullsize_fit.py)


def test_dive_fit_bf16_and_fp32_take_the_same_step(tmp_path):
    from reidtools.runtime import cpu_has_bf16_kernels

    sd15 = _build("sd15", tmp_path / "sd15")
    _run("synth rgb,ir", [*REID, "synth", "-o", str(tmp_path / "synth"), "--ids", "4", "--outfits", "1", "--cams", "2",
                          "--images-per", "2", "--size", "128x64", "--modalities", "rgb,ir"])
    train = os.path.join(str(tmp_path / "synth"), "train-000000.tar")
    runs = {}
    for precision in ("no", "bf16"):
        ckpt = tmp_path / f"dive-{precision}"
        proc = _run(f"invert fit sd15 --mixed-precision {precision}",
                    [*REID, "invert", "fit", train, "-o", str(ckpt), "--base", sd15, "--steps", "1", "--batch-size",
                     "1", "--size", "64x32", "--min-images-per-id", "1", "--mixed-precision", precision,
                     "--device", "cpu", "-q"])
        man = json.loads((ckpt / "manifest.json").read_text())
        assert man["step"] == 1 and man["options"]["mixed_precision"] == precision and math.isfinite(man["last_loss"])
        lora = _header(ckpt / "pytorch_lora_weights.safetensors")
        assert sum(math.prod(s) for s in lora.values()) == LORA_PARAMS
        # the trained LoRA stays fp32 under bf16: 4 bytes a value, as in fp32
        size = (ckpt / "pytorch_lora_weights.safetensors").stat().st_size
        assert 4 * LORA_PARAMS < size < 4 * LORA_PARAMS + 100_000
        runs[precision] = (man["last_loss"], proc)
    warned = "--mixed-precision bf16 on a CPU without native bf16 kernels"
    assert (warned in runs["bf16"][1].stderr) == (not cpu_has_bf16_kernels())
    assert warned not in runs["no"][1].stderr
    # the same batch, noise and timestep (all from --seed): bf16 rounding moves the loss, not the step
    assert runs["bf16"][0] == pytest.approx(runs["no"][0], rel=0.02)   # measured: 1.14310 vs 1.14246
