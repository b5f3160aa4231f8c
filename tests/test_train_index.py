"""Training records index local uncompressed shards (shard, offset, size) instead of holding image bytes;
batches built from the index are identical to batches built from bytes in memory (so resume stays
bit-exact), in the main process and in DataLoader workers; other shards fall back to bytes."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from reidtools.reid.data import AugmentConfig, BatchLoader, ImageRef, image_bytes, read_records
from reidtools.shards import ShardWriter, iter_samples


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    r = np.random.RandomState(0)
    with ShardWriter(str(folder), prefix="train", maxcount=5) as wr:
        for i in range(12):
            img = Image.fromarray(r.randint(0, 255, (32, 16, 3), dtype=np.uint8))
            wr.write({"__key__": f"k{i:02d}", "jpg" if i % 2 else "png": img,
                      "json": {"dataset": "t", "split": "train", "pid": i // 3, "camid": i % 2, "clothes": f"{i // 3}_0"}})
    return sorted(str(p) for p in folder.glob("train-*.tar"))


def test_local_tars_are_indexed_and_read_back_exactly(shards):
    streamed = {s["__key__"]: s.get("jpg", s.get("png")) for s in iter_samples(shards)}
    recs = read_records(shards, generated=False)
    assert len(recs) == 12 and all(isinstance(r.data, ImageRef) for r in recs)
    assert {r.key: image_bytes(r.data) for r in recs} == streamed
    legacy = read_records(shards, generated=False, in_memory=True)
    assert all(isinstance(r.data, bytes) for r in legacy)
    assert [r.data for r in legacy] == [streamed[r.key] for r in legacy]


def test_compressed_shard_keeps_bytes(shards, tmp_path):
    gz = tmp_path / "train-000000.tar.gz"
    with open(shards[0], "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    recs = read_records([str(gz)], generated=False)
    assert recs and all(isinstance(r.data, bytes) for r in recs)


def _loader(records, batches):
    for i, r in enumerate(records):
        r.label, r.clothes_label = r.pid, 0
    return BatchLoader(records, batches, size=(32, 16), seed=3, epoch=1, augment_cfg=AugmentConfig(),
                       diffusion_size=8)


def test_batches_from_the_index_equal_batches_from_memory_also_in_workers(shards):
    batches = [[0, 5, 11, 3], [7, 2, 9, 1], [10, 4, 6, 8]]
    indexed = _loader(read_records(shards, generated=False), batches)
    memory = _loader(read_records(shards, generated=False, in_memory=True), batches)
    for i in range(len(batches)):
        a, b = indexed[i], memory[i]
        assert all(torch.equal(a[k], b[k]) for k in a), i
    # a forked DataLoader worker opens its own descriptors and reads the same bytes
    dl = torch.utils.data.DataLoader(indexed, batch_size=None, num_workers=1, shuffle=False)
    for i, got in enumerate(dl):
        assert all(torch.equal(got[k], memory[i][k]) for k in got), i
