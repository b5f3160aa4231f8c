"""The CLI contract: lazy loading (no torch for --help), registry/help agreement, --config, exit codes,
and man pages that match the code."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from reidtools.commands import COMMANDS, available, cli
from reidtools.commands._manpage import pages
from reidtools.commands._options import command, run_cli
from reidtools.errors import ReidError

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "onnxruntime")


def _help_imports(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from reidtools.commands import cli\n"
        "from reidtools.commands._options import run_cli\n"
        f"rc = run_cli(cli, {args!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("HEAVY=")][-1]
    return {m for m in line[len("HEAVY="):].split(",") if m}


def test_top_level_help_does_not_import_torch():
    assert _help_imports(["--help"]) == set()


@pytest.mark.parametrize("name", [n for n in COMMANDS if available(n)])
def test_command_help_does_not_import_heavy_libraries(name):
    assert _help_imports([name, "--help"]) == set()


@pytest.mark.parametrize("name", [n for n in COMMANDS if available(n)])
def test_registry_line_matches_command_help(name):
    cmd = cli.get_command(click.Context(cli), name)
    assert cmd.get_short_help_str(limit=200) == COMMANDS[name]


def test_man_pages_are_fresh():
    import pathlib

    man = pathlib.Path(__file__).resolve().parents[1] / "man"
    wanted = pages()
    on_disk = {p.name: p.read_text() for p in man.glob("*.1")}
    stale = sorted(n for n in wanted if on_disk.get(n) != wanted[n])
    extra = sorted(set(on_disk) - set(wanted))
    assert not stale and not extra, (
        f"man/ is stale ({stale or extra}): run `python -m reidtools.commands._manpage man`")
    assert all(f"reid-{n}.1" in wanted for n in COMMANDS if available(n))


# ----------------------------------------------------------------------------- the shared decorator
def _group_with(cmd: click.Command) -> click.Group:
    group = click.Group("reid")
    group.add_command(cmd)
    return group


@command("demo")
@click.option("--size", default="1x1")
@click.option("--count", type=int, default=3)
@click.option("--fail", type=click.Choice(["no", "reid", "bug"]), default="no")
def _demo(size, count, fail):
    """Demo command for tests."""
    if fail == "reid":
        raise ReidError("shard x.tar: key k: something is wrong")
    if fail == "bug":
        raise RuntimeError("unexpected")
    click.echo(f"{size} {count}")


def test_config_supplies_defaults_and_flags_override(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("size: 4x2\ncount: 7\n")
    assert run_cli(_group_with(_demo), ["demo", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "4x2 7"
    assert run_cli(_group_with(_demo), ["demo", "--count", "9", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "4x2 9"


def test_config_unknown_key_is_a_usage_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("colour: red\n")
    assert run_cli(_group_with(_demo), ["demo", "--config", str(cfg)]) == 2
    assert "unknown option 'colour'" in capsys.readouterr().err


def test_config_is_safe_loaded(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("count: !!python/object/apply:os.system ['echo pwned']\n")
    assert run_cli(_group_with(_demo), ["demo", "--config", str(cfg)]) == 2
    assert "pwned" not in capsys.readouterr().out


def test_runtime_error_is_one_line_exit_1(capsys):
    assert run_cli(_group_with(_demo), ["demo", "--fail", "reid"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["reid demo: error: shard x.tar: key k: something is wrong"]


def test_unexpected_exception_is_one_line_without_traceback(capsys):
    assert run_cli(_group_with(_demo), ["demo", "--fail", "bug"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: RuntimeError: unexpected" in err[0]


def test_usage_error_exit_2(capsys):
    assert run_cli(_group_with(_demo), ["demo", "--count", "x"]) == 2
