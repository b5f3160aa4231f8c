"""The sampling schedulers `--scheduler` may name, one table for every generator.

Each entry is a diffusers scheduler class and the config overrides that make it the named sampler
(DPM-Solver++ is DPMSolverMultistepScheduler with `algorithm_type="dpmsolver++"`: DiVE §4.1).
`default` keeps the scheduler saved with the model (PNDM for SD-1.5 inpainting).

A new scheduler keeps the model's noise schedule (its config), with two guards: x0 clipping stays
off unless the model's config asks for it (every model here is latent diffusion), and a model trained
on a zero-terminal-SNR schedule cannot be sampled by a scheduler that would silently drop it.
"""

from __future__ import annotations

import inspect

from reidtools.errors import ReidError

SCHEDULERS: dict[str, tuple[str, dict] | None] = {
    "default": None,
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
NAMES = tuple(SCHEDULERS)


def make_scheduler(name: str, config):
    """A new scheduler `name` built from another scheduler's `config`; None for `default`."""
    import diffusers

    if name not in SCHEDULERS:
        raise ReidError(f"--scheduler {name!r} is not one of {', '.join(NAMES)}")
    entry = SCHEDULERS[name]
    if entry is None:
        return None
    cls, overrides = entry
    target = getattr(diffusers, cls)
    accepts = inspect.signature(target.__init__).parameters
    if config.get("rescale_betas_zero_snr") and "rescale_betas_zero_snr" not in accepts:
        raise ReidError(f"--scheduler {name}: the model was trained on a zero-terminal-SNR schedule "
                        f"(`reid finetune --zero-snr`), which {cls} cannot sample; use ddim, ddpm, euler, "
                        "dpm++ or unipc")
    if "clip_sample" in accepts and "clip_sample" not in config:
        # DDIM's and DDPM's own default clamps every x0 estimate to [-1, 1]: right for pixel-space
        # models, wrong for latents, which are unit-variance and often beyond it. A config saved by a
        # scheduler without the option (SD-1.5 inpainting's PNDM) would otherwise switch it on.
        overrides = {**overrides, "clip_sample": False}
    return target.from_config(config, **overrides)


def set_scheduler(pipe, name: str) -> None:
    """Replace `pipe.scheduler` by `name` (keeping the model's noise schedule); `default` keeps it."""
    sched = make_scheduler(name, pipe.scheduler.config)
    if sched is not None:
        pipe.scheduler = sched
