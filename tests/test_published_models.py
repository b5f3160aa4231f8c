"""`--model CHECKPOINT`: published ReID checkpoints (random weights, their exact key names and
shapes, saved in each project's file format) load through reidtools.reid.published and give the
features of the original architecture's forward (tests/_published_refs.py), with each project's
test-time preprocessing (input size, interpolation, mean/std, flip)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import _published_refs as refs
from reidtools.commands import cli as group
from reidtools.commands._options import run_cli

IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


def samples(n=2, seed=0):
    """Person-shaped images of different sizes (so every loader really resizes)."""
    g = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 90 + 17 * i, 41 + 9 * i
        base = g.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        out.append({"__key__": f"k{i}", "__shard__": "mem", "jpg": img})
    return out


def ref_input(batch, size, resample, mean, std, scale255=False):
    """Each project's test transform: PIL resize to (H, W), ToTensor, Normalize. fast-reid feeds 0-255
    pixels and normalises with PIXEL_MEAN/STD given x255 (scale255)."""
    h, w = size
    x = np.stack([np.asarray(s["jpg"].convert("RGB").resize((w, h), resample), dtype=np.float32) for s in batch])
    if scale255:
        x = (x - mean * 255) / (std * 255)
    else:
        x = (x / 255.0 - mean) / std
    return torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def features(path, batch, **kw):
    from reidtools.reid.extract import extract_features

    return extract_features(str(path), batch, progress=False, device="cpu", **kw)


def check(got, want):
    want = want.detach().numpy()
    assert got.shape == want.shape
    err = np.abs(got - want).max()
    assert err <= 1e-4 * max(1.0, np.abs(want).max()), err
    assert np.abs(want).max() > 1e-3


# ----------------------------------------------------------------------------- torchreid
def _torchreid_resnet(tmp_path, size, seed=0):
    ref = refs.randomize(refs.TorchreidResNet50(**size), seed=seed)
    path = tmp_path / "model.pth.tar-60"
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict_published().items()}, "epoch": 60,
                "rank1": np.float32(0.87), "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4}]}}, path)
    batch = samples()
    with torch.no_grad():
        want = ref(ref_input(batch, (256, 128), Image.BILINEAR, *IMAGENET))
    check(features(path, batch), want)   # auto-detected; torchreid's resnet50 keeps last stride 2
    return want


def test_torchreid_resnet_checkpoint(tmp_path):
    _torchreid_resnet(tmp_path, refs.TINY)


def _osnet(tmp_path, channels, ibn, seed=1):
    ref = refs.randomize(refs.OSNetRef(IN=ibn, channels=channels), seed=seed)
    path = tmp_path / "osnet_x1_0_market.pth"
    torch.save(ref.state_dict(), path)   # the model zoo's files are bare state dicts
    batch = samples()
    with torch.no_grad():
        want = ref(ref_input(batch, (256, 128), Image.BILINEAR, *IMAGENET))
    got = features(path, batch, model_format="torchreid")
    check(got, want)
    assert got.shape[1] == 512
    return ref


def test_torchreid_osnet_ibn_checkpoint(tmp_path):
    """osnet_ibn_x1_0 (InstanceNorm in the stem and conv2's blocks, BN elsewhere); plain x1.0 is in the
    fullsize test (OSNet's depth-wise convolutions are slow on a CPU)."""
    _osnet(tmp_path, refs.TINY_OSNET, True)


# ----------------------------------------------------------------------------- fast-reid
def _fastreid(tmp_path, agw, ibn, size, seed=2):
    ref = refs.randomize(refs.FastreidBaseline(agw=agw, ibn=ibn, **size), seed=seed)
    sd = ref.state_dict()
    assert ("backbone.NL_3.1.g.weight" in sd) == agw and ("backbone.layer1.0.bn1.IN.weight" in sd) == ibn
    path = tmp_path / "model_final.pth"
    torch.save({"model": sd, "iteration": 1000, "scheduler": {}}, path)
    batch = samples()
    with torch.no_grad():
        want = ref(ref_input(batch, (256, 128), Image.BICUBIC, *IMAGENET, scale255=True))
    check(features(path, batch), want)
    return sd


@pytest.mark.parametrize("agw,ibn", [(False, False), (True, False), (False, True)], ids=["bot", "agw", "bot-ibn"])
def test_fastreid_checkpoint(tmp_path, agw, ibn):
    _fastreid(tmp_path, agw, ibn, refs.TINY)


def test_fastreid_pre_bn_feature(tmp_path):
    ref = refs.randomize(refs.FastreidBaseline(**refs.TINY), seed=3)
    path = tmp_path / "bot.pth"
    torch.save({"model": ref.state_dict()}, path)
    batch = samples()
    x = ref_input(batch, (256, 128), Image.BICUBIC, *IMAGENET, scale255=True)
    with torch.no_grad():
        want = torch.nn.functional.adaptive_avg_pool2d(ref.backbone(x), 1).flatten(1)
    check(_open(path, "fastreid", "pre-bn", batch), want)


# ----------------------------------------------------------------------------- Simple-CCReID (CAL)
def _cal(tmp_path, size, seed=4):
    ref = refs.randomize(refs.CalResNet50(**size), seed=seed)
    path = tmp_path / "best_model.pth.tar"
    dim = ref.bn.num_features
    torch.save({"model_state_dict": ref.state_dict(), "classifier_state_dict": {"classifier.weight": torch.randn(150, dim)},
                "clothes_classifier_state_dict": {"weight": torch.randn(300, dim)}, "rank1": np.float64(0.55),
                "epoch": 59}, path)
    batch = samples()
    x = ref_input(batch, (384, 192), Image.BILINEAR, *IMAGENET)
    with torch.no_grad():   # test.py extract_img_feature: model(imgs) + model(flip(imgs))
        want = (ref(x) + ref(torch.flip(x, [3]))) / 2
    got = features(path, batch)
    check(got, want)
    return got


def test_cal_checkpoint_flip_averaged(tmp_path):
    assert _cal(tmp_path, refs.TINY).shape[1] == 2 * 32 * 8


@pytest.mark.fullsize
def test_published_resnets_at_full_size(tmp_path):
    """The published shapes: ResNet-50 (torchreid, fast-reid AGW with its 2 + 3 non-local blocks, CAL's
    4096-d max+avg BN) and OSNet x1.0 (2.2 M parameters without the classifier)."""
    assert _torchreid_resnet(tmp_path, {}).shape[1] == 2048
    sd = _fastreid(tmp_path, True, False, {})
    assert tuple(sd["backbone.NL_3.0.theta.weight"].shape) == (1, 1024, 1, 1)   # inter_channels = 1
    assert not any(k.startswith(("backbone.NL_1.", "backbone.NL_4.")) for k in sd)
    assert _cal(tmp_path, {}).shape[1] == 4096
    ref = _osnet(tmp_path, (64, 256, 384, 512), False)
    n = sum(v.numel() for k, v in ref.state_dict().items() if not k.startswith("classifier.") and "running" not in k
            and "num_batches" not in k)
    assert 2.1e6 < n < 2.3e6


# ----------------------------------------------------------------------------- CLIP-ReID, TransReID
def _clip_ckpt(tmp_path, width, layers, seed=5):
    ref = refs.randomize(refs.ClipReidRef(width=width, layers=layers), seed=seed)
    path = tmp_path / "ViT-B-16_60.pth"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, path)   # torch.save(model.state_dict())
    return ref, path


@pytest.mark.parametrize("neck", ["before", "after"])
def test_clipreid_checkpoint(tmp_path, neck):
    ref, path = _clip_ckpt(tmp_path, width=128, layers=2)
    batch = samples(2)
    with torch.no_grad():
        want = ref(ref_input(batch, (256, 128), Image.BILINEAR, np.full(3, 0.5), np.full(3, 0.5)), neck_feat=neck)
    got = features(path, batch) if neck == "before" else _open(path, "clipreid", "post-bn", batch)
    check(got, want)
    assert got.shape[1] == 128 + 512


def _open(path, fmt, feature, batch):
    from reidtools.reid.extract import extract_features, open_model

    return extract_features(open_model(str(path), fmt, feature), batch, progress=False, device="cpu")


@pytest.mark.parametrize("stride,jpm", [(16, False), (12, True)], ids=["vit-base", "transreid-jpm-stride12"])
def test_transreid_checkpoint(tmp_path, stride, jpm):
    ref = refs.randomize(refs.TransReIDRef(stride=stride, dim=128, depth=3, jpm=jpm), seed=6)
    path = tmp_path / "transformer_120.pth"
    torch.save(ref.state_dict(), path)
    batch = samples(2)
    x = ref_input(batch, (256, 128), Image.BILINEAR, np.full(3, 0.5), np.full(3, 0.5))
    with torch.no_grad():
        want, want_after = ref(x), ref(x, neck_feat="after")
    check(features(path, batch), want)
    check(_open(path, "transreid", "post-bn", batch), want_after)
    assert want.shape[1] == 128 * (5 if jpm else 1)


@pytest.mark.fullsize
def test_published_vit_b16_checkpoints_at_full_size(tmp_path):
    ref, path = _clip_ckpt(tmp_path, width=768, layers=12)
    batch = samples(2)
    half = (np.full(3, 0.5), np.full(3, 0.5))
    with torch.no_grad():
        want = ref(ref_input(batch, (256, 128), Image.BILINEAR, *half))
    check(features(path, batch), want)
    assert want.shape[1] == 1280
    ref = refs.randomize(refs.TransReIDRef(stride=12, jpm=True), seed=7)
    torch.save(ref.state_dict(), tmp_path / "transreid.pth")
    assert tuple(ref.state_dict()["base.pos_embed"].shape) == (1, 211, 768)
    with torch.no_grad():
        want = ref(ref_input(batch, (256, 128), Image.BILINEAR, *half))
    check(features(tmp_path / "transreid.pth", batch), want)
    assert want.shape[1] == 3840


# ----------------------------------------------------------------------------- the CLI and its errors
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from _train_data import write_train

    root = tmp_path_factory.mktemp("pubdata")
    write_train(str(root), ids=3, outfits=1, cams=2, per=1, prefix="query", split="query")
    write_train(str(root), ids=3, outfits=1, cams=2, per=1, prefix="gallery", split="gallery")
    return root / "query-000000.tar", root / "gallery-000000.tar"


def test_eval_and_export_take_a_published_checkpoint(tmp_path, shards):
    pytest.importorskip("onnx")
    ref, path = _clip_ckpt(tmp_path, width=64, layers=1, seed=8)
    q, g = shards
    assert reid("eval", q, "-g", g, "--model", path, "--model-format", "clipreid", "--json", tmp_path / "a.json",
                "--save-features", tmp_path / "feats", "-q") == 0
    assert reid("export", path, "-o", tmp_path / "clipreid.onnx") == 0
    assert reid("eval", q, "-g", g, "--model", tmp_path / "clipreid.onnx", "--json", tmp_path / "b.json", "-q") == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)
    from reidtools.shards import array, expand_inputs, image, iter_samples

    stored = list(iter_samples(expand_inputs([str(tmp_path / "feats" / "query-000000.tar")])))
    real = [dict(s, jpg=image(s)) for s in iter_samples(expand_inputs([str(q)]))]
    with torch.no_grad():
        want = ref(ref_input(real, (256, 128), Image.BILINEAR, np.full(3, 0.5), np.full(3, 0.5)))
    check(np.stack([array(s) for s in stored]), want)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "clipreid.onnx")).metadata_props}
    assert meta["reid.source_format"] == "clipreid" and meta["reid.feature"] == "pre-bn"
    assert meta["reid.mean"] == "0.5,0.5,0.5" and meta["reid.input_size"] == "256x128"
    assert meta["reid.flip_average"] == "false" and meta["reid.feature_dim"] == str(64 + 512)
    # the generation-quality extractor takes the same checkpoint
    assert reid("eval", "--generated", g, "--real", q, "--extractor", path, "--json", tmp_path / "gq.json", "-q") == 0
    quality = json.loads((tmp_path / "gq.json").read_text())
    assert quality["feature_dim"] == 64 + 512 and quality["extractor"] == str(path)


def test_unknown_or_mismatched_checkpoints_are_one_line_errors(tmp_path, shards, capsys):
    q, g = shards
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    assert reid("eval", q, "-g", g, "--model", tmp_path / "other.pth", "-q") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown checkpoint layout (first keys: encoder.weight)" in err
    ref = refs.randomize(refs.FastreidBaseline(), seed=9)
    torch.save({"model": ref.state_dict()}, tmp_path / "bot.pth")
    assert reid("eval", q, "-g", g, "--model", tmp_path / "bot.pth", "--model-format", "cal", "-q") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a cal" in err
    sie = refs.randomize(refs.TransReIDRef(dim=128, depth=1), seed=10).state_dict()
    sie["base.sie_embed"] = torch.zeros(6, 1, 128)
    torch.save(sie, tmp_path / "sie.pth")
    assert reid("eval", q, "-g", g, "--model", tmp_path / "sie.pth", "-q") == 1
    assert "SIE" in capsys.readouterr().err
    torch.save({"epoch": 3, "rank1": 0.5}, tmp_path / "meta.pth")   # a checkpoint without weights
    assert reid("eval", q, "-g", g, "--model", tmp_path / "meta.pth", "--model-format", "torchreid", "-q") == 1
    assert "no state dict found" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert reid("eval", q, "-g", g, "--model", tmp_path / "junk.pth", "-q") == 1
    assert "not a loadable checkpoint with weights_only=True" in capsys.readouterr().err


def test_checkpoints_are_read_without_unpickling_code(tmp_path):
    import pickle

    from reidtools.errors import ReidError
    from reidtools.reid.published import read_state_dict

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Evil()}, fh)
    with pytest.raises(ReidError, match="weights_only=True"):
        read_state_dict(str(path))


def test_refine_takes_a_published_checkpoint(tmp_path, shards):
    from _train_data import write_generated

    from reidtools.shards import expand_inputs, iter_samples

    q, g = shards
    keys = [s["__key__"] for s in iter_samples(expand_inputs([str(q)]))]
    write_generated(str(tmp_path / "variants"), keys, variants=2)
    _, path = _clip_ckpt(tmp_path, width=64, layers=1, seed=11)
    assert reid("refine", q, "-g", g, "--variants", tmp_path / "variants", "-p", "market", "--model", path,
                "--views", "2", "--json", tmp_path / "r.json", "-q") == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["refine"]["queries_refined"] == len(keys) and res["refine"]["variants_used"] == 2 * len(keys)
