"""Per-shard run records (NAME.stats.json) written by map_shards, and `reid stats --run`."""

from __future__ import annotations

import json
import os

import pytest

from reidtools.commands import cli as reid_group
from reidtools.commands._options import run_cli
from reidtools.errors import ReidError
from reidtools.shards import ShardWriter, expand_inputs, map_shards
from test_shards import make_sample


def _inputs(tmp_path):
    for shard in range(3):
        with ShardWriter(str(tmp_path / "in"), prefix=f"train{shard}", maxcount=10) as w:
            for i in range(3):
                w.write(make_sample(10 * shard + i))
    return expand_inputs([str(tmp_path / "in")])


def test_map_shards_writes_a_record_per_shard(tmp_path):
    shards = _inputs(tmp_path)
    out = tmp_path / "out"

    def drop_first(samples):
        for n, s in enumerate(samples):
            if n:
                yield s

    map_shards(shards, str(out), drop_first, desc="mask", progress=False)
    rec = json.loads((out / "train1-000000.stats.json").read_text())
    assert rec["status"] == "done" and rec["input"] == shards[1] and rec["tool"] == "mask"
    assert rec["samples_in"] == 3 and rec["samples_out"] == 2 and rec["failures"] == []
    assert rec["outputs"] == [str(out / "train1-000000.tar")] and rec["elapsed_s"] >= 0
    assert sorted(os.listdir(out)) == sorted(f"train{n}-000000.{ext}" for n in range(3) for ext in ("tar", "stats.json"))


def test_a_failed_shard_records_its_reason_and_stats_run_summarises(tmp_path, capsys):
    shards = _inputs(tmp_path)
    out = tmp_path / "out"

    def fail_on(samples):
        for s in samples:
            if s["__key__"] == "s0011":
                raise ReidError(f"{s['__shard__']}: {s['__key__']}: no mask")
            yield s

    with pytest.raises(ReidError):
        map_shards(shards, str(out), fail_on, desc="mask", progress=False)
    rec = json.loads((out / "train1-000000.stats.json").read_text())
    assert rec["status"] == "failed" and rec["samples_out"] == 0 and "s0011: no mask" in rec["failures"][0]["reason"]
    assert not (out / "train1-000000.tar").exists() and not (out / "train2-000000.stats.json").exists()
    assert run_cli(reid_group, ["stats", "--run", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == {"records": 2, "done": 1, "failed": 1, "missing": 0, "unrecorded": 0,
                               "samples_in": 3, "samples_out": 3, "elapsed_s": report["total"]["elapsed_s"]}
    assert list(report["failures"]) == [rec["failures"][0]["reason"]]
    os.remove(out / "train0-000000.tar")
    (out / "extra-000000.tar").write_bytes(b"")
    assert run_cli(reid_group, ["stats", "--run", str(out)]) == 0
    table = capsys.readouterr().out
    assert "1 failed, 1 done but output missing; 1 shard(s) without a record" in table
    assert "failed: " in table and "no record: " in table and "extra-000000.tar" in table


def test_stats_run_on_a_folder_without_records_is_one_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cli(reid_group, ["stats", "--run", str(tmp_path / "empty")]) == 1
    assert "holds no run record" in capsys.readouterr().err
