"""The sampling schedulers `--scheduler` may name, one table for every generator.

Each entry is a diffusers scheduler class and the config overrides that make it the named sampler
(DPM-Solver++ is DPMSolverMultistepScheduler with `algorithm_type="dpmsolver++"`: DiVE §4.1).
`default` keeps the scheduler saved with the model (PNDM for SD-1.5 inpainting).
"""

from __future__ import annotations

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
    return getattr(diffusers, cls).from_config(config, **overrides)


def set_scheduler(pipe, name: str) -> None:
    """Replace `pipe.scheduler` by `name` (keeping the model's noise schedule); `default` keeps it."""
    sched = make_scheduler(name, pipe.scheduler.config)
    if sched is not None:
        pipe.scheduler = sched
