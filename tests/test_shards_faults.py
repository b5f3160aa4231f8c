"""Fault injection: two processes writing one output shard, and kills in the publish window.

Afterwards every `*.tar` in the output folder is complete or absent, and `reid stats` counts
exactly the input (docs/design.md, "Writer concurrency guarantee").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reidtools.commands import cli as reid_group
from reidtools.commands._options import run_cli
from reidtools.shards import ShardWriter, iter_shard
from test_shards import make_sample

N = 40

# A map worker: copies the input shard slowly (so a second worker overlaps it), announcing its
# first sample; PATCH may wrap the publish step to hold it open for a kill.
WORKER = """
import os, sys, time
from reidtools.shards import map_shards
from reidtools.shards import writer as W
PATCH
def slow(samples):
    for n, s in enumerate(samples):
        time.sleep(DELAY)
        if n == 3:
            print("writing", flush=True)
        if n == 10 and len(sys.argv) > 3:
            while not os.path.exists(sys.argv[3]):  # hold here until the test lets go
                time.sleep(0.02)
        yield s
map_shards([sys.argv[1]], sys.argv[2], slow, progress=False)
print("done", flush=True)
"""

HOLD_BEFORE_PUBLISH = """
real = W._publish
def held(tmp, path, replace):
    print("publishing", flush=True)
    time.sleep(60)
    return real(tmp, path, replace)
W._publish = held
"""

HOLD_AFTER_LINK = """
real_link = os.link
def held(src, dst):
    real_link(src, dst)
    print("publishing", flush=True)
    time.sleep(60)
W.os.link = held
"""


@pytest.fixture
def source(tmp_path):
    with ShardWriter(str(tmp_path / "in"), prefix="x", maxcount=N) as w:
        for i in range(N):
            w.write(make_sample(i))
    return str(tmp_path / "in" / "x-000000.tar")


def worker(source, out, patch: str = "", delay: float = 0.0, gate=None) -> subprocess.Popen:
    code = WORKER.replace("PATCH", patch).replace("DELAY", repr(delay))
    return subprocess.Popen([sys.executable, "-c", code, source, str(out), *([str(gate)] if gate else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(proc: subprocess.Popen, line: bytes) -> None:
    got = proc.stdout.readline()
    assert got == line, (got, proc.stderr.read() if proc.poll() is not None else b"")


def counted(out, capsys) -> int:
    capsys.readouterr()
    assert run_cli(reid_group, ["stats", "--json", "--no-verify", str(out)]) == 0
    return json.loads(capsys.readouterr().out)["total"]["images"]


def assert_complete_or_absent(out) -> None:
    for name in os.listdir(out):
        if name.endswith(".tar"):
            assert [s["__key__"] for s in iter_shard(os.path.join(out, name))] == [f"s{i:04d}" for i in range(N)]


def test_two_writers_of_one_shard_one_killed(source, tmp_path, capsys):
    out, gate = tmp_path / "out", tmp_path / "gate"
    first = worker(source, out, delay=0.01, gate=gate)  # holds after 10 samples until the gate opens
    wait_for(first, b"writing\n")
    time.sleep(0.5)  # the first writer is well into its file when the second one starts
    second = worker(source, out, delay=0.01)
    wait_for(second, b"writing\n")
    second.kill()  # dies mid-shard; it used to truncate the shared temp file under the first
    second.wait()
    gate.write_text("")
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert_complete_or_absent(out)
    assert counted(out, capsys) == N


def test_two_writers_at_once_first_complete_copy_wins(source, tmp_path, capsys):
    out = tmp_path / "out"
    procs = [worker(source, out, delay=0.01) for _ in range(2)]
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert_complete_or_absent(out)
    assert counted(out, capsys) == N


@pytest.mark.parametrize("patch", [HOLD_BEFORE_PUBLISH, HOLD_AFTER_LINK], ids=["before-publish", "after-link"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_kill_in_the_publish_window_then_resume(source, tmp_path, capsys, patch, sig):
    out = tmp_path / "out"
    proc = worker(source, out, patch=patch)
    wait_for(proc, b"writing\n")
    wait_for(proc, b"publishing\n")
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == -sig
    assert_complete_or_absent(out)
    if sig == signal.SIGTERM:  # the handler removed the temporary file
        assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    rerun = worker(source, out)
    assert rerun.wait(timeout=60) == 0, rerun.stderr.read()
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # a dead writer's leftovers are removed
    assert_complete_or_absent(out)
    assert counted(out, capsys) == N
