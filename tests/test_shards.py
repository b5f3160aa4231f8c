"""Shard I/O: round trips, stdin/stdout, atomic writes and resume, task splitting, contract errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from reidtools.errors import ReidError, SampleError
from reidtools.seeding import derive_seed
from reidtools.shards import (ShardWriter, SplitWriter, expand_inputs, image, iter_samples, iter_shard,
                              map_shards, mask, meta, split_shards, task_from_env)
from reidtools.shards.writer import TarStream


def make_sample(i: int, split: str = "train") -> dict:
    img = Image.new("RGB", (16, 32), (10 * i % 256, 50, 200))
    m = Image.new("L", (16, 32), 0)
    m.paste(255, (0, 10, 16, 20))
    return {"__key__": f"s{i:04d}", "png": img, "mask.png": m,
            "json": {"dataset": "t", "split": split, "pid": i // 2, "camid": 1 + i % 2,
                     "clothes": f"{i // 2}_0", "modality": "rgb"},
            "feat.npy": np.arange(4, dtype=np.float32) + i}


def write_raw_tar(path, members: list[tuple[str, bytes]], end_marker: bool = True) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    if not end_marker:
        data = data.rstrip(b"\0")
        data += b"\0" * (-len(data) % 512)
    with open(path, "wb") as fh:
        fh.write(data)


def test_round_trip_keeps_fields_exact(tmp_path):
    samples = [make_sample(i) for i in range(5)]
    with ShardWriter(str(tmp_path), prefix="train", maxcount=2) as w:
        for s in samples:
            w.write(s)
    assert sorted(os.listdir(tmp_path)) == [f"train-00000{i}.tar" for i in range(3)]
    back = list(iter_samples(expand_inputs([str(tmp_path / "train-{000000..000002}.tar")])))
    assert [s["__key__"] for s in back] == [s["__key__"] for s in samples]
    for orig, got in zip(samples, back):
        assert meta(got) == orig["json"]
        assert np.array_equal(np.asarray(image(got)), np.asarray(orig["png"]))  # png is lossless
        assert mask(got).mode == "L"
        assert np.array_equal(np.asarray(mask(got)), np.asarray(orig["mask.png"]))
        assert got["__shard__"].endswith(".tar")


def test_webdataset_reads_our_shards(tmp_path):
    import webdataset as wds

    with ShardWriter(str(tmp_path), prefix="x", maxcount=10) as w:
        for i in range(3):
            w.write(make_sample(i))
    ds = wds.WebDataset(str(tmp_path / "x-000000.tar"), shardshuffle=False)
    got = list(ds)
    assert [s["__key__"] for s in got] == ["s0000", "s0001", "s0002"]
    assert set(got[0]) >= {"png", "json", "mask.png", "feat.npy"}


def test_we_read_webdataset_shards(tmp_path):
    import webdataset as wds

    path = str(tmp_path / "w.tar")
    with wds.TarWriter(path) as sink:
        sink.write({"__key__": "a_1", "json": {"pid": 3, "camid": 2}, "txt": "hello"})
    (s,) = list(iter_shard(path))
    assert s["__key__"] == "a_1" and meta(s)["pid"] == 3 and s["txt"] == b"hello"


def test_expand_inputs(tmp_path):
    for i in range(3):
        (tmp_path / f"a-{i:06d}.tar").write_bytes(b"")
    assert expand_inputs([str(tmp_path / "a-{000000..000001}.tar")]) == [str(tmp_path / f"a-{i:06d}.tar") for i in range(2)]
    assert len(expand_inputs([str(tmp_path / "a-*.tar")])) == 3
    assert len(expand_inputs([str(tmp_path)])) == 3
    assert expand_inputs(["-"]) == ["-"]
    with pytest.raises(ReidError, match="matches no file"):
        expand_inputs([str(tmp_path / "b-*.tar")])
    with pytest.raises(ReidError, match="does not exist"):
        expand_inputs([str(tmp_path / "zzz.tar")])


def test_split_shards_and_env():
    shards = [f"s{i}" for i in range(5)]
    parts = [split_shards(shards, i, 2) for i in range(2)]
    assert parts == [["s0", "s2", "s4"], ["s1", "s3"]]
    with pytest.raises(ReidError, match="2 input shard.*3 tasks"):
        split_shards(shards[:2], 0, 3)
    with pytest.raises(ReidError, match="not in 0..1"):
        split_shards(shards, 2, 2)
    assert task_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    assert task_from_env({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}) == (3, 4)
    assert task_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert task_from_env({}) == (0, 1)


def test_truncated_tar_is_an_error_naming_the_shard(tmp_path):
    with ShardWriter(str(tmp_path), prefix="t", maxcount=10) as w:
        for i in range(4):
            w.write(make_sample(i))
    data = (tmp_path / "t-000000.tar").read_bytes()
    # cut inside a member, exactly at a header boundary, and just before the end marker
    ends = [i for i in range(0, len(data), 512)]
    for cut in (len(data) // 3, ends[len(ends) // 2], len(data) - 10240):
        bad = tmp_path / f"cut{cut}.tar"
        bad.write_bytes(data[:cut])
        with pytest.raises(SampleError, match=f"cut{cut}.tar.*truncated"):
            list(iter_shard(str(bad)))


def test_key_with_dot_and_missing_json(tmp_path):
    dotted = tmp_path / "dot.tar"
    write_raw_tar(dotted, [("a.b.json", b"{}"), ("a.b.jpg", b"xx")])
    with pytest.raises(SampleError, match=r"dot.tar: a\.b: key contains a dot"):
        list(iter_shard(str(dotted)))
    nojson = tmp_path / "nojson.tar"
    write_raw_tar(nojson, [("k1.jpg", b"xx")])
    with pytest.raises(SampleError, match="nojson.tar: k1: missing field 'json'"):
        list(iter_shard(str(nojson)))
    badtype = tmp_path / "type.tar"
    write_raw_tar(badtype, [("k1.json", json.dumps({"pid": "7"}).encode())])
    with pytest.raises(SampleError, match="'pid' must be int"):
        list(iter_shard(str(badtype)))


def test_corrupt_image_names_shard_and_key(tmp_path):
    path = tmp_path / "c.tar"
    write_raw_tar(path, [("k9.json", b'{"pid": 1}'), ("k9.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")])
    (s,) = list(iter_shard(str(path)))
    with pytest.raises(SampleError, match=r"c.tar: k9: field 'jpg' is not a readable image"):
        image(s)


def test_writer_is_atomic_and_resumes(tmp_path):
    made: list[int] = []

    def factory(i):
        def make():
            made.append(i)
            return make_sample(i)
        return make

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with ShardWriter(str(tmp_path), prefix="r", maxcount=2) as w:
            for i in range(5):
                if i == 3:
                    raise Boom()  # killed while filling the second shard
                w.write(factory(i))
    assert sorted(os.listdir(tmp_path)) == ["r-000000.tar"]  # no partial .tar, no .tmp left
    made.clear()
    with ShardWriter(str(tmp_path), prefix="r", maxcount=2) as w:
        for i in range(5):
            w.write(factory(i))
    assert made == [2, 3, 4]  # shard 0 was complete: its samples were not made again
    keys = [s["__key__"] for s in iter_samples(expand_inputs([str(tmp_path)]))]
    assert keys == [f"s{i:04d}" for i in range(5)]


def test_split_writer_names_shards_by_split(tmp_path):
    with SplitWriter(str(tmp_path), maxcount=10) as w:
        for i, split in enumerate(["train", "query", "gallery", "train"]):
            w.write(split, make_sample(i, split))
    assert sorted(os.listdir(tmp_path)) == ["gallery-000000.tar", "query-000000.tar", "train-000000.tar"]
    assert w.written == 4


def test_map_shards_follows_names_and_skips_done(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for shard in range(3):
        with ShardWriter(str(src), prefix=f"train{shard}", maxcount=10) as w:
            for i in range(2):
                w.write(make_sample(10 * shard + i))
    shards = expand_inputs([str(src)])

    def double(samples):
        for s in samples:
            yield s
            yield {**s, "__key__": s["__key__"] + "-copy"}

    rep = map_shards(shards, str(out), double, shard_index=1, num_shards=2, progress=False)
    assert [os.path.basename(p) for p in rep.shards_done] == ["train1-000000.tar"]
    assert sorted(os.listdir(out)) == ["train1-000000.stats.json", "train1-000000.tar"]
    assert rep.samples_in == 2 and rep.samples_out == 4
    rep = map_shards(shards, str(out), double, progress=False)
    assert len(rep.shards_skipped) == 1 and len(rep.shards_done) == 2


def test_map_shards_failure_leaves_no_output(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    with ShardWriter(str(src), prefix="a", maxcount=10) as w:
        for i in range(3):
            w.write(make_sample(i))

    def fail_late(samples):
        for n, s in enumerate(samples):
            if n == 2:
                raise ReidError("boom")
            yield s

    with pytest.raises(ReidError):
        map_shards(expand_inputs([str(src)]), str(out), fail_late, progress=False)
    assert os.listdir(out) == ["a-000000.stats.json"]  # the failure's record, no shard


def test_stdin_to_stdout_pipe(tmp_path):
    with ShardWriter(str(tmp_path), prefix="p", maxcount=10) as w:
        for i in range(3):
            w.write(make_sample(i))
    code = (
        "import sys\n"
        "from reidtools.shards import map_shards\n"
        "map_shards(['-'], '-', lambda it: iter(list(it)[::-1]), progress=False)\n"
    )
    data = (tmp_path / "p-000000.tar").read_bytes()
    res = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True)
    out = tmp_path / "piped.tar"
    out.write_bytes(res.stdout)
    assert [s["__key__"] for s in iter_shard(str(out))] == ["s0002", "s0001", "s0000"]


def test_tarstream_writes_json_first():
    buf = io.BytesIO()
    t = TarStream(buf)
    t.write(make_sample(1))
    t.close()
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert names[0] == "s0001.json"


def test_derive_seed_is_stable_and_sensitive():
    assert derive_seed(0, "key", 1) == derive_seed(0, "key", 1)
    assert derive_seed(0, "key", 1) != derive_seed(0, "key", 2)
    assert derive_seed(1, "key", 1) != derive_seed(0, "key", 1)
    assert 0 <= derive_seed(123, "x") < 2**63


def test_write_plans_to_files_and_to_stdout(tmp_path, monkeypatch):
    from reidtools.shards.mapping import write_plans

    plans = [(str(tmp_path / "out" / f"g-{n:06d}.tar"), [make_sample(2 * n), make_sample(2 * n + 1)]) for n in range(2)]
    assert write_plans(plans, str(tmp_path / "out"), iter, prefix="g") == 4
    keys = [s["__key__"] for s in iter_samples(expand_inputs([str(tmp_path / "out")]))]
    assert keys == ["s0000", "s0001", "s0002", "s0003"]
    buf = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", type("Stdout", (), {"buffer": buf})())
    assert write_plans(plans, "-", iter, prefix="g") == 4
    monkeypatch.undo()
    (tmp_path / "piped.tar").write_bytes(buf.getvalue())
    assert [s["__key__"] for s in iter_shard(str(tmp_path / "piped.tar"))] == keys
