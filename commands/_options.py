"""What every command shares: option decorators, --config, logging, progress, and error handling.

Nothing here imports torch; commands import the library inside their function bodies.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from typing import Any, Callable

import click

from reidtools.errors import ReidError, UsageError

log = logging.getLogger("reidtools")
_state = {"command": "", "verbosity": 0}


class Interrupted(BaseException):
    """SIGINT inside a command, carried past click (which turns KeyboardInterrupt into Abort, exit 1)."""


class ClosedStream:
    """Stands in for a standard stream that was closed at start (`reid stats d/ >&-`).

    Python sets such a stream to None, and click.echo then drops the output silently (exit 0, report
    lost) while sys.stdout.buffer is an AttributeError. Writing or reading here is one clear error.
    """

    def __init__(self, name: str):
        self.name = name
        self.buffer = self

    def _closed(self, *_: Any, **__: Any) -> Any:
        hint = "redirect it to a file" if self.name == "stdout" else "give shard paths instead of -"
        raise ReidError(f"{self.name} is closed, so nothing can be {'written to' if self.name == 'stdout' else 'read from'} "
                        f"it ({hint})")

    write = writelines = read = readline = readinto = read1 = _closed

    def flush(self) -> None:  # called at interpreter exit too: nothing to flush
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._closed()


# ----------------------------------------------------------------------------- running the CLI
def run_cli(group: click.Group, argv: list[str] | None) -> int:
    """Run the group; map failures to exit codes: 1 runtime (one line), 2 usage, 130 interrupted."""
    if sys.stdout is None:
        sys.stdout = ClosedStream("stdout")
    if sys.stdin is None:
        sys.stdin = ClosedStream("stdin")
    try:
        rv = group.main(args=argv, prog_name="reid", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Interrupted:
        _say("interrupted")
        return 130
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # SIGINT while click itself was running
            _say("interrupted")
            return 130
        _say("aborted")
        return 1
    except UsageError as exc:
        _say(f"usage error: {exc}")
        return 2
    except ReidError as exc:
        _say(f"error: {exc}")
        if _state["verbosity"] > 0:
            traceback.print_exc()
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:
        # the reader downstream went away (e.g. `| head`); not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except MemoryError:
        _say("error: out of memory (reduce --batch-size or the input size)")
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into one clear line
        _say(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)")
        if _state["verbosity"] > 0:
            traceback.print_exc()
        return 1


def _say(message: str) -> None:
    name = f"reid {_state['command']}".strip()
    click.echo(f"{name}: {message}", err=True)


def progress_enabled() -> bool:
    """tqdm bars (stderr) unless -q."""
    return _state["verbosity"] >= 0


# ----------------------------------------------------------------------------- --config
def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if not value:
        return value
    import yaml

    try:
        with open(value, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value!r} ({exc.strerror})", ctx, param) from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{value!r} is not valid YAML ({exc})", ctx, param) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value!r} must hold a mapping of option names to values", ctx, param)
    spellings = config_keys(ctx.command)
    defaults: dict[str, Any] = {}
    for key, val in data.items():
        found = spellings.get(str(key).lstrip("-"))
        if found is None:
            raise click.BadParameter(f"{value!r}: {_unknown_key(ctx.command, str(key), spellings)}", ctx, param)
        name, negate = found
        if negate:
            if not isinstance(val, bool):
                raise click.BadParameter(f"{value!r}: {key!r} takes true or false, got {val!r}", ctx, param)
            val = not val
        defaults[name] = val
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def config_keys(command: click.Command) -> dict[str, tuple[str, bool]]:
    """--config key -> (parameter name, negate): each flag as users see it (`dilate` for --dilate),
    with or without dashes, and its underscore form; `no-X` of an on/off flag sets X to false."""
    keys: dict[str, tuple[str, bool]] = {}
    for p in command.params:
        if not p.name or p.name == "config":
            continue
        if not isinstance(p, click.Option):
            keys[p.name] = (p.name, False)  # an argument (INPUTS...) has only its name
            continue
        for opts, negate in ((p.opts, False), (p.secondary_opts, True)):
            for opt in opts:
                flag = opt.lstrip("-")
                keys.setdefault(flag, (p.name, negate))
                keys.setdefault(flag.replace("-", "_"), (p.name, negate))
    return keys


def _unknown_key(command: click.Command, key: str, keys: dict[str, tuple[str, bool]]) -> str:
    import difflib

    msg = f"unknown option {key!r} for `reid {command.name}`"
    by_param = {p.name: p for p in command.params if isinstance(p, click.Option)}
    flags = sorted({k for k in keys if "_" not in k and len(k) > 1})
    bare = key.lstrip("-")
    if bare in by_param:  # the Python parameter name, e.g. dilate_px for --dilate
        flag = max(by_param[bare].opts, key=len)
        return f"{msg}: keys are the option names, here {flag.lstrip('-')!r} ({flag})"
    close = difflib.get_close_matches(bare.replace("_", "-"), flags, n=1, cutoff=0.6)
    return f"{msg}: did you mean {close[0]!r}?" if close else f"{msg} (see `reid {command.name} --help`)"


# ----------------------------------------------------------------------------- decorators
def command(name: str, **kwargs: Any) -> Callable[[Callable], click.Command]:
    """A `reid` subcommand with --config, -v/-q, logging to stderr and the shared error handling."""

    def decorate(fn: Callable) -> click.Command:
        @functools.wraps(fn)
        def wrapper(*args: Any, verbose: int = 0, quiet: int = 0, config: str | None = None,
                    max_pixels: int | None = None, **kw: Any) -> Any:
            _state["command"], _state["verbosity"] = name, verbose - quiet
            _setup_logging(name, verbose - quiet)
            if max_pixels is not None:
                from reidtools.shards.images import set_max_pixels

                set_max_pixels(max_pixels)
            try:
                return fn(*args, **kw)
            except KeyboardInterrupt:
                raise Interrupted() from None

        wrapper = click.option("--max-pixels", type=click.IntRange(min=1), default=None, envvar="REID_MAX_PIXELS",
                               show_envvar=True, metavar="N",
                               help="Refuse (naming shard and key) any image above N pixels, before decoding it "
                                    "[default: 16777216 = 4096x4096].")(wrapper)
        wrapper = click.option("-q", "--quiet", count=True, help="Less output: no progress bars, warnings only.")(wrapper)
        wrapper = click.option("-v", "--verbose", count=True, help="More output (-v: debug logs and tracebacks).")(wrapper)
        wrapper = click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=True,
                               callback=_load_config,
                               help="YAML file of option defaults (keys are option names); flags override it.")(wrapper)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"], "show_default": True})
        return click.command(name, **kwargs)(wrapper)

    return decorate


def _setup_logging(name: str, verbosity: int) -> None:
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"reid {name}: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    if verbosity <= 0:
        # transformers/diffusers warn at import about optional backends (e.g. no torchvision, which
        # this project deliberately does not use); keep stderr for reid's own messages unless -v
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def inputs_argument(fn: Callable) -> Callable:
    """INPUTS...: shard paths, globs, brace patterns, directories, or `-` for stdin."""
    return click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...", callback=_mark_pipes)(fn)


def _mark_pipes(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    # `pipe:CMD` runs a shell command: honoured only for what the user typed, not from --config or data
    from reidtools.shards.paths import command_line_inputs

    if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.COMMANDLINE:
        return value
    return command_line_inputs(value)


def output_option(required: bool = True, help: str = "Output directory for shards, or - for one tar on stdout.") -> Callable:
    return click.option("-o", "--output", required=required, metavar="DIR|-", help=help)


def overwrite_option(fn: Callable) -> Callable:
    """--overwrite for per-shard maps (mask, pose, caption, tryoff, inpaint, tryon, filter)."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace output shards that exist (default: keep them, which resumes a killed run; "
                             "stdin output or -o equal to an input directory is refused).")(fn)


def seed_option(fn: Callable) -> Callable:
    return click.option("--seed", type=int, default=0, help="Global seed; per-sample seeds derive from it and the key.")(fn)


def task_options(fn: Callable) -> Callable:
    """--shard-index/--num-shards, defaulting from SLURM array or torchrun/accelerate variables."""
    fn = click.option("--num-shards", type=int, default=None,
                      help="Number of tasks splitting the input shards [default: SLURM_ARRAY_TASK_COUNT, WORLD_SIZE, or 1].")(fn)
    fn = click.option("--shard-index", type=int, default=None,
                      help="This task's index [default: SLURM_ARRAY_TASK_ID, RANK, or 0].")(fn)
    return fn


def resolve_task(shard_index: int | None, num_shards: int | None) -> tuple[int, int]:
    from reidtools.shards.paths import task_from_env

    # flags given in full override the environment, even a malformed one
    env_index, env_count = task_from_env() if shard_index is None or num_shards is None else (0, 1)
    index = env_index if shard_index is None else shard_index
    count = env_count if num_shards is None else num_shards
    if shard_index is not None and num_shards is None and env_count == 1:
        raise click.UsageError("--shard-index needs --num-shards")
    return index, count


# Bounds for every HxW option. The papers' largest size is IDM-VTON's 1024x768 (0.8 Mpx); 2048x2048
# leaves 5x headroom, while 100000x100000 would ask for tens of GB before the first step and die in
# the OOM killer with a 0-byte temp shard instead of this one line.
MAX_SIDE = 4096
MAX_AREA = 2048 * 2048


def parse_size(value: str, option: str = "--size", multiple: int = 1) -> tuple[int, int]:
    """'HxW' -> (H, W), with a clear usage error (bounds, and a multiple-of check for latent models)."""
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HxW (e.g. 256x128)", param_hint=option) from None
    if h <= 0 or w <= 0:
        raise click.BadParameter(f"{value!r}: sizes must be positive", param_hint=option)
    if max(h, w) > MAX_SIDE or h * w > MAX_AREA:
        raise click.BadParameter(f"{value!r} is too large: at most {MAX_SIDE} per side and {MAX_AREA} pixels "
                                 f"(2048x2048) in all", param_hint=option)
    if multiple > 1 and (h % multiple or w % multiple):
        raise click.BadParameter(f"{value!r}: height and width must be multiples of {multiple}", param_hint=option)
    return h, w


# ----------------------------------------------------------------------------- model-bearing commands
# --dtype/--device: caption, inpaint, discriminate, finetune, tryoff, tryon, invert sample, posegen sample.
# --scheduler: inpaint, invert sample, posegen sample (names from reidtools.generate.schedulers).
# The papers' SD-1.5 checkpoints, named once: inpainting (DLCR, TryOffAnyone's base) and text-to-image
# (DiVE, Pose-dIVE, DCAC).
SD_INPAINT = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SD_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def dtype_option(default: str = "fp16", paper: str | None = None) -> Callable:
    """--dtype for a generator; `paper` names whose default it is (TryOffAnyone runs in bf16)."""
    why = f" ({paper})" if paper else ""
    return click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32"]), default=default,
                        help=f"Weights/activations precision{why}; fp16 falls back to fp32 on CPU.")


def device_option(fn: Callable) -> Callable:
    return click.option("--device", default=None,
                        help="torch device, e.g. cpu or cuda:1 [default: cuda:LOCAL_RANK under accelerate/torchrun, "
                             "else cuda, mps, cpu].")(fn)


def scheduler_option(default: str, why: str) -> Callable:
    from reidtools.generate.schedulers import NAMES

    return click.option("--scheduler", type=click.Choice(NAMES), default=default,
                        help=f"Sampler ({why}); `default` is the one saved with the model.")


def empty_mask_option(fn: Callable) -> Callable:
    """--empty-mask for the generators that repaint a region (inpaint, tryoff, tryon)."""
    return click.option("--empty-mask", type=click.Choice(["skip", "error"]), default="skip",
                        help="A sample with no pixel to repaint: skip it (counted and logged with its first key) "
                             "or stop with an error naming it.")(fn)


def fit_checkpoint_options(what: str) -> Callable:
    """--mixed-precision, --save-every, --keep-checkpoints, --validation-*, --resume, --device for the
    diffusion fits (invert fit, posegen fit); `what` says what a validation image shows."""
    def decorate(fn: Callable) -> Callable:
        for option in reversed([
            click.option("--mixed-precision", type=click.Choice(["auto", "no", "fp16", "bf16"]), default="auto",
                         help="accelerate mixed precision; auto = fp16 on CUDA, none on CPU. fp16 needs a GPU; "
                              "bf16 on a CPU without bf16 kernels is warned about (many times slower than no)."),
            click.option("--save-every", type=click.IntRange(min=1), default=1000,
                         help="Write -o/checkpoint-N/ (resumable) every N steps, and the final checkpoint into -o."),
            click.option("--keep-checkpoints", type=click.IntRange(min=1), default=1,
                         help="Newest checkpoint-N/ folders kept."),
            click.option("--validation-every", type=click.IntRange(min=0), default=0,
                         help="Every N steps, render validation images into -o/validation/step-N/ (0 = never)."),
            click.option("--validation-images", type=click.IntRange(min=1), default=2, help=what),
            click.option("--validation-steps", type=click.IntRange(min=1), default=25,
                         help="Denoising steps of a validation image."),
            click.option("--resume", is_flag=True, help="Continue from the newest -o/checkpoint-N/."),
            click.option("--device", default=None, help="cpu to force the CPU [default: accelerate's choice]."),
        ]):
            fn = option(fn)
        return fn

    return decorate
