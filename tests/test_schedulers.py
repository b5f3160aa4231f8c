"""`--scheduler` (reidtools.generate.schedulers) and `reid finetune --zero-snr`'s schedule: a new
sampler keeps the model's noise schedule without clamping latents, and a zero-terminal-SNR schedule
is Lin et al.'s, computed here by hand."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from reidtools.errors import ReidError
from reidtools.generate.inpaint.training import zero_snr_schedulers
from reidtools.generate.schedulers import make_scheduler

HERE = os.path.dirname(__file__)


def _sd15_inpainting_config():
    """SD-1.5 inpainting's own scheduler config (its hub file, kept as data in the repo): PNDM, which
    has no clip_sample option and so does not record one."""
    from diffusers import PNDMScheduler

    from reidtools.testing.fullsize import load_config

    cfg = dict(load_config("sd15-inpainting")["scheduler"])
    assert cfg.pop("_class_name") == "PNDMScheduler" and "clip_sample" not in cfg
    return PNDMScheduler.from_config(cfg).config


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
def test_a_latent_x0_estimate_is_not_clamped_to_unit_range(name):
    sched = make_scheduler(name, _sd15_inpainting_config())
    sched.set_timesteps(10)
    t = int(sched.timesteps[0])
    ab = float(sched.alphas_cumprod[t])
    eps = torch.randn(1, 4, 4, 2, generator=torch.Generator().manual_seed(0))
    x0 = torch.full_like(eps, 3.0)          # SD latents are unit-variance: |x0| > 1 is common
    sample = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
    out = sched.step(eps, t, sample, generator=torch.Generator().manual_seed(1))
    # the epsilon model's x0 estimate, (x - sqrt(1 - a) eps) / sqrt(a), is exactly 3 everywhere;
    # diffusers' DDIM/DDPM default (clip_sample=True) would have returned 1
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-4)


def test_a_config_that_asks_for_clipping_keeps_it():
    from diffusers import DDIMScheduler

    cfg = DDIMScheduler(clip_sample=True).config          # a pixel-space model's choice is respected
    assert make_scheduler("ddim", cfg).config.clip_sample is True


def _sd_betas():
    """scaled_linear: beta_t = (sqrt(0.00085) + t/999 (sqrt(0.012) - sqrt(0.00085)))^2, t = 0..999."""
    a, b = math.sqrt(0.00085), math.sqrt(0.012)
    return [(a + (b - a) * t / 999) ** 2 for t in range(1000)]


def test_zero_snr_schedule_is_lin_et_al_algorithm_1():
    """Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (WACV 2024), §3.1,
    Algorithm 1: sqrt(alpha_bar) is shifted so that its last value is 0 and scaled so that its first
    is unchanged; v-prediction (§3.2); trailing timesteps, the first of which is T - 1 (§3.3)."""
    base = _sd15_inpainting_config()
    train, sample = zero_snr_schedulers({**base, "prediction_type": "v_prediction"})
    sqrt_ab, prod = [], 1.0
    for beta in _sd_betas():
        prod *= 1.0 - beta
        sqrt_ab.append(math.sqrt(prod))
    first, last = sqrt_ab[0], sqrt_ab[-1]
    want = [((s - last) * first / (first - last)) ** 2 for s in sqrt_ab]
    assert want[-1] == 0.0 and last ** 2 == pytest.approx(0.0047, abs=1e-4)   # SD's leak: SNR(T) = 0.0047
    for sched in (train, sample):
        got = sched.alphas_cumprod.double()
        assert got[-1] == 0.0
        for t in (0, 1, 250, 500, 998):
            assert float(got[t]) == pytest.approx(want[t], rel=1e-4, abs=1e-9)
        assert sched.config.prediction_type == "v_prediction"
    assert type(sample).__name__ == "DDIMScheduler" and sample.config.clip_sample is False
    sample.set_timesteps(10)
    assert sample.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]   # Lin et al. Table 2
    # at t = T - 1 the model's input is the noise itself: nothing of the image leaks into it
    x0, noise = torch.full((1, 4, 2, 2), 2.0), torch.randn(1, 4, 2, 2)
    assert torch.equal(train.add_noise(x0, noise, torch.tensor([999])), noise)


def test_zero_snr_needs_v_prediction_and_a_sampler_that_keeps_it():
    base = _sd15_inpainting_config()
    with pytest.raises(ReidError, match="v_prediction"):
        zero_snr_schedulers(base)                              # SD-1.5's own target is epsilon
    _, sample = zero_snr_schedulers({**base, "prediction_type": "v_prediction"})
    with pytest.raises(ReidError, match="--scheduler pndm"):
        make_scheduler("pndm", sample.config)                 # PNDM would silently sample SD's schedule
    for name in ("ddim", "ddpm", "euler", "dpm++", "unipc"):
        assert float(make_scheduler(name, sample.config).alphas_cumprod[-1]) < 1e-7   # Euler-type: 2**-24, not 0
    json.dumps(dict(sample.config))                            # what save_pretrained writes
