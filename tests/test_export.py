"""`reid export` and `reid eval --model FILE.onnx`: runs trained through the real `reid train`,
exported, and compared with the torch model on the same images (issue 20: max |Δ| <= 1e-4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _train_data import write_train
from reidtools.commands import cli as group
from reidtools.commands._options import run_cli

onnx = pytest.importorskip("onnx")
TINY = ["--size", "32x16", "--batch", "3x4", "--workers", "0", "-q", "--epochs", "1"]


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("exportdata")
    write_train(str(root / "train"), ids=4, outfits=2, cams=2, per=1)
    write_train(str(root / "test"), ids=4, per=1, prefix="query", split="query", pid0=100)
    write_train(str(root / "test"), ids=4, per=1, prefix="gallery", split="gallery", pid0=100)
    return root


@pytest.fixture(scope="module", params=["resnet-tiny", "clip-tiny"])
def run(request, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / request.param
    assert reid("train", data / "train", "-o", out, "--backbone", request.param, *TINY) == 0
    return out


def _samples(data, name):
    from reidtools.shards import expand_inputs, iter_samples

    return list(iter_samples(expand_inputs([str(data / "test" / f"{name}-000000.tar")])))


def test_export_matches_torch_on_real_images(run, data, tmp_path):
    from reidtools.reid.extract import open_model

    path = tmp_path / "model.onnx"
    assert reid("export", run, "-o", path) == 0
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    torch_model = open_model(str(run))
    assert meta["reid.input_size"] == "32x16" and meta["reid.channel_order"] == "RGB"
    assert [float(v) for v in meta["reid.mean"].split(",")] == [0.485, 0.456, 0.406]
    assert [float(v) for v in meta["reid.std"].split(",")] == [0.229, 0.224, 0.225]
    assert meta["reid.feature"] == "post-bn" and meta["reid.flip_average"] == "true"
    assert int(meta["reid.feature_dim"]) == torch_model.dim
    assert float(meta["reid.parity_max_abs"]) <= 1e-4
    batch_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param == "batch" and not batch_axis.HasField("dim_value")

    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    samples = _samples(data, "query") + _samples(data, "gallery")
    x = torch_model.prep.batch(samples)
    want = torch_model.to("cpu")(x)
    for n in (1, 5, len(x)):    # dynamic batch: any size gives the torch features
        got = sess.run(None, {"images": x[:n]})[0]
        assert got.shape == (n, torch_model.dim)
        assert np.abs(got - want[:n]).max() <= 1e-4
    assert np.abs(want).max() > 1e-2   # not a trivially zero feature


def test_eval_onnx_gives_the_run_metrics(run, data, tmp_path):
    path = tmp_path / "model.onnx"
    assert reid("export", run, "-o", path) == 0
    for name, model in (("run", run), ("onnx", path)):
        assert reid("eval", data / "test" / "query-000000.tar", "-g", data / "test" / "gallery-000000.tar",
                    "--model", model, "--json", tmp_path / f"{name}.json", "--save-features", tmp_path / name,
                    "-q") == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("run", "onnx"))
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6) and a["cmc"] == pytest.approx(b["cmc"], abs=1e-6)
    from reidtools.shards import expand_inputs, iter_samples, array

    fa, fb = (np.stack([array(s) for role in ("query", "gallery")   # the same keys: read one set at a time
                        for s in iter_samples(expand_inputs([str(tmp_path / n / f"{role}-000000.tar")]))])
              for n in ("run", "onnx"))
    assert fa.shape == fb.shape and np.abs(fa - fb).max() <= 1e-4


def test_pre_bn_export_is_the_pooled_feature(run, data, tmp_path):
    import onnxruntime as ort
    import torch

    from reidtools.reid.extract import load_run, open_model

    path = tmp_path / "pre.onnx"
    assert reid("export", run, "-o", path, "--feature", "pre-bn") == 0
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["reid.feature"] == "pre-bn"
    x = open_model(str(run)).prep.batch(_samples(data, "query"))
    model = load_run(str(run))
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert np.abs(got - out["feat"].numpy()).max() <= 1e-4
    assert np.abs(got - out["bn"].numpy()).max() > 1e-3   # the BNNeck does change it


def test_export_errors_are_one_line(run, data, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"x")
    assert reid("export", run, "-o", path) == 1
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert path.read_bytes() == b"x"
    assert reid("export", run, "-o", tmp_path / "f.onnx", "--feature", "logits") == 1
    assert "--feature 'logits'" in capsys.readouterr().err
    assert reid("export", tmp_path, "-o", tmp_path / "g.onnx") == 1
    assert "not a `reid train` run" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "g.onnx").exists()


def test_eval_rejects_an_onnx_file_without_reid_metadata(data, tmp_path, capsys):
    import torch

    path = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Flatten(), (torch.zeros(1, 3, 4, 4),), str(path), dynamo=False)
    assert reid("eval", data / "test" / "query-000000.tar", "-g", data / "test" / "gallery-000000.tar",
                "--model", path, "-q") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ONNX metadata lacks reid.input_size" in err
