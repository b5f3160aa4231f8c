"""Shard writing under hostile conditions: shared outputs, unwritable or full disks, SIGTERM."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from reidtools.errors import ReidError
from reidtools.shards import AtomicShard, ShardWriter, iter_shard, map_shards
from reidtools.shards import writer as W
from test_shards import make_sample


def keys(path) -> list[str]:
    return [s["__key__"] for s in iter_shard(str(path))]


def test_two_writers_of_one_shard_never_share_a_temp_file(tmp_path, caplog):
    target = str(tmp_path / "x.tar")
    first, second = AtomicShard(target), AtomicShard(target)
    assert first.tmp != second.tmp and os.path.basename(first.tmp).startswith("x.tar.")
    for i in range(3):
        first.write(make_sample(i))
        second.write(make_sample(10 + i))
    assert first.commit() is True
    with caplog.at_level(logging.WARNING, logger="reidtools"):
        assert second.commit() is False  # never silently replaces a shard completed meanwhile
    assert "completed by another writer" in caplog.text
    assert keys(target) == ["s0000", "s0001", "s0002"]
    assert os.listdir(tmp_path) == ["x.tar"]


def test_replace_true_publishes_over_an_existing_shard(tmp_path):
    target = str(tmp_path / "x.tar")
    with AtomicShard(target) as out:
        out.write(make_sample(1))
    with AtomicShard(target, replace=True) as out:
        out.write(make_sample(2))
    assert keys(target) == ["s0002"]


def test_output_that_is_a_file_or_unwritable_is_one_error_naming_it(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ReidError, match=f"{afile}: output exists and is not a directory"):
        ShardWriter(str(afile), prefix="p").write(make_sample(0))
    with pytest.raises(ReidError, match=f"{afile}: output exists and is not a directory"):
        map_shards([str(afile)], str(afile), iter, progress=False)
    def denied(tmp):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), tmp)

    real, W._open_temp = W._open_temp, denied  # what a read-only folder or ACL does, even to root's checks
    try:
        with pytest.raises(ReidError, match=r"x.tar: cannot create the output file \(Permission denied\)"):
            AtomicShard(str(tmp_path / "x.tar"))
    finally:
        W._open_temp = real


def test_read_only_output_directory_is_one_error_naming_it(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ReidError, match=f"{ro}: output directory is not writable"):
            AtomicShard(str(ro / "x.tar"))
    finally:
        ro.chmod(0o755)


def test_disk_full_names_the_shard_and_leaves_no_temp(tmp_path, monkeypatch):
    real_open = W._open_temp

    class Full:
        """A file whose disk fills after 4 KiB, as ENOSPC surfaces from write()."""

        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 4096:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(W, "_open_temp", lambda tmp: Full(real_open(tmp)))
    target = tmp_path / "full.tar"
    with pytest.raises(ReidError, match=f"{target}: cannot write \\(No space left on device\\)"):
        with AtomicShard(str(target)) as out:
            for i in range(20):
                out.write(make_sample(i))
    assert os.listdir(tmp_path) == []


def test_umask_is_honoured_for_shards(tmp_path):
    old = os.umask(0o027)
    try:
        with AtomicShard(str(tmp_path / "m.tar")) as out:
            out.write(make_sample(0))
    finally:
        os.umask(old)
    assert (tmp_path / "m.tar").stat().st_mode & 0o777 == 0o640


SLOW_WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from test_shards import make_sample
from reidtools.shards import AtomicShard
with AtomicShard({target!r}) as out:
    out.write(make_sample(0))
    print("writing", flush=True)
    time.sleep(60)
"""


def test_sigterm_removes_the_temp_file_and_exits_143(tmp_path):
    code = SLOW_WRITER.format(tests=os.path.dirname(__file__), target=str(tmp_path / "t.tar"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"writing\n"
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM  # a shell reports 128 + 15 = 143
    assert os.listdir(tmp_path) == []
    res = subprocess.run(["sh", "-c", f'{sys.executable} -c "$1" & sleep 3; kill $!; wait $!', "sh", code],
                         capture_output=True)
    assert res.returncode == 143


def test_an_error_surfacing_at_commit_leaves_no_temp(tmp_path, monkeypatch):
    from reidtools.errors import SampleError

    def slow_failure(key, sample):  # the background encoder fails after write() has returned
        time.sleep(0.2)
        raise SampleError("<output>", key, "field 'png' cannot be encoded")

    monkeypatch.setattr(W, "_encode_sample", slow_failure)
    out = AtomicShard(str(tmp_path / "bad.tar"))
    out.write(make_sample(0))
    with pytest.raises(SampleError, match="cannot be encoded"):
        out.commit()
    assert os.listdir(tmp_path) == []


def test_a_rerun_removes_only_dead_local_writers_temps(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that has exited
    target = tmp_path / "x.tar"
    names = {"dead": f"x.tar.{W._HOST}.{dead}.0a0a0a0a.tmp", "alive": f"x.tar.{W._HOST}.{os.getppid()}.0b0b0b0b.tmp",
             "other-host": f"x.tar.elsewhere-{W._HOST}.{dead}.0c0c0c0c.tmp", "legacy": "x.tar.tmp"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    with AtomicShard(str(target)) as out:
        out.write(make_sample(0))
    assert sorted(os.listdir(tmp_path)) == sorted([names["alive"], names["other-host"], "x.tar"])
