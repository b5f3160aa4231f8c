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


# ----------------------------------------------------------------------------- task split: usage errors (exit 2)
def _mask_args(synth_dir, tmp_path) -> list[str]:
    return ["mask", "--engine", "labels", str(synth_dir / "train-000000.tar"), str(synth_dir / "query-000000.tar"),
            "-o", str(tmp_path / "out"), "-q"]


@pytest.mark.parametrize("flags", [["--num-shards", "5", "--shard-index", "0"], ["--shard-index", "3", "--num-shards", "2"]])
def test_impossible_task_split_is_a_usage_error(synth_dir, tmp_path, capsys, flags):
    rc = run_cli(cli, _mask_args(synth_dir, tmp_path) + flags)
    err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1, err
    assert "--num-shards" in err[0] or "--shard-index" in err[0]


def test_zero_epochs_is_a_usage_error(synth_dir, tmp_path, capsys):
    rc = run_cli(cli, ["train", str(synth_dir / "train-000000.tar"), "-o", str(tmp_path / "run"), "--epochs", "0"])
    assert rc == 2 and "--epochs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("env, named", [
    ({"SLURM_ARRAY_TASK_ID": "abc", "SLURM_ARRAY_TASK_COUNT": "2"}, "SLURM_ARRAY_TASK_ID='abc'"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "two"}, "SLURM_ARRAY_TASK_COUNT='two'"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "x"}, "SLURM_ARRAY_TASK_MIN='x'"),
    ({"RANK": "1.5", "WORLD_SIZE": "2"}, "RANK='1.5'"),
    ({"RANK": "0", "WORLD_SIZE": ""}, None),  # incomplete: ignored, one task
    ({"RANK": "4", "WORLD_SIZE": "2"}, "RANK=4 is not a task index in 0..1"),
    ({"RANK": "0", "WORLD_SIZE": "-3"}, "RANK=0 is not a task index"),
])
def test_malformed_task_variables_name_the_variable(synth_dir, tmp_path, capsys, monkeypatch, env, named):
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    rc = run_cli(cli, _mask_args(synth_dir, tmp_path))
    err = _err_lines(capsys)
    if named is None:
        assert rc == 0, err
        return
    assert rc == 2 and len(err) == 1, err
    assert named in err[0]


def test_flags_override_malformed_task_variables(synth_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "abc")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert run_cli(cli, _mask_args(synth_dir, tmp_path) + ["--shard-index", "1", "--num-shards", "2"]) == 0


# ----------------------------------------------------------------------------- metadata out of range
def _shard_with_meta(path, meta: dict) -> str:
    import io
    import json
    import tarfile

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 16)).save(buf, format="JPEG")
    with tarfile.open(path, "w") as tar:
        for name, data in (("k1.jpg", buf.getvalue()), ("k1.json", json.dumps(meta).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_huge_pid_is_one_line_naming_shard_and_key(tmp_path, capsys):
    from reidtools.errors import SampleError
    from reidtools.shards.sample import validate

    meta = {"dataset": "x", "split": "train", "pid": 10**30, "camid": 0, "clothes": "a", "modality": "rgb"}
    with pytest.raises(SampleError, match=r"^s\.tar: k1: metadata 'pid' 1(0){30} does not fit a 64-bit integer"):
        validate({"__key__": "k1", "__shard__": "s.tar", "json": dict(meta)})
    shard = _shard_with_meta(tmp_path / "bad.tar", meta)
    assert run_cli(cli, ["stats", shard]) == 1
    err = _err_lines(capsys)
    assert len(err) == 1 and f"{shard}: k1: metadata 'pid'" in err[0], err


# ----------------------------------------------------------------------------- closed stdout, SIGINT
def _reid_shell(cmd: str, tmp_path) -> "subprocess.CompletedProcess":
    import shlex
    import subprocess
    import sys

    reid = f"{shlex.quote(sys.executable)} -m reidtools"
    return subprocess.run(["bash", "-c", cmd.replace("reid ", reid + " ", 1)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("cmd", ["reid stats {d} >&-", "reid synth -o - --ids 2 --outfits 1 --cams 2 --images-per 2 -q >&-"])
def test_closed_stdout_is_one_line_exit_1(synth_dir, tmp_path, cmd):
    res = _reid_shell(cmd.format(d=synth_dir), tmp_path)
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(err) == 1, res.stderr
    assert "stdout is closed" in err[0] and "internal error" not in err[0]


def test_closed_stdout_is_fine_for_a_command_that_writes_files(synth_dir, tmp_path):
    res = _reid_shell(f"reid mask --engine labels {synth_dir}/query-000000.tar -o out -q >&-", tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "query-000000.tar").exists()


def test_keyboard_interrupt_in_a_command_exits_130_with_one_line(capsys):
    from reidtools.commands._options import command

    @command("sleepy")
    def sleepy():
        """Raises what SIGINT raises."""
        raise KeyboardInterrupt

    group = click.Group("reid")
    group.add_command(sleepy)
    assert run_cli(group, ["sleepy"]) == 130
    assert _err_lines(capsys) == ["reid sleepy: interrupted"]


def test_sigint_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # `stats -` blocks reading stdin: a real SIGINT arrives while the command runs
    proc = subprocess.Popen([sys.executable, "-m", "reidtools", "stats", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130 and lines == ["reid stats: interrupted"], err


def test_closed_stdout_reports_once_even_when_a_tar_stream_flushes_at_exit(monkeypatch):
    """`reid synth -o - >&-` printed the one-line error and then, now and then, an 'Exception ignored
    in _Stream.__del__' traceback: a small output is still in tarfile's buffer when close() fails, and
    that buffer was flushed again when the stream was collected. Reproduced deterministically."""
    import gc
    import sys

    from reidtools.commands._options import ClosedStream
    from reidtools.errors import ReidError
    from reidtools.shards.writer import TarStream

    import time

    class SlowClosed(ClosedStream):   # the failing write lands after write() returned: close() sees it
        def write(self, *a):
            time.sleep(0.2)
            return self._closed()

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    stream = TarStream(SlowClosed("stdout"))
    # > tarfile's 10240-byte record: the encoder thread's write fails; the rest stays in the buffer
    stream.write({"__key__": "k", "json": {"pad": "x" * 15000}})
    with pytest.raises(ReidError, match="stdout is closed"):
        stream.close()
    del stream
    gc.collect()
    assert unraisable == []
