"""The shared generator stage: batching across samples, order, keep-source and the empty-mask policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reidtools.errors import SampleError
from reidtools.generate.stage import StageCounts, check_region, generate_stage


def _samples(n):
    return [{"__key__": f"k{i}", "__shard__": "s.tar", "n": i} for i in range(n)]


def test_jobs_of_several_samples_share_batches_and_outputs_keep_input_order():
    calls = []

    def make(jobs):
        calls.append(list(jobs))
        return [j * 10 for j in jobs]

    plan = lambda s: [s["n"] * 3 + k for k in range(s["n"] % 3)]      # 0, 1 or 2 jobs per sample
    out = list(generate_stage(_samples(7), plan=plan, make=make, build=lambda s, j, r: (s["__key__"], j, r),
                              batch_size=2, keep_source=False))
    # samples 1,2,4,5 give 1,2,1,2 jobs: 6 outputs, source order kept, result paired with its own job
    assert [(k, j) for k, j, _ in out] == [("k1", 3), ("k2", 6), ("k2", 7), ("k4", 12), ("k5", 15), ("k5", 16)]
    assert all(r == j * 10 for _, j, r in out)
    assert all(len(c) <= 2 for c in calls) and sum(map(len, calls)) == 6


def test_keep_source_puts_each_source_before_its_outputs():
    out = list(generate_stage(_samples(3), plan=lambda s: [s["n"]] * s["n"], make=lambda js: js,
                              build=lambda s, j, r: f"{s['__key__']}-gen", batch_size=8, keep_source=True))
    assert [o if isinstance(o, str) else o["__key__"] for o in out] == ["k0", "k1", "k1-gen", "k2", "k2-gen", "k2-gen"]


def test_empty_region_is_skipped_with_a_count_or_an_error_naming_shard_and_key():
    s = {"__key__": "p7", "__shard__": "in/a.tar"}
    empty, full = Image.new("L", (4, 4), 0), Image.fromarray(np.eye(4, dtype=np.uint8) * 255)
    counts = StageCounts()
    assert check_region(s, full, policy="skip", counts=counts) is True
    assert check_region(s, empty, policy="skip", counts=counts) is False
    assert check_region(s, np.zeros((2, 2), bool), policy="skip", counts=counts) is False
    assert counts.skipped["empty mask"] == 2 and counts.first_skipped["empty mask"] == "in/a.tar: p7"
    with pytest.raises(SampleError, match="in/a.tar.*p7.*empty mask"):
        check_region(s, empty, policy="error", counts=counts)


def _timed_stage(n, batch_size, *, fail_plan=None, fail_build=None):
    """A stage whose plans and builds take random short times; records which thread ran what."""
    import random
    import threading
    import time

    rnd = random.Random(0)
    threads = {"plan": set(), "make": set(), "build": set()}

    def plan(s):
        threads["plan"].add(threading.current_thread().name)
        time.sleep(rnd.random() * 0.004)
        if s["n"] == fail_plan:
            raise SampleError(s["__shard__"], s["__key__"], "unreadable mask")
        return [(s["n"], k) for k in range(s["n"] % 3)]

    def make(jobs):
        threads["make"].add(threading.current_thread().name)
        return [n * 10 + k for n, k in jobs]

    def build(s, job, r):
        threads["build"].add(threading.current_thread().name)
        time.sleep(rnd.random() * 0.004)
        if job == fail_build:
            raise SampleError(s["__shard__"], s["__key__"], "cannot composite")
        return (s["__key__"], r)

    stage = generate_stage(_samples(n), plan=plan, make=make, build=build, batch_size=batch_size, keep_source=True)
    return stage, threads


def _expected(n, upto=None):
    out = []
    for i in range(n if upto is None else upto):
        out.append({"__key__": f"k{i}", "__shard__": "s.tar", "n": i})
        out += [(f"k{i}", i * 10 + k) for k in range(i % 3)]
    return out


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_plans_and_builds_run_beside_make_and_order_is_kept(batch_size):
    import threading

    stage, threads = _timed_stage(12, batch_size)
    assert list(stage) == _expected(12)
    assert threads["make"] == {threading.current_thread().name}        # the thread that feeds the GPU
    assert {t.split("_")[0] for t in threads["plan"]} == {"reid-plan"}
    assert {t.split("_")[0] for t in threads["build"]} == {"reid-finish"}


def test_a_failing_sample_is_raised_after_the_outputs_of_earlier_batches_as_before():
    # batch size 2: k0, k1, k2 give 0+1+2 jobs, one batch; k3, k4 give 0+1, not yet a batch, when planning k5
    # fails. Before the threads the first batch was written, then the error raised; so it must be now
    stage, _ = _timed_stage(9, 2, fail_plan=5)
    got = []
    with pytest.raises(SampleError, match="s.tar: k5: unreadable mask"):
        for item in stage:
            got.append(item)
    assert got == _expected(9, upto=3)


def test_a_failing_build_is_raised_in_its_turn():
    stage, _ = _timed_stage(9, 2, fail_build=(4, 0))
    got = []
    with pytest.raises(SampleError, match="s.tar: k4: cannot composite"):
        for item in stage:
            got.append(item)
    assert got == _expected(9, upto=4) + [{"__key__": "k4", "__shard__": "s.tar", "n": 4}]


def test_abandoned_stage_stops_reading_its_input():
    import time

    read = []

    def source():
        for s in _samples(1000):
            read.append(s["__key__"])
            yield s

    stage = generate_stage(source(), plan=lambda s: [s["n"]], make=lambda js: js, build=lambda s, j, r: r,
                           batch_size=4)
    assert [next(stage) for _ in range(3)] == [0, 1, 2]
    stage.close()
    time.sleep(0.2)
    n = len(read)
    time.sleep(0.2)
    assert len(read) == n and n <= 4 * 4      # read ahead by at most a few batches, then stopped


def test_sigint_while_the_stage_waits_for_input_ends_the_run_at_once():
    """Input is read on the calling thread, so SIGINT interrupts a read that blocks on stdin, and exit
    waits for no thread stuck in a read."""
    import signal
    import subprocess
    import sys
    import textwrap
    import threading

    code = textwrap.dedent("""
        import sys
        from reidtools.generate.stage import generate_stage
        def source():
            for line in sys.stdin:
                yield {"__key__": line.strip(), "__shard__": "-"}
        try:
            for out in generate_stage(source(), plan=lambda s: [s["__key__"]], make=lambda js: js,
                                      build=lambda s, j, r: r, batch_size=1):
                print(out, flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write("a\nb\nc\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "a\n"      # b is made, then the stage waits for a fourth line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130          # stdin is still open: no EOF ended it
        assert proc.stdout.read() == "interrupted\n"
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
