"""The CLI layer's limits and exit codes: sizes, task variables, closed stdout, interrupts, usage errors."""

from __future__ import annotations

import click
import pytest

from reidtools.commands import cli
from reidtools.commands._options import parse_size, run_cli


def _err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


# ----------------------------------------------------------------------------- --size bounds
def test_parse_size_bounds_side_and_area():
    assert parse_size("2048x2048") == (2048, 2048)
    assert parse_size("4096x1024") == (4096, 1024)  # exactly the area bound
    for bad in ("100000x100000", "4104x8", "2056x2048"):
        with pytest.raises(click.BadParameter, match="too large"):
            parse_size(bad, multiple=8)


def test_inpaint_huge_size_is_a_usage_error_before_any_work(synth_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    rc = run_cli(cli, ["inpaint", str(synth_dir / "train-000000.tar"), "-o", str(out), "--prompts", "fixed:a coat",
                       "--model", str(tmp_path / "no-model"), "--size", "100000x100000"])
    err = _err_lines(capsys)
    assert rc == 2
    assert any("--size" in ln and "too large" in ln for ln in err), err
    assert not out.exists()


def test_synth_huge_size_is_a_usage_error(tmp_path, capsys):
    assert run_cli(cli, ["synth", "-o", str(tmp_path / "s"), "--size", "8192x64"]) == 2
    assert "--size" in capsys.readouterr().err
