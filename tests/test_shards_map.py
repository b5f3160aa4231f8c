"""Per-shard maps: what a resume must not skip (stdin runs, in-place outputs) and --overwrite."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reidtools.errors import ReidError
from reidtools.shards import ShardWriter, expand_inputs, iter_samples, map_shards, meta
from test_shards import make_sample


def _write(dirpath, prefix: str, keys) -> str:
    with ShardWriter(str(dirpath), prefix=prefix, maxcount=100) as w:
        for i in keys:
            w.write(make_sample(i))
    return str(dirpath / f"{prefix}-000000.tar")


def _keys(directory) -> list[str]:
    return [s["__key__"] for s in iter_samples(expand_inputs([str(directory)]))]


def _map_stdin(data: bytes, out, *extra: str) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom reidtools.shards import map_shards\n"
            f"map_shards(['-'], {str(out)!r}, iter, progress=False, overwrite={'--overwrite' in extra})\n")
    return subprocess.run([sys.executable, "-c", code], input=data, capture_output=True)


def test_second_stdin_stream_into_the_same_directory_is_refused(tmp_path):
    a = open(_write(tmp_path / "a", "a", range(0, 3)), "rb").read()
    b = open(_write(tmp_path / "b", "b", range(3, 5)), "rb").read()
    out = tmp_path / "out"
    assert _map_stdin(a, out).returncode == 0
    res = _map_stdin(b, out)
    assert res.returncode != 0 and b"stdin-000000.tar exists from an earlier stdin run" in res.stderr
    assert b"--overwrite" in res.stderr
    assert _keys(out) == ["s0000", "s0001", "s0002"]  # untouched
    assert _map_stdin(b, out, "--overwrite").returncode == 0
    assert _keys(out) == ["s0003", "s0004"]


def test_overwrite_removes_a_longer_earlier_stdin_runs_extra_shards(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _write(out, "stdin", range(0, 3))
    os.rename(out / "stdin-000000.tar", out / "stdin-000001.tar")  # as if the first run had 2 shards
    _write(out, "stdin", range(0, 3))
    b = open(_write(tmp_path / "b", "b", range(7, 9)), "rb").read()
    assert _map_stdin(b, out, "--overwrite").returncode == 0
    assert sorted(os.listdir(out)) == ["stdin-000000.tar", "stdin.stats.json"] and _keys(out) == ["s0007", "s0008"]


def test_output_equal_to_input_directory_is_refused_unless_overwrite(tmp_path):
    src = tmp_path / "d"
    _write(src, "train", range(4))

    def tag(samples):
        for s in samples:
            yield {**s, "json": {**meta(s), "tagged": True}}

    with pytest.raises(ReidError, match="train-000000.tar: -o .* is this shard's own directory.*--overwrite"):
        map_shards(expand_inputs([str(src)]), str(src), tag, progress=False)
    rep = map_shards(expand_inputs([str(src)]), str(src), tag, progress=False, overwrite=True)
    assert rep.samples_out == 4 and sorted(os.listdir(src)) == ["train-000000.stats.json", "train-000000.tar"]
    assert all(meta(s)["tagged"] for s in iter_samples([str(src / "train-000000.tar")]))


def test_overwrite_rewrites_instead_of_skipping(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    shard = _write(src, "x", range(3))
    map_shards([shard], str(out), lambda it: (s for s in it if s["__key__"] != "s0001"), progress=False)
    assert _keys(out) == ["s0000", "s0002"]
    rep = map_shards([shard], str(out), iter, progress=False)
    assert rep.shards_skipped == [shard] and _keys(out) == ["s0000", "s0002"]
    rep = map_shards([shard], str(out), iter, progress=False, overwrite=True)
    assert rep.shards_done == [shard] and _keys(out) == ["s0000", "s0001", "s0002"]


def _reid(args, stdin_bytes=None, monkeypatch=None, capsys=None):
    import io

    from reidtools.commands import cli as reid_group
    from reidtools.commands._options import run_cli

    if stdin_bytes is not None:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stdin_bytes)})())
    capsys.readouterr()
    rc = run_cli(reid_group, args)
    return rc, capsys.readouterr().err


def test_cli_second_stdin_run_and_output_file_are_one_line_errors(synth_dir, tmp_path, monkeypatch, capsys):
    data = (synth_dir / "query-000000.tar").read_bytes()
    out = tmp_path / "d"
    rc, err = _reid(["mask", "--engine", "labels", "-", "-o", str(out), "-q"], data, monkeypatch, capsys)
    assert rc == 0, err
    rc, err = _reid(["mask", "--engine", "labels", "-", "-o", str(out), "-q"], data, monkeypatch, capsys)
    assert rc == 1 and err.count("\n") == 1 and "stdin-000000.tar exists" in err and "--overwrite" in err
    rc, err = _reid(["mask", "--engine", "labels", "-", "-o", str(out), "-q", "--overwrite"], data, monkeypatch, capsys)
    assert rc == 0, err
    afile = tmp_path / "file"
    afile.write_text("")
    rc, err = _reid(["mask", "--engine", "labels", str(synth_dir / "query-000000.tar"), "-o", str(afile)],
                    None, monkeypatch, capsys)
    assert rc == 1 and err.strip() == f"reid mask: error: {afile}: output exists and is not a directory"
