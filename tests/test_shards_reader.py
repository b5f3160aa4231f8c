"""Shard reading edge cases: concatenated tars, data after the end marker, link members, duplicates."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from reidtools.errors import SampleError
from reidtools.shards import ShardWriter, iter_shard
from test_shards import make_sample, write_raw_tar


def _shard(dirpath, prefix: str, keys: range) -> bytes:
    with ShardWriter(str(dirpath), prefix=prefix, maxcount=100) as w:
        for i in keys:
            w.write(make_sample(i))
    return (dirpath / f"{prefix}-000000.tar").read_bytes()


def test_concatenated_tars_are_read_whole(tmp_path):
    # `cat a.tar b.tar > c.tar`: b follows a's end-of-archive blocks and record padding
    a, b = _shard(tmp_path, "a", range(0, 16)), _shard(tmp_path, "b", range(16, 32))
    cat = tmp_path / "c.tar"
    cat.write_bytes(a + b)
    assert [s["__key__"] for s in iter_shard(str(cat))] == [f"s{i:04d}" for i in range(32)]


def test_concatenated_tar_still_detects_truncation(tmp_path):
    a, b = _shard(tmp_path, "a", range(0, 4)), _shard(tmp_path, "b", range(4, 8))
    whole = a + b
    ends = list(range(len(a) + 512, len(whole) - 1024, 512))
    for cut in (len(a) + len(b) // 3, ends[len(ends) // 2]):
        bad = tmp_path / f"cut{cut}.tar"
        bad.write_bytes(whole[:cut])
        with pytest.raises(SampleError, match=f"cut{cut}.tar.*truncated"):
            list(iter_shard(str(bad)))


def test_garbage_after_end_marker_is_an_error_not_a_short_shard(tmp_path):
    # two writers sharing one temporary file left a zero-filled gap followed by the other's bytes
    a = _shard(tmp_path, "a", range(0, 4))
    other = _shard(tmp_path, "b", range(4, 8))
    bad = tmp_path / "gap.tar"
    bad.write_bytes(a[: len(a) // 2] + bytes(4096) + other[700:] )
    with pytest.raises(SampleError, match="gap.tar.*(truncated|corrupt)"):
        list(iter_shard(str(bad)))
    tail = tmp_path / "tail.tar"
    tail.write_bytes(a + b"\x07" * 512 + bytes(1024))
    with pytest.raises(SampleError, match="tail.tar.*not a tar header"):
        list(iter_shard(str(tail)))


def _tar_with(path, extra: tarfile.TarInfo) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("k1.json", b'{"pid": 1}'), ("k1.jpg", b"xx")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(extra)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("kind, words", [(tarfile.SYMTYPE, "symbolic link to 'k1.jpg'"),
                                         (tarfile.LNKTYPE, "hard link to 'k1.jpg'"),
                                         (tarfile.FIFOTYPE, "not a regular file")])
def test_link_members_are_named_not_dropped(tmp_path, kind, words):
    info = tarfile.TarInfo("k2.jpg")
    info.type, info.linkname = kind, "k1.jpg"
    path = tmp_path / "links.tar"
    _tar_with(path, info)
    with pytest.raises(SampleError, match=f"links.tar: k2: member 'k2.jpg' is (a )?{words}"):
        list(iter_shard(str(path)))


def test_directory_members_are_ignored(tmp_path):
    info = tarfile.TarInfo("somedir")
    info.type = tarfile.DIRTYPE
    path = tmp_path / "dir.tar"
    _tar_with(path, info)
    assert [s["__key__"] for s in iter_shard(str(path))] == ["k1"]


def test_a_shard_given_twice_is_refused(tmp_path):
    from reidtools.errors import ReidError
    from reidtools.shards import expand_inputs

    _shard(tmp_path, "a", range(2))
    path = str(tmp_path / "a-000000.tar")
    with pytest.raises(ReidError, match="a-000000.tar' is given twice"):
        expand_inputs([path, path])
    with pytest.raises(ReidError, match="is given twice"):
        expand_inputs([str(tmp_path / "*.tar"), str(tmp_path / "." / "a-000000.tar")])


def test_keys_repeated_across_shards_or_non_adjacently_are_refused(tmp_path):
    from reidtools.shards import iter_samples

    _shard(tmp_path, "a", range(0, 3))
    _shard(tmp_path, "b", range(2, 4))  # s0002 again: e.g. a tool's output next to its input
    a, b = str(tmp_path / "a-000000.tar"), str(tmp_path / "b-000000.tar")
    with pytest.raises(SampleError, match=r"b-000000.tar: s0002: key also in .*a-000000.tar"):
        list(iter_samples([a, b]))
    path = tmp_path / "again.tar"
    write_raw_tar(path, [("k1.json", b"{}"), ("k2.json", b"{}"), ("k1.jpg", b"xx")])
    with pytest.raises(SampleError, match="again.tar: k1: key appears again after other samples"):
        list(iter_shard(str(path)))
