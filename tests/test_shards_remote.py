"""Remote shards: `pipe:` commands (command line only) and http(s) URLs, with local error messages."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading

import pytest

from reidtools.commands import cli as reid_group
from reidtools.commands._options import run_cli
from reidtools.errors import ReidError, SampleError
from reidtools.shards import ShardWriter, expand_inputs, iter_samples, iter_shard, map_shards
from reidtools.shards.paths import CommandLinePipe, command_line_inputs
from test_shards import make_sample


@pytest.fixture
def shards(tmp_path):
    d = tmp_path / "d"
    with ShardWriter(str(d), prefix="train", maxcount=4) as w:
        for i in range(6):
            w.write(make_sample(i))
    data = (d / "train-000000.tar").read_bytes()
    (d / "cut.tar").write_bytes(data[: len(data) - 10240])  # cut at a member boundary: no end marker
    return d


@pytest.fixture
def server(shards):
    handler = functools.partial(_QuietHandler, directory=str(shards))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset's gopen reads http through curl")


def test_stats_reads_a_pipe_shard_from_the_command_line(shards, capsys, monkeypatch):
    monkeypatch.chdir(shards.parent)
    assert run_cli(reid_group, ["stats", "--json", "--no-verify", "pipe:cat d/train-000000.tar"]) == 0
    out = capsys.readouterr().out
    assert '"images": 4' in out


def test_pipe_from_data_is_refused(shards):
    cmd = f"pipe:cat {shards}/train-000000.tar"
    with pytest.raises(ReidError, match="accepted only as command-line INPUTS"):
        list(iter_shard(cmd))  # a plain string, e.g. read from a shard list or json
    (got,) = command_line_inputs([cmd])
    assert isinstance(got, CommandLinePipe)
    assert [s["__key__"] for s in iter_samples(expand_inputs([got]))] == [f"s{i:04d}" for i in range(4)]


def test_failing_pipe_command_is_one_error_naming_it(shards):
    (bad,) = command_line_inputs([f"pipe:cat {shards}/missing.tar"])
    with pytest.raises(SampleError, match=r"pipe:cat .*missing.tar: the command exited with status 1"):
        list(iter_shard(bad))


@needs_curl
def test_http_shards_read_like_local_ones(shards, server):
    urls = expand_inputs([f"{server}/train-{{000000..000001}}.tar"])
    assert urls == [f"{server}/train-000000.tar", f"{server}/train-000001.tar"]
    assert [s["__key__"] for s in iter_samples(urls)] == [f"s{i:04d}" for i in range(6)]


@needs_curl
def test_truncated_remote_shard_is_the_same_error_as_a_local_one(shards, server):
    with pytest.raises(SampleError) as local:
        list(iter_shard(str(shards / "cut.tar")))
    with pytest.raises(SampleError) as remote:
        list(iter_shard(f"{server}/cut.tar"))
    strip = lambda e, shard: str(e.value).replace(shard, "SHARD")  # noqa: E731
    assert strip(remote, f"{server}/cut.tar") == strip(local, str(shards / "cut.tar"))
    assert "truncated" in str(remote.value)
    with pytest.raises(SampleError, match=f"{server}/nope.tar: download failed \\(curl exit 22"):
        list(iter_shard(f"{server}/nope.tar"))  # 404: curl -f fails


@needs_curl
def test_map_names_outputs_after_remote_inputs(shards, server, tmp_path):
    (pipe,) = command_line_inputs([f"pipe:cat '{shards}/train-000001.tar'"])
    rep = map_shards([f"{server}/train-000000.tar", pipe], str(tmp_path / "out"), iter, progress=False)
    assert rep.samples_out == 6
    assert sorted(p for p in os.listdir(tmp_path / "out") if p.endswith(".tar")) == ["train-000000.tar",
                                                                                     "train-000001.tar"]


def test_remote_outputs_are_refused_clearly(shards):
    with pytest.raises(ReidError, match="s3://bucket/out: writing shards to a URL or pipe: is not supported"):
        map_shards([str(shards / "train-000000.tar")], "s3://bucket/out", iter, progress=False)
