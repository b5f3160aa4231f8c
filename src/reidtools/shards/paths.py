"""Input shard lists: paths, globs, brace ranges, stdin; and their split across array tasks."""

from __future__ import annotations

import glob
import os
import re

from braceexpand import braceexpand

from reidtools.errors import ReidError, UsageError

STDIN = "-"
_GLOB_CHARS = re.compile(r"[*?\[]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PIPE = "pipe:"


class CommandLinePipe(str):
    """A `pipe:CMD` shard typed by the user on the command line.

    `pipe:` runs CMD in a shell, so it is honoured only when the CLI marks it as the user's own
    argument (`command_line_inputs`); a `pipe:` string from a shard list, a json or any other data
    is refused by the reader.
    """


def command_line_inputs(values) -> tuple[str, ...]:
    """Mark `pipe:` arguments as the user's own (called by the CLI on INPUTS, never on data)."""
    return tuple(CommandLinePipe(v) if isinstance(v, str) and v.startswith(PIPE) else v for v in values)


def is_remote(spec: str) -> bool:
    """`pipe:CMD` or a URL with a scheme (http, https, s3, gs, ...)."""
    return spec.startswith(PIPE) or bool(_URL.match(spec))


def expand_inputs(inputs: list[str] | tuple[str, ...]) -> list[str]:
    """Expand brace patterns (`a-{000000..000009}.tar`), globs and directories into a shard list.

    A directory stands for the `.tar` files inside it, sorted. `-` (stdin) may appear once. A
    pattern that matches nothing, or a path that does not exist, is an error naming it. URLs
    (`https://host/a-{000000..000009}.tar`, `s3://...`) are brace-expanded but not checked here;
    `pipe:CMD` is kept whole.
    """
    shards: list[str] = []
    for spec in inputs:
        if spec == STDIN:
            shards.append(STDIN)
            continue
        if spec.startswith(PIPE):
            shards.append(spec)  # a shell command: braces are the shell's, not a shard range
            continue
        if _URL.match(spec):
            shards.extend(braceexpand(spec))  # remote: nothing to glob or stat
            continue
        for path in braceexpand(spec):
            if _GLOB_CHARS.search(path):
                matches = sorted(glob.glob(path))
                if not matches:
                    raise ReidError(f"input pattern {path!r} matches no file")
                shards.extend(matches)
            elif os.path.isdir(path):
                found = sorted(glob.glob(os.path.join(path, "*.tar")))
                if not found:
                    raise ReidError(f"input directory {path!r} holds no .tar shard")
                shards.extend(found)
            elif os.path.exists(path):
                shards.append(path)
            else:
                raise ReidError(f"input shard {path!r} does not exist")
    if shards.count(STDIN) > 1:
        raise ReidError("stdin ('-') can be read only once")
    seen: dict[str, str] = {}
    for shard in shards:
        real = shard if shard == STDIN or is_remote(shard) else os.path.realpath(shard)
        if real in seen:
            same = "" if seen[real] == shard else f" (as {seen[real]!r})"
            raise ReidError(f"input shard {shard!r} is given twice{same}: its samples would be read twice")
        seen[real] = shard
    if not shards:
        raise ReidError("no input shards given")
    return shards


def task_from_env(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(index, count) of this task from SLURM array variables, else torchrun/accelerate's RANK/WORLD_SIZE."""
    env = os.environ if environ is None else environ
    for idx_var, cnt_var in (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"), ("RANK", "WORLD_SIZE")):
        if env.get(idx_var) not in (None, "") and env.get(cnt_var) not in (None, ""):
            index, count = _env_int(env, idx_var), _env_int(env, cnt_var)
            what = f"{idx_var}={env[idx_var]}"
            if idx_var == "SLURM_ARRAY_TASK_ID" and env.get("SLURM_ARRAY_TASK_MIN"):
                index -= _env_int(env, "SLURM_ARRAY_TASK_MIN")  # arrays may start at 1 (--array=1-8)
                what += f" minus SLURM_ARRAY_TASK_MIN={env['SLURM_ARRAY_TASK_MIN']}"
            if count < 1 or not 0 <= index < count:
                raise UsageError(f"{what} is not a task index in 0..{count - 1} ({cnt_var}={env[cnt_var]}); "
                                 "pass --shard-index/--num-shards to override")
            return index, count
    return 0, 1


def _env_int(env, name: str) -> int:
    value = env[name].strip()
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={env[name]!r} is not an integer") from None


def check_task(index: int, count: int) -> None:
    """A usage error unless `index` is one of `count` tasks (0-based)."""
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard-index {index} is not in 0..{count - 1} (--num-shards {count})")


def split_shards(shards: list[str], index: int, count: int) -> list[str]:
    """This task's shards: every `count`-th shard starting at `index`.

    Fewer shards than tasks is an error, never an idle task that looks like success.
    """
    check_task(index, count)
    if count > 1 and STDIN in shards:
        raise ReidError("stdin ('-') cannot be split across tasks; pass shard files")
    if len(shards) < count:
        raise UsageError(
            f"{len(shards)} input shard(s) for {count} tasks (--num-shards {count}): every task needs at least one shard "
            "(re-shard the input with more, smaller shards, or run fewer tasks)"
        )
    return shards[index::count]
