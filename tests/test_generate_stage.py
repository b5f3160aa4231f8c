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
