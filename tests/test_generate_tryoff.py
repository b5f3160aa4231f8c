"""TryOffAnyone re-implementation: checkpoint layout, cross-attention removal, pipeline, `reid tryoff`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from reidtools.errors import ReidError  # noqa: E402
from reidtools.generate.tryoff import pipeline as T  # noqa: E402
from reidtools.testing.tryoff import tiny_tryoff_unet, write_tiny_tryoff  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_tryoff(str(tmp_path_factory.mktemp("tryoff_models")))


def test_full_size_unet_matches_published_checkpoint_layout():
    """SD-1.5 inpainting U-Net built at full size on the meta device: the published names and shapes
    (recorded in reidtools.generate.tryoff.pipeline from TryOffAnyone's src/model/pipeline.py) map onto it."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        unet = diffusers.UNet2DConditionModel(**T.FULL_SIZE_UNET_CONFIG)
    assert T.fine_tuned_prefixes(unet) == [T.FULL_SIZE_PUBLISHED[str(i)][0] for i in range(7)]
    keys = T.published_keys(unet)
    # 16 Transformer2DModels x 26 tensors (hand count in the module) = 416
    assert len(keys) == T.FULL_SIZE_KEY_COUNT == 416
    state = unet.state_dict()
    for pk, shape in T.FULL_SIZE_SAMPLE_KEYS.items():
        assert tuple(state[keys[pk]].shape) == shape, pk
    for idx, (prefix, n_attn, width) in T.FULL_SIZE_PUBLISHED.items():
        assert {k.split(".")[1] for k in keys if k.split(".")[0] == idx} == {str(j) for j in range(n_attn)}
        assert tuple(state[f"{prefix}.0.norm.weight"].shape) == (width,)
    assert T.unet_key_of("3.0.transformer_blocks.0.attn1.to_q.weight", T.fine_tuned_prefixes(unet)) == \
        "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight"


def test_load_fine_tuned_maps_published_keys(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    unet = tiny_tryoff_unet(0)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    published = load_file(os.path.join(tiny["weights"], "model.safetensors"))
    n = T.load_fine_tuned(unet, tiny["weights"])
    assert n == len(published) == len(T.published_keys(unet))
    after = unet.state_dict()
    assert torch.equal(after["mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight"],
                       published["2.0.transformer_blocks.0.attn1.to_q.weight"])   # 2 down lists, then mid
    assert torch.equal(after["conv_in.weight"], before["conv_in.weight"])          # not fine-tuned: untouched
    assert not torch.equal(after["down_blocks.0.attentions.0.proj_in.weight"],
                           before["down_blocks.0.attentions.0.proj_in.weight"])
    bad = dict(published)
    bad["9.0.norm.weight"] = torch.zeros(16)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ReidError, match="not in TryOffAnyone's layout|no place"):
        T.load_fine_tuned(unet, str(tmp_path / "bad.safetensors"))
    short = dict(published)
    short.pop("0.0.norm.weight")
    save_file(short, str(tmp_path / "short.safetensors"))
    with pytest.raises(ReidError, match="1 fine-tuned tensors missing"):
        T.load_fine_tuned(unet, str(tmp_path / "short.safetensors"))
    (tmp_path / "pickles").mkdir()
    (tmp_path / "pickles" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ReidError, match="convert them to safetensors"):
        T.load_fine_tuned(unet, str(tmp_path / "pickles"))


def test_cross_attention_removed_is_h_plus_norm2_h():
    unet = tiny_tryoff_unet(0).eval()
    T.remove_cross_attention(unet)
    block = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    h = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h1 = block.attn1(block.norm1(h)) + h
        h2 = h1 + block.norm2(h1)               # attn2 returns its (normalised) input
        want = block.ff(block.norm3(h2)) + h2
        got = block(h, encoder_hidden_states=torch.randn(1, 3, 16))
        assert torch.allclose(got, want, atol=1e-5)
        x = torch.randn(1, 9, 16, 8)
        a = unet(x, 5, encoder_hidden_states=None).sample
        b = unet(x, 5, encoder_hidden_states=torch.randn(1, 3, 16)).sample
    assert torch.equal(a, b)                    # no text conditioning left


def _person(seed, h=64, w=32):
    r = np.random.default_rng(seed)
    img = Image.fromarray(r.integers(0, 255, (h, w, 3), dtype=np.uint8))
    mk = np.zeros((h, w), np.uint8)
    mk[20:40, 4:28] = 255
    return img, Image.fromarray(mk, "L")


def test_pipeline_is_seeded_per_sample_and_uses_the_person(tiny):
    pipe = T.TryOffPipeline.from_pretrained(**tiny)
    s = T.TryOffSettings(steps=2, size=(64, 32))
    (i1, m1), (i2, m2) = _person(1), _person(2)
    both = pipe([i1, i2], [m1, m2], [7, 8], s)
    alone = pipe([i2], [m2], [8], s)
    assert both[0].size == (32, 64)
    assert np.array_equal(np.asarray(both[1]), np.asarray(alone[0]))     # batch does not matter
    other_seed = pipe([i2], [m2], [9], s)
    assert not np.array_equal(np.asarray(other_seed[0]), np.asarray(alone[0]))
    other_person = pipe([i1], [m2], [8], s)
    assert not np.array_equal(np.asarray(other_person[0]), np.asarray(alone[0]))
    with pytest.raises(ReidError, match="multiples of 8"):
        pipe([i1], [m1], [1], T.TryOffSettings(steps=1, size=(60, 32)))


def test_garment_mask_from_lip_parse_or_mask():
    parse = np.zeros((4, 3), np.uint8)
    parse[0, 0], parse[1, 1], parse[2, 2], parse[3, 0] = 5, 7, 9, 12
    tops = np.asarray(T.garment_mask(Image.fromarray(parse), None, "tops"))
    bottoms = np.asarray(T.garment_mask(Image.fromarray(parse), None, "bottoms"))
    assert tops.sum() == 2 * 255 and tops[0, 0] == tops[1, 1] == 255
    assert bottoms.sum() == 2 * 255 and bottoms[2, 2] == bottoms[3, 0] == 255
    m = np.zeros((4, 3), np.uint8)
    m[0, 1] = 200
    assert np.asarray(T.garment_mask(None, Image.fromarray(m), "tops"))[0, 1] == 255


def _reid(args):
    from reidtools.commands import cli
    from reidtools.commands._options import run_cli

    return run_cli(cli, args)


def _small_shard(synth_dir, out, n=3):
    from reidtools.shards import ShardWriter, iter_shard

    with ShardWriter(str(out), prefix="people", maxcount=1000) as w:
        for i, s in enumerate(iter_shard(str(synth_dir / "train-000000.tar"))):
            if i >= n:
                break
            w.write(s)
    return out / "people-000000.tar"


def test_cli_tryoff_writes_a_catalogue(tiny, synth_dir, tmp_path):
    reid = _reid
    from reidtools.shards import iter_shard
    from reidtools.shards.sample import meta

    shard = _small_shard(synth_dir, tmp_path / "in")
    args = ["tryoff", str(shard), "-o", str(tmp_path / "cat"), "--model", tiny["model"], "--vae", tiny["vae"],
            "--weights", tiny["weights"], "--steps", "2", "--size", "64x32", "--dtype", "fp32", "--batch-size", "2", "-q"]
    assert reid(args) == 0
    out = list(iter_shard(str(tmp_path / "cat" / "people-000000.tar")))
    src = [s["__key__"] for s in iter_shard(str(shard))]
    assert [s["__key__"] for s in out] == ["g0000", "g0001", "g0002"]
    for s, key in zip(out, src):
        m = meta(s)
        assert m["garment"] == s["__key__"] and m["source"] == key and m["garment_type"] == "tops"
        assert m["history"][-1]["tool"] == "tryoff" and m["history"][-1]["parameters"]["steps"] == 2
        assert Image.open(__import__("io").BytesIO(s["garment.png"])).size == (32, 64)
        assert "jpg" not in s
    # a second run skips the finished shard (atomic per-shard output), leaving it untouched
    before = os.path.getmtime(tmp_path / "cat" / "people-000000.tar")
    assert reid(args) == 0
    assert os.path.getmtime(tmp_path / "cat" / "people-000000.tar") == before


def test_history_records_the_dtype_that_ran(tiny, synth_dir, tmp_path):
    """--dtype fp16 on a CPU runs in fp32 (runtime.torch_dtype): the history says fp32, not the request."""
    from reidtools.shards import iter_shard
    from reidtools.shards.sample import meta

    shard = _small_shard(synth_dir, tmp_path / "in", n=1)
    assert _reid(["tryoff", str(shard), "-o", str(tmp_path / "cat"), "--model", tiny["model"], "--vae", tiny["vae"],
                  "--weights", tiny["weights"], "--steps", "1", "--size", "64x32", "--dtype", "fp16", "--device", "cpu",
                  "-q"]) == 0
    (s,) = list(iter_shard(str(tmp_path / "cat" / "people-000000.tar")))
    params = meta(s)["history"][-1]["parameters"]
    assert params["dtype"] == "fp32" and "dtypes" not in params   # U-Net and VAE alike


def test_cli_tryoff_sample_without_region_is_one_line_error(tiny, synth_dir, tmp_path, capsys):
    reid = _reid
    from reidtools.shards import ShardWriter, iter_shard

    src = next(iter_shard(str(synth_dir / "train-000000.tar")))
    src.pop("parse.png")
    with ShardWriter(str(tmp_path / "in"), prefix="p") as w:
        w.write(src)
    code = reid(["tryoff", str(tmp_path / "in" / "p-000000.tar"), "-o", str(tmp_path / "o"), "--model", tiny["model"],
                 "--vae", tiny["vae"], "--weights", tiny["weights"], "--steps", "1", "--size", "64x32", "-q",
                 "--dtype", "fp32"])   # the default bf16 adds a (tested) slowness warning on CPUs without bf16 kernels
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and src["__key__"] in err[0] and "reid mask" in err[0]
    assert not os.path.exists(tmp_path / "o" / "p-000000.tar")


def test_cli_tryoff_missing_model_is_clear(tmp_path, synth_dir, capsys):
    reid = _reid

    code = reid(["tryoff", str(synth_dir / "train-000000.tar"), "-o", str(tmp_path / "o"), "--model", "nobody/none", "-q"])
    assert code == 1 and "huggingface-cli download nobody/none" in capsys.readouterr().err
