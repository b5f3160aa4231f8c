"""`reid eval` end to end: JSON schema, table on stderr, saved-feature round trip, --compare plots,
and one-line errors for bad input."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.shards import ShardWriter, expand_inputs, iter_samples

DIM = 16


def write_set(directory, prefix, n, seed, *, dim=DIM, drop=None, feats=True, modality=False, pid_offset=0):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(12, DIM))
    with ShardWriter(str(directory), prefix=prefix, maxcount=25) as w:
        for i in range(n):
            pid, cam = int(rng.integers(0, 12)), int(rng.integers(1, 7))
            m = {"pid": pid + pid_offset, "camid": cam, "clothes": f"{pid}_{cam % 2}"}
            if modality:
                m["modality"] = "ir" if cam in (3, 6) else "rgb"
            if drop and i == 3:
                m.pop(drop)
            s = {"__key__": f"{prefix}_{i:04d}", "json": m}
            if feats:
                f = centers[pid] + 0.8 * rng.normal(size=DIM)
                s["feat.npy"] = np.resize(f, dim).astype(np.float32) if (dim != DIM and i == 5) else f.astype(np.float32)
            w.write(s)
    return str(directory)


@pytest.fixture()
def sets(tmp_path):
    return write_set(tmp_path / "q", "query", 40, 1), write_set(tmp_path / "g", "gallery", 150, 2)


def run(args, capsys):
    rc = run_cli(cli, ["eval", "-q", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_json_schema_and_table(sets, tmp_path, capsys):
    q, g = sets
    rc, out, err = run([q, "--gallery", g, "--protocol", "market", "--json", "-"], capsys)
    assert rc == 0, err
    res = json.loads(out)  # stdout is only the JSON; the table is on stderr
    for key in ("protocol", "mAP", "mINP", "rank1", "rank5", "rank10", "cmc", "num_query", "num_query_valid",
                "num_gallery"):
        assert key in res
    assert res["protocol"] == "market" and len(res["cmc"]) == 50
    assert all(0.0 <= v <= 1.0 for v in res["cmc"]) and res["cmc"] == sorted(res["cmc"])
    assert res["rank1"] == res["cmc"][0] and res["rank5"] == res["cmc"][4] and res["rank10"] == res["cmc"][9]
    assert (res["num_query"], res["num_gallery"]) == (40, 150)
    assert 0 < res["mAP"] <= 1 and "mAP" in err and "rank1" in err


def test_multi_trial_protocol_reports_trials(tmp_path, capsys):
    t = write_set(tmp_path / "t", "test", 120, 3, modality=True)
    rc, out, err = run([t, "--gallery", t, "-p", "sysu-all", "--trials", "4", "--json", "-"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert len(res["trials"]) == 4
    assert res["mAP"] == pytest.approx(np.mean([tr["mAP"] for tr in res["trials"]]))
    assert res["cmc"][0] == pytest.approx(res["rank1"])
    rc, out, err = run([t, "--gallery", t, "-p", "llcm-i2v", "--trials", "2", "--json", "-"], capsys)
    assert rc == 0, err and json.loads(out)["protocol"] == "llcm-i2v"


def test_save_features_round_trip(sets, tmp_path, capsys):
    q, g = sets
    saved = tmp_path / "feats"
    rc, out1, err = run([q, "-g", g, "-p", "cc", "--save-features", str(saved), "--json", "-"], capsys)
    assert rc == 0, err
    shards = expand_inputs([str(saved)])
    samples = list(iter_samples(shards))
    assert len(samples) == 190
    assert all(set(s) == {"__key__", "__shard__", "json", "feat.npy"} for s in samples)
    rc, out2, err = run([str(saved / "query-*.tar"), "-g", str(saved / "gallery-*.tar"), "-p", "cc", "--json", "-"],
                        capsys)
    assert rc == 0, err
    assert json.loads(out1) == json.loads(out2)


def test_plot_and_compare(sets, tmp_path, capsys):
    q, g = sets
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run([q, "-g", g, "--json", str(a), "--plot", str(tmp_path / "one.png")], capsys)[0] == 0
    assert run([q, "-g", g, "--rerank", "--json", str(b)], capsys)[0] == 0
    assert json.loads(b.read_text())["rerank"] == {"k1": 20, "k2": 6, "lambda": 0.3}
    rc, _, err = run(["--compare", str(a), str(b), "--plot", str(tmp_path / "cmp.png")], capsys)
    assert rc == 0, err
    for png in ("one.png", "cmp.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run(["--compare", str(a)], capsys)[0] == 2  # needs --plot


@pytest.mark.parametrize("case,pattern", [
    ("no_camid", r"query_0003: metadata lacks 'camid': --protocol market needs it"),
    ("no_clothes", r"query_0003: metadata lacks 'clothes': --protocol cc needs it"),
    ("dims", r"query_0005: 'feat.npy' has 7 values but .*query_0000 has 16"),
    ("no_feat", r"missing field 'feat.npy': pass --model"),
    ("empty", r"the query set is empty"),
    ("no_match", r"no query has a match in the gallery"),
    ("rerank_mem", r"needs about .* GB, over --rerank-max-gb"),
])
def test_bad_input_is_one_line_exit_1(tmp_path, capsys, case, pattern):
    g = write_set(tmp_path / "g", "gallery", 60, 2)
    args = ["-p", "market"]
    if case == "no_camid":
        q = write_set(tmp_path / "q", "query", 10, 1, drop="camid")
    elif case == "no_clothes":
        q, args = write_set(tmp_path / "q", "query", 10, 1, drop="clothes"), ["-p", "cc"]
    elif case == "dims":
        q = write_set(tmp_path / "q", "query", 10, 1, dim=7)
    elif case == "no_feat":
        q = write_set(tmp_path / "q", "query", 10, 1, feats=False)
    elif case == "empty":
        q = str(tmp_path / "empty.tar")
        with tarfile.open(q, "w"):
            pass
    elif case == "no_match":
        q = write_set(tmp_path / "q", "query", 10, 1)
        g = write_set(tmp_path / "g2", "gallery", 30, 1, pid_offset=100)  # no identity in common
    else:
        q, args = write_set(tmp_path / "q", "query", 10, 1), ["--rerank", "--rerank-max-gb", "0.0001"]
    rc, out, err = run([q, "--gallery", g, *args], capsys)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reid eval: error:"), err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_model_features_for_samples_without_feat(tmp_path, capsys, monkeypatch):
    from reidtools.metrics import features

    q = write_set(tmp_path / "q", "query", 20, 1, feats=False)
    g = write_set(tmp_path / "g", "gallery", 60, 2)
    calls = []

    def fake_extract(run_dir, samples, *, batch_size=128, device=None, progress=True):
        calls.append((str(run_dir), len(samples), batch_size))   # a ModelSource, str() = its path
        centers = np.random.default_rng(99).normal(size=(12, DIM))
        return np.stack([centers[json.loads(s["json"])["pid"] if isinstance(s["json"], bytes) else s["json"]["pid"]]
                         for s in samples]).astype(np.float32)

    monkeypatch.setattr(features, "_extractor", lambda: fake_extract)
    rc, out, err = run([q, "-g", g, "--model", "RUN", "--batch-size", "7", "--json", "-"], capsys)
    assert rc == 0, err
    assert calls == [("RUN", 20, 7)]
    assert json.loads(out)["rank1"] > 0.5  # features equal to the identity centres rank their own pid first


def test_model_without_train_support(tmp_path, capsys, monkeypatch):
    import importlib.util

    q = write_set(tmp_path / "q", "query", 5, 1, feats=False)
    g = write_set(tmp_path / "g", "gallery", 20, 2)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "reidtools.reid.extract" else real(name, *a))
    rc, _, err = run([q, "-g", g, "--model", "RUN"], capsys)
    assert rc == 1 and "--model needs `reid train` support (not installed)" in err


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom reidtools.commands import cli\nfrom reidtools.commands._options import run_cli\n"
            "run_cli(cli, ['eval', '--help'])\nprint('TORCH' if 'torch' in sys.modules else 'CLEAN')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip().endswith("CLEAN") and "--rerank" in res.stdout
