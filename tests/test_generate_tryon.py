"""IDM-VTON-compatible try-on: published layout loading, the 13-channel loop with reference attention,
compositing, masks/pose inputs, and `reid tryoff` -> `reid tryon` -> shards with HSGL eq. 3 counts."""

from __future__ import annotations

import io
import json
import os
from collections import namedtuple

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from reidtools.generate.tryon import pipeline as T  # noqa: E402
from reidtools.testing.idmvton import write_tiny_idmvton  # noqa: E402
from reidtools.generate.tryon.inputs import add_arms, garment_region, pose_image  # noqa: E402

SIZE = (64, 32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_idmvton(str(tmp_path_factory.mktemp("idmvton")))


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    torch.set_num_threads(1)
    return T.TryOnPipeline.from_pretrained(tiny_dir)


def _img(seed, h=64, w=32):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _mask(h=64, w=32):
    m = np.zeros((h, w), np.uint8)
    m[20:40, 4:28] = 255
    return Image.fromarray(m, "L")


def test_published_layout_loads_with_ip_adapter(tiny_dir, pipe):
    from safetensors.torch import load_file

    from reidtools.generate.tryon.ipadapter import DecoupledIPAttention

    for sub in ("unet", "unet_encoder", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                "image_encoder", "scheduler"):
        assert os.path.isdir(os.path.join(tiny_dir, sub)), sub
    with open(os.path.join(tiny_dir, "unet", "config.json")) as fh:
        assert json.load(fh)["encoder_hid_dim_type"] == "ip_image_proj"
    attn2 = [n for n in pipe.unet.attn_processors if n.endswith("attn2.processor")]
    assert attn2 and all(isinstance(pipe.unet.attn_processors[n], DecoupledIPAttention) for n in attn2)
    saved = load_file(os.path.join(tiny_dir, "unet", "diffusion_pytorch_model.safetensors"))
    # IDM's fused to_kv is split into diffusers' to_k / to_v; processor weights keep the published names
    k, v = saved["encoder_hid_proj.layers.1.0.to_kv.weight"].chunk(2)
    assert torch.equal(pipe.image_proj.layers[1].attn.to_k.weight, k)
    assert torch.equal(pipe.image_proj.layers[1].attn.to_v.weight, v)
    name = "up_blocks.0.attentions.0.transformer_blocks.1.attn2.processor.to_k_ip.weight"
    assert torch.equal(pipe.unet.state_dict()[name], saved[name])
    assert pipe.num_image_tokens == 16
    assert pipe.unet_encoder.config.addition_embed_type is None           # train_xl.py switches it off
    assert pipe.unet.config.in_channels == 13 and pipe.unet_encoder.config.in_channels == 4


def test_full_size_published_names_and_shapes():
    """SDXL-sized try-on U-Net on the meta device with IDM-VTON's Resampler keys (shapes from
    ip_adapter/resampler.py, recorded in reidtools.generate.tryon.ipadapter) and IP processors
    (`...attn2.processor.to_k_ip.weight`, hidden x 2048, src/unet_hacked_tryon.py)."""
    from reidtools.generate.tryon.ipadapter import IDM_RESAMPLER, resampler_shapes

    # SDXL base/inpainting U-Net fields that shape weights (diffusers' SDXL config), with IDM's 13 channels
    cfg = dict(in_channels=13, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
               up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
               transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
               cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
               projection_class_embeddings_input_dim=2816, encoder_hid_dim_type="ip_image_proj", encoder_hid_dim=1280)
    shapes = resampler_shapes(1280, 2048, **IDM_RESAMPLER)
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert T.resampler_sizes(meta) == dict(embedding_dim=1280, output_dim=2048, **IDM_RESAMPLER)
    unet, proj, tokens = T.build_tryon_unet(cfg, meta)
    assert tokens == 16 and tuple(proj.latents.shape) == (1, 16, 1280)
    state = unet.state_dict()
    assert tuple(state["down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.weight"].shape) == (640, 2048)
    assert tuple(state["mid_block.attentions.0.transformer_blocks.9.attn2.processor.to_v_ip.weight"].shape) == (1280, 2048)
    assert tuple(state["conv_in.weight"].shape) == (320, 13, 3, 3)
    # 70 cross-attention layers in SDXL (down 2x2 + 2x10, mid 10, up 3x10 + 3x2) -> 140 IP tensors
    assert sum(k.endswith(("to_k_ip.weight", "to_v_ip.weight")) for k in state) == 140
    from reidtools.generate.tryon.ipadapter import resampler_to_diffusers

    mapped = resampler_to_diffusers(meta)
    own = proj.state_dict()
    assert set(mapped) == set(own) and all(own[k].shape == v.shape for k, v in mapped.items())


def test_loader_rejects_wrong_layouts(tmp_path):
    from reidtools.errors import ReidError

    with pytest.raises(ReidError, match="13"):
        T.build_tryon_unet(dict(in_channels=9, block_out_channels=(16, 32), norm_num_groups=8,
                                down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D")), None)
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ReidError, match="convert them to safetensors"):
        T.unet_weight_files(str(tmp_path))


def test_composite_keeps_the_person_outside_the_mask():
    person, gen, mask = _img(1), _img(2, 16, 8), _mask()
    out = np.asarray(T.composite(person, gen, mask))
    m = np.asarray(mask) >= 128
    assert np.array_equal(out[~m], np.asarray(person)[~m])
    resized = np.asarray(gen.resize(person.size, Image.BICUBIC))
    assert np.array_equal(out[m], resized[m])


def test_pipeline_garment_reaches_the_main_unet(pipe):
    s = T.TryOnSettings(steps=2, size=SIZE)
    person, mask, pose = _img(1), _mask(), _img(3)
    a = np.asarray(pipe(person, mask, pose, _img(10), 5, s))
    assert a.shape == (64, 32, 3)
    m = np.asarray(mask) >= 128
    assert np.array_equal(a[~m], np.asarray(person)[~m])
    assert np.array_equal(a, np.asarray(pipe(person, mask, pose, _img(10), 5, s)))      # seeded
    assert not np.array_equal(a, np.asarray(pipe(person, mask, pose, _img(10), 6, s)))
    # IP-Adapter off (scale 0): the garment reaches the try-on U-Net only through reference attention
    s0 = T.TryOnSettings(steps=2, size=SIZE, ip_scale=0.0)
    g1 = np.asarray(pipe(person, mask, pose, _img(10), 5, s0))
    g2 = np.asarray(pipe(person, mask, pose, _img(11), 5, s0))
    assert not np.array_equal(g1, g2)
    assert not np.array_equal(g1, a)                                                    # the adapter matters
    assert pipe.refattn.bank == {}                                                      # cleared after use


def test_reference_features_feed_every_step_with_zero_unconditional(pipe, monkeypatch):
    """The garment U-Net runs once per step and the try-on U-Net sees a 2-batch bank whose first
    (unconditional) half is zeros, as IDM-VTON's `torch.cat([zeros_like(d), d])`."""
    seen = []
    real = pipe.unet.forward

    def spy(*args, **kwargs):
        bank = pipe.refattn.bank
        seen.append((len(bank), all(v.shape[0] == 2 and not v[0].any() and v[1].any() for v in bank.values())))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", spy)
    pipe(_img(1), _mask(), _img(3), _img(10), 5, T.TryOnSettings(steps=3, size=SIZE))
    n_self = sum(n.endswith("attn1.processor") for n in pipe.unet.attn_processors)
    assert seen == [(n_self, True)] * 3


def test_garment_unet_must_match_the_tryon_unet(pipe):
    from reidtools.errors import ReidError
    from reidtools.testing.idmvton import TINY_UNET

    other = diffusers.UNet2DConditionModel(in_channels=4, **dict(TINY_UNET, transformer_layers_per_block=(1, 1, 1)))
    parts = {k: getattr(pipe, k) for k in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer",
                                           "tokenizer_2", "scheduler")}
    with pytest.raises(ReidError, match=r"unet_encoder.*\(\d+ unmatched, e.g. "):
        T.TryOnPipeline(unet_encoder=other, image_encoder=None, **parts)


def test_size_must_fit_the_latent_pyramid(pipe):
    from reidtools.errors import ReidError

    with pytest.raises(ReidError, match="multiples of 32"):
        pipe(_img(1), _mask(), _img(3), _img(10), 5, T.TryOnSettings(steps=1, size=(48, 32)))


def test_mask_from_parse_and_arms_from_pose():
    parse = np.zeros((64, 32), np.uint8)
    parse[20:30, 8:24] = 5
    parse[40:50, 8:24] = 9                                                  # pants: not a top
    region = garment_region(None, Image.fromarray(parse))
    assert region.sum() == 10 * 16 and not region[45, 12]
    pts = [[0.0, 0.0, 0.0]] * 33
    # right arm (12, 14, 16): shoulder (0.5, 0.25), elbow (0.5, 0.5), wrist (0.5, 0.625) in x, y
    pts[12], pts[14], pts[16] = [0.5, 0.25, 1.0], [0.5, 0.5, 1.0], [0.5, 0.625, 1.0]
    arms = add_arms(np.zeros((64, 32), bool), {"format": "mediapipe33", "points": pts})
    # pixel column = x * 32 - 0.5 = 15.5; rows 15.5 -> 31.5 -> 31.5 + 1.2 * 8 = 41.1; width 60/512*64 = 7
    assert arms[24, 15] and arms[24, 12] and not arms[24, 5]
    assert arms[40, 15] and not arms[47, 15]
    assert arms.sum() > 0 and not arms[:, :8].any()
    low = [list(p) for p in pts]
    low[16][2] = 0.1                                                        # unsure wrist: no arm
    assert not add_arms(np.zeros((64, 32), bool), {"format": "mediapipe33", "points": low}).any()
    dp = Image.new("RGB", (8, 16), (10, 20, 30))
    img, kind = pose_image(dp, {"format": "mediapipe33", "points": pts}, (64, 32))
    assert kind == "densepose" and img.size == (32, 64) and img.getpixel((0, 0)) == (10, 20, 30)
    img, kind = pose_image(None, {"format": "mediapipe33", "points": pts}, (64, 32))
    assert kind == "skeleton" and np.asarray(img).any()


# ----------------------------------------------------------------------------- CLI
def _reid(args):
    from reidtools.commands import cli
    from reidtools.commands._options import run_cli

    return run_cli(cli, args)


Row = namedtuple("Row", "pid clothes camid generated")


@pytest.fixture(scope="module")
def catalogue(synth_dir, tmp_path_factory):
    """`reid tryoff` on two synthetic people (tiny TryOffAnyone): garments g0000, g0001."""
    from reidtools.testing.tryoff import write_tiny_tryoff
    from reidtools.shards import ShardWriter, iter_shard

    tmp = tmp_path_factory.mktemp("tryon_cli")
    models = write_tiny_tryoff(str(tmp / "tryoff"))
    with ShardWriter(str(tmp / "src"), prefix="people", maxcount=1000) as w:
        for i, s in enumerate(iter_shard(str(synth_dir / "train-000000.tar"))):
            if i < 2:
                w.write(s)
    assert _reid(["tryoff", str(tmp / "src" / "people-000000.tar"), "-o", str(tmp / "cat"), "--model", models["model"],
                  "--vae", models["vae"], "--weights", models["weights"], "--steps", "1", "--size", "64x32",
                  "--dtype", "fp32", "-q"]) == 0
    return tmp / "cat" / "people-000000.tar"


def _persons(synth_dir, out, pids=(1, 2)):
    from reidtools.shards import ShardWriter, iter_shard
    from reidtools.shards.sample import meta

    with ShardWriter(str(out), prefix="persons", maxcount=1000) as w:
        for s in iter_shard(str(synth_dir / "train-000000.tar")):
            if meta(s)["pid"] in pids:
                w.write(s)
    return out / "persons-000000.tar"


def test_cli_tryoff_then_tryon_counts_eq3(tiny_dir, catalogue, synth_dir, tmp_path, capsys):
    from reidtools.generate.tryon.pairs import eq3_counts
    from reidtools.reid.pairs import hard_pair_counts
    from reidtools.seeding import derive_seed
    from reidtools.shards import iter_shard
    from reidtools.shards.sample import image, meta

    persons = _persons(synth_dir, tmp_path / "in")
    src = {s["__key__"]: s for s in iter_shard(str(persons))}
    code = _reid(["tryon", str(persons), "--garments", str(catalogue), "-o", str(tmp_path / "out"), "--model", tiny_dir,
                  "--per-id", "1", "--garments-per", "2", "--steps", "1", "--size", "64x32", "--dtype", "fp32"])
    assert code == 0
    assert "C=2, n=1, m=2 -> N_HP=36, N_HN=4" in capsys.readouterr().err     # logged before generating
    out = list(iter_shard(str(tmp_path / "out" / "persons-000000.tar")))
    first = {}
    for key, s in src.items():                                           # --per-id 1: first image per id
        first.setdefault(meta(s)["pid"], key)
    assert [s["__key__"] for s in out] == [f"{first[p]}_{g}" for p in (1, 2) for g in ("g0000", "g0001")]
    for s in out:
        m = meta(s)
        person = src[m["source"]]
        assert m["clothes"] == m["garment"] == s["__key__"].rsplit("_", 1)[1]
        assert m["pid"] == meta(person)["pid"] and m["history"][-1]["tool"] == "tryon"
        assert m["history"][-1]["parameters"]["pose_image"] == "skeleton"
        assert m["history"][-1]["seed"] == derive_seed(0, m["source"], m["garment"])
        got = np.asarray(Image.open(io.BytesIO(s["png"])).convert("RGB"))
        keep = np.asarray(Image.open(io.BytesIO(s["mask.png"]))) < 128
        assert got.shape[:2] == (64, 32) and keep.any() and (~keep).any()
        assert np.array_equal(got[keep], np.asarray(image(person))[keep])   # outside the mask: the person
    # HSGL eq. 3 on the output: originals of the 2 ids + the generated images
    originals = [meta(s) for s in src.values()]
    rows = [Row(m["pid"], m["clothes"], m["camid"], False) for m in originals]
    rows += [Row(meta(s)["pid"], meta(s)["clothes"], meta(s)["camid"], True) for s in out]
    K = {p: sum(m["pid"] == p for m in originals) for p in (1, 2)}
    counted = hard_pair_counts(rows)
    want = eq3_counts(K, m=2, n=1)
    # by hand: K = 8 each, m n = 2: N_HP = 2 * 2*1*(8 + 2 - 1) = 36; N_HN = 2*1*2 * 1*(2 - 1) = 4
    assert want == {"n_hp": 36, "n_hn": 4}
    assert (counted["n_hp_generated"], counted["n_hn_generated"]) == (36, 4)


def test_cli_tryon_errors(tiny_dir, catalogue, synth_dir, tmp_path, capsys):
    from reidtools.shards import ShardWriter, iter_shard

    persons = _persons(synth_dir, tmp_path / "in", pids=(1,))
    base = ["tryon", str(persons), "--garments", str(catalogue), "-o", str(tmp_path / "o"), "--model", tiny_dir,
            "--steps", "1", "--size", "64x32", "-q"]
    assert _reid(base + ["--pairs", "all", "--per-id", "1"]) == 2
    assert _reid(base + ["--offload", "--device", "cpu"]) == 2
    capsys.readouterr()
    s = next(iter_shard(str(persons)))
    s.pop("parse.png")
    with ShardWriter(str(tmp_path / "bad"), prefix="p") as w:
        w.write(s)
    base[1] = str(tmp_path / "bad" / "p-000000.tar")
    assert _reid(base) == 1
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "no garment_desc" not in ln]  # a warning
    assert len(err) == 1 and s["__key__"] in err[0] and "reid mask" in err[0]
    assert not os.path.exists(tmp_path / "o" / "p-000000.tar")
    assert _reid(["tryon", str(persons), "--garments", str(catalogue), "-o", str(tmp_path / "o2"),
                  "--model", "nobody/none", "-q"]) == 1
    assert "huggingface-cli download nobody/none" in capsys.readouterr().err


def test_offload_hooks_and_no_ip_adapter(tiny_dir, pipe):
    """--offload's accelerate hooks give the same image (exercised with cpu as the execution device);
    without the IP-Adapter the image encoder is not loaded and the garment still matters (refattn)."""
    s = T.TryOnSettings(steps=1, size=SIZE)
    args = (_img(1), _mask(), _img(3), _img(10), 5, s)
    off = T.TryOnPipeline.from_pretrained(tiny_dir, offload=True)
    assert set(off.hooks) == set(T.TryOnPipeline.MODELS)
    assert np.array_equal(np.asarray(off(*args)), np.asarray(pipe(*args)))
    plain = T.TryOnPipeline.from_pretrained(tiny_dir, ip_adapter=False)
    assert plain.image_encoder is None and plain.image_proj is None
    a = np.asarray(plain(*args))
    assert not np.array_equal(a, np.asarray(pipe(*args)))
    assert not np.array_equal(a, np.asarray(plain(_img(1), _mask(), _img(3), _img(11), 5, s)))


def test_fp16_keeps_the_sdxl_vae_in_fp32(tiny_dir):
    half = T.TryOnPipeline.from_pretrained(tiny_dir, dtype=torch.float16)
    assert half.vae.config.force_upcast and half.vae.dtype == torch.float32 and half.vae_dtype == torch.float32
    assert half.unet.dtype == half.unet_encoder.dtype == torch.float16
    assert next(half.image_proj.parameters()).dtype == torch.float16


@pytest.mark.parametrize("asked, want", [
    # a CPU without bf16 kernels keeps the VAE in fp32 (test_bf16_on_a_cpu_without_bf16_kernels_...)
    ("bf16", {"dtype": "bf16", "dtypes": {"text_encoder": "bf16", "text_encoder_2": "bf16", "image_encoder": "bf16",
                                          "unet_encoder": "bf16", "unet": "bf16", "image_proj": "bf16", "vae": "fp32"}}),
    ("fp16", {"dtype": "fp32"}),   # a CPU runs fp16 as fp32 (runtime.torch_dtype), every model alike
])
def test_history_records_the_dtypes_that_ran(tiny_dir, catalogue, synth_dir, tmp_path, monkeypatch, asked, want):
    from reidtools.shards import iter_shard
    from reidtools.shards.sample import meta

    monkeypatch.setattr(T, "cpu_has_bf16_kernels", lambda: False)
    persons = _persons(synth_dir, tmp_path / "in", pids=(1,))
    assert _reid(["tryon", str(persons), "--garments", str(catalogue), "-o", str(tmp_path / "out"), "--model", tiny_dir,
                  "--per-id", "1", "--garments-per", "1", "--steps", "1", "--size", "64x32", "--dtype", asked,
                  "--device", "cpu", "-q"]) == 0
    (s,) = list(iter_shard(str(tmp_path / "out" / "persons-000000.tar")))
    params = meta(s)["history"][-1]["parameters"]
    assert {k: params.get(k) for k in ("dtype", "dtypes") if k in params} == want


def test_multimodal_tryon_upper_body_region_and_quality_ranked_people(tiny_dir, catalogue, synth_dir, tmp_path):
    """HSGL Alg. 1: line 11 gives each catalogue garment a description T_desc, line 13 passes it to the
    try-on (IDM-VTON's prompts "model is wearing {desc}" / "a photo of {desc}"); line 12 takes each
    identity's n best images of D_highq; the catalogue holds tops, so the repaint region is IDM-VTON's
    upper body, not DLCR's whole-clothing mask (pants and shoes)."""
    import numpy as np

    from reidtools.shards import ShardWriter, iter_shard
    from reidtools.shards.sample import mask as read_mask
    from reidtools.shards.sample import meta

    described = tmp_path / "described"
    assert _reid(["caption", "--garments", "--engine", "template", str(catalogue), "-o", str(described), "-q"]) == 0
    cat = list(iter_shard(str(described / catalogue.name)))
    descs = {meta(g)["garment"]: meta(g)["garment_desc"] for g in cat}
    for g in cat:   # the synthetic person's own top, from its ground-truth garments
        assert descs[meta(g)["garment"]] == _template_top(meta(g)["garments"])
    # people: pid 1's images with a DLCR whole-clothing mask.png beside the LIP parse; the first image
    # has the highest resolution, the last the highest sharpness: "prioritizes images with higher
    # resolution and minimal blurriness" (§3.2.1) picks the first
    people = [s for s in iter_shard(str(synth_dir / "train-000000.tar")) if meta(s)["pid"] == 1]
    assert run_mask_dlcr(people, tmp_path / "masked") == 0
    masked = list(iter_shard(str(tmp_path / "masked" / "p-000000.tar")))
    with ShardWriter(str(tmp_path / "scored"), prefix="p") as w:
        for i, s in enumerate(masked):
            meta(s)["quality"] = {"resolution": 2048 - i, "sharpness": float(i)}
            w.write(s)
    out = tmp_path / "out"
    assert _reid(["tryon", str(tmp_path / "scored" / "p-000000.tar"), "--garments", str(described / catalogue.name),
                  "-o", str(out), "--model", tiny_dir, "--per-id", "1", "--garments-per", "1", "--steps", "1",
                  "--size", "64x32", "--dtype", "fp32", "-q"]) == 0
    (res,) = list(iter_shard(str(out / "p-000000.tar")))
    m = meta(res)
    assert m["source"] == masked[0]["__key__"]
    h = m["history"][-1]
    desc = descs[m["garment"]]
    assert h["prompt"] == f"model is wearing {desc}" and h["parameters"]["garment_prompt"] == f"a photo of {desc}"
    region = np.asarray(read_mask(res, "mask.png")) > 0
    src = masked[0]
    parse = np.asarray(read_mask(src, "parse.png"))
    whole = np.asarray(read_mask(src, "mask.png")) > 0
    lower = np.isin(parse, (9, 12, 18, 19))                           # LIP pants, skirt, shoes
    assert (whole & lower).any() and not (region & lower & ~np.isin(parse, (14, 15))).any()
    assert (region & np.isin(parse, (5, 6, 7))).sum() == np.isin(parse, (5, 6, 7)).sum()
    # --region mask: DLCR's whole mask.png is repainted (pants and shoes included)
    assert _reid(["tryon", str(tmp_path / "scored" / "p-000000.tar"), "--garments", str(described / catalogue.name),
                  "-o", str(tmp_path / "out2"), "--model", tiny_dir, "--per-id", "1", "--garments-per", "1",
                  "--steps", "1", "--size", "64x32", "--dtype", "fp32", "--region", "mask", "-q"]) == 0
    (res2,) = list(iter_shard(str(tmp_path / "out2" / "p-000000.tar")))
    assert (np.asarray(read_mask(res2, "mask.png")) > 0)[whole].all()


def _template_top(garments):
    from reidtools.generate.prompts import template_items

    return template_items(garments)[0]


def run_mask_dlcr(samples, out):
    from reidtools.shards import ShardWriter

    with ShardWriter(str(out.parent / "raw"), prefix="p") as w:
        for s in samples:
            w.write(s)
    return _reid(["mask", "--engine", "labels", str(out.parent / "raw" / "p-000000.tar"), "-o", str(out), "-q"])


@pytest.mark.parametrize("kernels", [False, True])
def test_bf16_on_a_cpu_without_bf16_kernels_runs_the_vae_in_fp32(tiny_dir, monkeypatch, kernels):
    """Found at full size (tests/test_fullsize_tryon.py): on an AVX2 CPU a bf16 convolution is ~1000x slower
    than fp32, and the VAE is all convolutions at image size; with native bf16 kernels it stays bf16."""
    monkeypatch.setattr(T, "cpu_has_bf16_kernels", lambda: kernels)
    p = T.TryOnPipeline.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    want = torch.bfloat16 if kernels else torch.float32
    assert p.vae.dtype == p.vae_dtype == want
    assert p.unet.dtype == p.unet_encoder.dtype == torch.bfloat16
    out = np.asarray(p(_img(1), _mask(), _img(3), _img(10), 5, T.TryOnSettings(steps=1, size=SIZE)))
    assert out.shape == (64, 32, 3)
