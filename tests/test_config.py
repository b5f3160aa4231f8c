"""--config keys are the option names users see, in dash or underscore form; unknown keys get a suggestion."""

from __future__ import annotations

import click
import pytest

from reidtools.commands._options import command, run_cli


@command("demo")
@click.option("--dilate", "dilate_px", type=int, default=0)
@click.option("--lambda", "lambda_", type=float, default=0.3)
@click.option("--trials", "num_trials", type=int, default=10)
@click.option("--keep-source/--no-keep-source", default=True)
@click.option("--max-images", type=int, default=None)
def _demo(dilate_px, lambda_, num_trials, keep_source, max_images):
    """Demo command for tests."""
    click.echo(f"{dilate_px} {lambda_} {num_trials} {keep_source} {max_images}")


def _run(tmp_path, capsys, text: str, *flags: str) -> tuple[int, str, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    group = click.Group("reid")
    group.add_command(_demo)
    rc = run_cli(group, ["demo", "--config", str(cfg), *flags])
    out = capsys.readouterr()
    return rc, out.out.strip(), out.err.strip()


def test_keys_are_the_flags_users_see(tmp_path, capsys):
    rc, out, err = _run(tmp_path, capsys, "dilate: 2\nlambda: 0.5\ntrials: 3\nkeep-source: false\nmax-images: 7\n")
    assert (rc, out) == (0, "2 0.5 3 False 7"), err


def test_underscore_and_dashed_spellings_work(tmp_path, capsys):
    rc, out, err = _run(tmp_path, capsys, "--dilate: 4\nmax_images: 9\nkeep_source: true\n")
    assert (rc, out) == (0, "4 0.3 10 True 9"), err


def test_negative_flag_spelling(tmp_path, capsys):
    assert _run(tmp_path, capsys, "no-keep-source: true\n")[1] == "0 0.3 10 False None"
    rc, _, err = _run(tmp_path, capsys, "no-keep-source: 3\n")
    assert rc == 2 and "takes true or false" in err


def test_flags_override_the_config(tmp_path, capsys):
    assert _run(tmp_path, capsys, "dilate: 2\n", "--dilate", "5")[1].startswith("5 ")


@pytest.mark.parametrize("key, hint", [
    ("dilate_px", "keys are the option names, here 'dilate' (--dilate)"),
    ("lambda_", "here 'lambda' (--lambda)"),
    ("num_trials", "here 'trials' (--trials)"),
    ("dilat", "did you mean 'dilate'?"),
    ("max-image", "did you mean 'max-images'?"),
    ("colour", "see `reid demo --help`"),
])
def test_unknown_key_names_the_closest_valid_one(tmp_path, capsys, key, hint):
    rc, _, err = _run(tmp_path, capsys, f"{key}: 1\n")
    assert rc == 2
    assert f"unknown option {key!r} for `reid demo`" in err and hint in err, err
