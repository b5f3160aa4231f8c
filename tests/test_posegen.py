"""`reid posegen` (Pose-dIVE): skeletons, zero-initialised guiders, reference attention, CLI fit/sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reidtools.commands import main
from reidtools.data.labels import MEDIAPIPE33
from reidtools.vision.skeleton import MEDIAPIPE33_LIMBS, joint_colors, limb_colors, render_skeleton

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny models gain nothing from 2 threads, and OpenMP barriers make them 30x slower on a busy machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


# ----------------------------------------------------------------------------- skeleton
def _pose(points):
    pts = [[0.0, 0.0, 0.0]] * 33
    for k, p in points.items():
        pts[MEDIAPIPE33.index(k)] = list(p)
    return {"format": "mediapipe33", "points": pts}


def test_skeleton_draws_confident_limbs_in_their_colours():
    # 32 x 16 image: pixel column = x * 16 - 0.5, row = y * 32 - 0.5.
    # left_shoulder at x = 4.5/16 -> column 4, y = 8.5/32 -> row 8; left_elbow at column 4, row 20:
    # limb 11-13 is a vertical line in column 4 from row 8 to row 20.
    pose = _pose({"left_shoulder": (4.5 / 16, 8.5 / 32, 0.9), "left_elbow": (4.5 / 16, 20.5 / 32, 0.8),
                  "right_shoulder": (11.5 / 16, 8.5 / 32, 0.9), "right_elbow": (11.5 / 16, 20.5 / 32, 0.1)})
    img = np.asarray(render_skeleton(pose, (32, 16), width=1, radius=0))
    limb = limb_colors()[MEDIAPIPE33_LIMBS.index((11, 13))]
    shoulders = limb_colors()[MEDIAPIPE33_LIMBS.index((11, 12))]
    assert tuple(img[14, 4]) == limb                  # middle of the left upper arm
    assert tuple(img[8, 8]) == shoulders              # middle of the shoulder line (row 8, columns 4..11)
    assert tuple(img[14, 11]) == (0, 0, 0)            # right upper arm: elbow conf 0.1 < 0.3, not drawn
    assert tuple(img[20, 11]) == (0, 0, 0)            # nor the elbow joint
    assert tuple(img[8, 4]) == joint_colors()[11]     # joints are drawn over the limbs
    assert tuple(img[20, 4]) == joint_colors()[13]
    assert tuple(img[30, 2]) == (0, 0, 0)             # background stays black
    drawn = img.any(axis=2)
    # exactly: column 4 rows 8..20 (13 px) + row 8 columns 5..11 (7 px) -> 20 pixels
    assert int(drawn.sum()) == 20


def test_skeleton_threshold_and_colours_are_distinct():
    pose = _pose({"left_hip": (0.25, 0.5, 0.5), "left_knee": (0.25, 0.75, 0.5)})
    lo = np.asarray(render_skeleton(pose, (64, 32), threshold=0.4))
    hi = np.asarray(render_skeleton(pose, (64, 32), threshold=0.6))
    assert lo.any() and not hi.any()
    assert len(set(limb_colors())) == len(MEDIAPIPE33_LIMBS)
    assert len(set(joint_colors())) == 33
    with pytest.raises(ValueError):
        render_skeleton({"format": "coco17", "points": []}, (8, 8))


# ----------------------------------------------------------------------------- guiders and the net
def tiny_unet(seed):
    from diffusers import UNet2DConditionModel

    from reidtools.testing.models import TINY_UNET

    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, **TINY_UNET).eval()


def test_guider_reaches_one_eighth_and_starts_at_zero():
    from reidtools.generate.posegen.guider import PoseGuider

    g = PoseGuider(3, 32, (4, 8, 8, 16))
    y = g(torch.rand(2, 3, 64, 32))
    assert y.shape == (2, 32, 8, 4)
    assert torch.count_nonzero(y) == 0
    assert torch.count_nonzero(g.conv_out.weight) == 0 and torch.count_nonzero(g.conv_out.bias) == 0


def test_guider_features_carry_the_pose_before_the_zero_layer():
    """Default conv init drowned the condition in the biases (~0.5% difference between two skeletons
    after the stack); with He init and zero biases the features differ by the order of 100%."""
    import torch

    from reidtools.generate.posegen.guider import PoseGuider

    torch.manual_seed(0)
    g = PoseGuider(3, 32)
    upright, lying = torch.zeros(1, 3, 256, 128), torch.zeros(1, 3, 256, 128)
    upright[:, :, 50:200, 60:66] = 1
    lying[:, :, 50:60, 20:110] = 1

    def features(x):
        h = torch.nn.functional.silu(g.conv_in(x))
        for block in g.blocks:
            h = torch.nn.functional.silu(block(h))
        return h

    with torch.no_grad():
        fa, fb = features(upright), features(lying)
        assert float((fa - fb).norm() / fa.norm()) > 0.3
        assert torch.count_nonzero(g(upright)) == 0  # still a no-op at the start


@pytest.mark.parametrize("inject", ["conv_in", "latent"])
def test_zero_guiders_leave_the_unet_unchanged_at_step_0_then_learn(inject):
    from reidtools.generate.posegen.net import build_net

    unet = tiny_unet(0)
    net = build_net(unet, tiny_unet(0), ["skeleton", "depth"], (4, 8, 8, 16), inject, 32, False)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(2, 4, 8, 4, generator=g), torch.randn(2, 1, 32, generator=g)
    conds = {"skeleton": torch.rand(2, 3, 64, 32, generator=g), "depth": torch.rand(2, 1, 64, 32, generator=g)}
    with torch.no_grad():
        plain = unet(x, 10, encoder_hidden_states=ctx).sample
        guided = net.denoise(x, 10, ctx, net.guiders(conds))
    assert torch.equal(guided, plain)
    # the zero last layer still gets a gradient, so one step makes the conditions matter
    loss = net.denoise(x, 10, ctx, net.guiders(conds)).square().mean()
    loss.backward()
    grad = net.guiders.guiders["skeleton"].conv_out.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    with torch.no_grad():
        for p in net.guiders.parameters():
            if p.grad is not None:
                p -= 1.0 * p.grad
        after = net.denoise(x, 10, ctx, net.guiders(conds))
        after_empty = unet(x, 10, encoder_hidden_states=ctx).sample
    assert not torch.allclose(after, plain, atol=1e-6)
    assert torch.equal(after_empty, plain)     # the hook adds nothing outside denoise()


def test_reference_features_reach_the_denoising_unet():
    from reidtools.generate.posegen.net import build_net

    unet = tiny_unet(0)
    net = build_net(unet, tiny_unet(0), ["skeleton"], (4, 8, 8, 16), "conv_in", 16, False)
    assert net.image_proj is not None and net.image_proj.out_features == 32   # 16 -> cross_attention_dim 32
    g = torch.Generator().manual_seed(1)
    x, emb = torch.randn(1, 4, 8, 4, generator=g), torch.randn(1, 1, 16, generator=g)
    ref_a, ref_b = torch.randn(1, 4, 8, 4, generator=g), torch.randn(1, 4, 8, 4, generator=g)
    cond = {"skeleton": torch.rand(1, 3, 64, 32, generator=g)}
    with torch.no_grad():
        ctx = net.project(emb)
        guide = net.guiders(cond)
        plain = unet(x, 10, encoder_hidden_states=ctx).sample
        out_none = net(x, torch.tensor([10]), emb, cond, None)
        net.encode_reference(ref_a, ctx)
        out_a = net.denoise(x, 10, ctx, guide)
        out_a2 = net.denoise(x, 10, ctx, guide)      # one reference pass serves every step
        net.encode_reference(ref_b, ctx)
        out_b = net.denoise(x, 10, ctx, guide)
    assert torch.allclose(out_none, plain, atol=1e-6)   # no reference: the plain U-Net
    assert torch.equal(out_a, out_a2)
    assert not torch.allclose(out_a, plain, atol=1e-4)
    assert not torch.allclose(out_a, out_b, atol=1e-4)  # output depends on the reference image


@pytest.mark.parametrize("train_reference", [False, True])
def test_reference_unet_gets_gradients_only_when_trained(train_reference):
    from reidtools.generate.posegen.net import build_net

    ref = tiny_unet(1)
    ref.requires_grad_(train_reference)
    net = build_net(tiny_unet(0), ref, ["skeleton"], (4, 8, 8, 16), "conv_in", 32, train_reference)
    g = torch.Generator().manual_seed(2)
    out = net(torch.randn(1, 4, 8, 4, generator=g), torch.tensor([5]), torch.randn(1, 1, 32, generator=g),
              {"skeleton": torch.rand(1, 3, 64, 32, generator=g)}, torch.randn(1, 4, 8, 4, generator=g))
    out.square().mean().backward()
    q = ref.down_blocks[0].attentions[0].transformer_blocks[0].norm1.weight   # feeds the stored attn1 input
    assert (q.grad is not None and q.grad.abs().sum() > 0) == train_reference
    assert not net.control.bank                      # the graph is not kept between steps


# ----------------------------------------------------------------------------- CLI
FIT = ["--guider-channels", "4,8,8,16", "--size", "64x32", "--batch-size", "2", "--tau-ref", "0.2",
       "--tau-tar", "0.5", "--lr", "1e-3", "--save-every", "1", "-q"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from reidtools.testing.posegen import write_tiny_posegen

    return write_tiny_posegen(str(tmp_path_factory.mktemp("posegen_models")))


def _fit(models, data, out, *extra):
    return run(["posegen", "fit", str(data), "-o", str(out), "--base", models["base"],
                "--image-encoder", models["image_encoder"], *FIT, *extra])


@pytest.fixture(scope="module")
def ckpt(tiny_models, synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("posegen_ckpt") / "c"
    assert _fit(tiny_models, synth_dir / "train-000000.tar", out, "--steps", "2") == 0
    return out


def test_fit_writes_a_checkpoint_that_diffusers_loads(ckpt):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    m = json.loads((ckpt / "manifest.json").read_text())
    assert m["format"] == "reid-posegen/1" and m["step"] == 2 and np.isfinite(m["last_loss"])
    assert m["options"]["conditions"] == ["skeleton"] and m["embed_dim"] == 16
    assert m["pairs"]["targets"] > 0 and m["pairs"]["ids"] == 4
    UNet2DConditionModel.from_pretrained(str(ckpt / "denoising_unet"))
    guiders = load_file(str(ckpt / "pose_guiders.safetensors"))
    assert guiders["skeleton.conv_out.weight"].abs().sum() > 0      # trained away from its zero start
    assert set(load_file(str(ckpt / "image_proj.safetensors"))) == {"weight", "bias"}
    assert not (ckpt / "reference_unet").exists()                 # frozen: not saved
    # every weight file, the U-Net's included, has its SHA-256 in the manifest; step 2 is resumable
    assert set(m["files"]) == {"denoising_unet/diffusion_pytorch_model.safetensors", "pose_guiders.safetensors",
                               "image_proj.safetensors"}
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-2"]


def _same_file(a, b) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def test_the_final_artefact_is_the_last_checkpoint_on_disk_once(ckpt):
    """A full-size fit wrote its 3.4 GB U-Net twice (checkpoint-N/ and the output folder): the output
    folder's weight files are now hard links to the newest checkpoint's, and the optimizer state stays
    in checkpoint-N/ (what --resume reads) only."""
    last = ckpt / "checkpoint-2"
    m = json.loads((ckpt / "manifest.json").read_text())
    assert m == json.loads((last / "manifest.json").read_text())
    for rel in m["files"]:
        assert _same_file(ckpt / rel, last / rel) and (ckpt / rel).stat().st_nlink == 2
    assert {p.name for p in ckpt.iterdir()} == {"checkpoint-2", "denoising_unet", "image_proj.safetensors",
                                                "manifest.json", "pose_guiders.safetensors"}
    assert {p.name for p in last.iterdir()} == {"denoising_unet", "image_proj.safetensors", "manifest.json",
                                                "pose_guiders.safetensors", "train_state.json",
                                                "train_state.safetensors"}
    # every safetensors file of the folder, checkpoint included, is on disk once
    inodes = [(p.stat().st_dev, p.stat().st_ino) for p in ckpt.rglob("*.safetensors")]
    assert len(inodes) == 7 and len(set(inodes)) == 4


@pytest.mark.parametrize("links", [True, False])
def test_publishing_a_checkpoint_survives_its_deletion(ckpt, tmp_path, monkeypatch, links):
    """Without hard links (another filesystem) the weights are copied; either way the artefact keeps
    its digests and loads once the checkpoint it came from is gone."""
    import os
    import shutil

    from reidtools.pretrained import publish_checkpoint, read_config, verify_all

    src = tmp_path / "checkpoint-2"
    shutil.copytree(ckpt / "checkpoint-2", src)
    if not links:
        def no_link(a, b):
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "out"
    publish_checkpoint(str(src), str(out), name="manifest.json")
    unet = "denoising_unet/diffusion_pytorch_model.safetensors"
    assert _same_file(out / unet, src / unet) is links
    assert not (out / "train_state.safetensors").exists()
    shutil.rmtree(src)
    verify_all(str(out), read_config(str(out), name="manifest.json"))


def test_a_corrupted_unet_file_is_one_error_naming_it(ckpt, synth_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    w = bad / "denoising_unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-2] ^= 0x0F
    w.write_bytes(bytes(data))
    code = run(["posegen", "sample", str(bad), str(synth_dir / "train-000000.tar"), "-o", str(tmp_path / "o"),
                  "--per-id", "1", "--steps", "1", "--dtype", "fp32", "-q"])
    assert code == 1 and f"{w}: SHA-256 differs" in capsys.readouterr().err


def test_resume_reproduces_an_uninterrupted_run(ckpt, tiny_models, synth_dir, tmp_path):
    from safetensors.torch import load_file

    import shutil

    part = tmp_path / "part"
    shutil.copytree(ckpt, part)
    assert _fit(tiny_models, synth_dir / "train-000000.tar", part, "--steps", "3") == 1   # exists, no --resume
    assert _fit(tiny_models, synth_dir / "train-000000.tar", part, "--steps", "3", "--resume") == 0
    full = tmp_path / "full"
    assert _fit(tiny_models, synth_dir / "train-000000.tar", full, "--steps", "3") == 0
    a, b = load_file(str(part / "pose_guiders.safetensors")), load_file(str(full / "pose_guiders.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert json.loads((part / "manifest.json").read_text())["step"] == 3
    # the resumed folder's artefact now is checkpoint-3 (checkpoint-2 pruned), still on disk once
    assert sorted(p.name for p in part.glob("checkpoint-*")) == ["checkpoint-3"]
    assert _same_file(part / "pose_guiders.safetensors", part / "checkpoint-3" / "pose_guiders.safetensors")


def test_sample_records_target_poses_and_is_reproducible(ckpt, synth_dir, tmp_path):
    from reidtools.generate.posegen.sample import read_pose_bank
    from reidtools.seeding import derive_seed
    from reidtools.shards import image, iter_samples, meta
    from reidtools.vision.rules import PoseGen, target_pose

    train = str(synth_dir / "train-000000.tar")
    args = ["posegen", "sample", str(ckpt), train, "--per-id", "2", "--steps", "2", "--tau-ref", "0.2",
            "--tau-tar", "0.5", "-q"]
    assert run([*args, "-o", str(tmp_path / "a"), "--batch-size", "3"]) == 0
    out = list(iter_samples([str(tmp_path / "a" / "train-000000.tar")]))
    assert len(out) == 4 * 2                                        # 4 train ids x --per-id 2
    bank = {e.key: e.pose for e in read_pose_bank([train], ["skeleton"], 0.5)}
    for s in out:
        m = meta(s)
        h = m["history"][-1]
        assert h["tool"] == "posegen" and s["__key__"] == f"{m['source']}-pose{h['parameters']['index']:03d}"
        assert h["seed"] == derive_seed(0, "posegen-noise", "synth", m["pid"], h["parameters"]["index"])
        assert m["source"].startswith(f"synth_p{m['pid']:04d}_")    # the reference is the same identity
        assert "pose" not in m                                      # the reference's pose is not the output's
        fmt, pts = target_pose(s)                                   # where `reid filter --rule pose-gen` reads it
        assert fmt == "mediapipe33" and pts.tolist() == bank[h["parameters"]["target_source"]]["points"]
        assert image(s).size == (32, 64)
        # as if `reid pose` had found the target pose 0.02 less confident everywhere: O = 0.02, kept
        close = pts.copy()
        close[:, 2] = np.clip(close[:, 2] - 0.02, 0, 1)
        m["pose"] = {"format": fmt, "points": close.tolist()}
        matched = PoseGen(tau=0.5)(s)                                # the default eps_gen (0.1)
        assert matched.passed and matched.scores["gen_offset"] == pytest.approx(0.02, abs=1e-5)
        # ... or the person from behind: the 11 face keypoints (0-10) at 0.05, the body as asked
        behind = pts.copy()
        behind[:11, 2] = 0.05
        m["pose"] = {"format": fmt, "points": behind.tolist()}
        offset = float(np.abs(pts[:11, 2] - 0.05).sum() / 33)      # eq. 5 by hand: only the face differs
        verdict = PoseGen(tau=0.5)(s)
        assert verdict.scores["gen_offset"] == pytest.approx(offset, abs=1e-5)
        assert offset > 0.1 and not verdict.passed                 # rejected by the default eps_gen
    # per-image seeds: the same images with another batch size (and no re-run of finished shards)
    assert run([*args, "-o", str(tmp_path / "b"), "--batch-size", "1"]) == 0
    again = {s["__key__"]: np.asarray(image(s), dtype=np.int16) for s in iter_samples([str(tmp_path / "b" / "train-000000.tar")])}
    for s in out:
        assert np.abs(np.asarray(image(s), dtype=np.int16) - again[s["__key__"]]).max() <= 2
    mtime = (tmp_path / "a" / "train-000000.tar").stat().st_mtime
    assert run([*args, "-o", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "train-000000.tar").stat().st_mtime == mtime


def test_sample_from_a_pose_shard_bank(ckpt, synth_dir, tmp_path):
    from reidtools.shards import iter_samples, meta

    gallery = str(synth_dir / "gallery-000000.tar")
    assert run(["posegen", "sample", str(ckpt), str(synth_dir / "train-000000.tar"), "-o", str(tmp_path / "g"),
                "--poses", gallery, "--per-id", "1", "--steps", "1", "--guidance", "1", "--scheduler", "dpm++",
                "--tau-ref", "0.2", "--tau-tar", "0.5", "-q"]) == 0
    out = list(iter_samples([str(tmp_path / "g" / "train-000000.tar")]))
    gallery_keys = {s["__key__"] for s in iter_samples([gallery])}
    assert len(out) == 4
    for s in out:
        p = meta(s)["history"][-1]["parameters"]
        assert p["target_source"] in gallery_keys and p["pose_bank"] == "shards" and p["scheduler"] == "dpm++"


def test_clear_errors(tiny_models, synth_dir, tmp_path, capsys):
    train = synth_dir / "train-000000.tar"
    assert _fit(tiny_models, train, tmp_path / "d", "--steps", "1", "--conditions", "skeleton,depth") == 1
    err = capsys.readouterr().err
    assert "depth.png" in err and "synth_p" in err                 # names the field and the key
    assert _fit(tiny_models, train, tmp_path / "e", "--steps", "1", "--tau-ref", "1.0") == 1
    assert "no training pair" in capsys.readouterr().err
    assert _fit(tiny_models, train, tmp_path / "f", "--steps", "1", "--guider-channels", "4,8") == 1
    assert "downsamples by 8" in capsys.readouterr().err
    assert _fit(tiny_models, train, tmp_path / "g", "--keypoints", "left_toe") == 2
    assert run(["posegen", "sample", str(tmp_path), str(train), "-o", str(tmp_path / "o")]) == 1
    assert "not a `reid posegen fit` checkpoint" in capsys.readouterr().err


def test_sd15_sized_guiders_fit_the_unet_conv_in():
    # the real layout, on the meta device (no memory): a 512x256 skeleton -> (320, 64, 32) = conv_in(64x32 latent)
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from reidtools.generate.posegen.net import build_net
    from reidtools.testing.models import SD15_UNET

    with init_empty_weights():
        unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, **SD15_UNET)
        net = build_net(unet, unet, ["skeleton", "depth", "normal"], (16, 32, 96, 256), "conv_in", 768, False)
    assert net.image_proj is None                     # CLIP ViT-L/14's 768 = SD 1.5's cross_attention_dim
    y = net.guiders({"skeleton": torch.empty(1, 3, 512, 256, device="meta"),
                     "depth": torch.empty(1, 1, 512, 256, device="meta"),
                     "normal": torch.empty(1, 3, 512, 256, device="meta")})
    assert y.shape == unet.conv_in(torch.empty(1, 4, 64, 32, device="meta")).shape == (1, 320, 64, 32)
    net.control.remove()


def test_pairs_keep_equal_pids_of_two_datasets_apart(synth_dir, tmp_path):
    from reidtools.generate.posegen.pairs import pick_reference, read_pairs
    from reidtools.generate.posegen.training import FitOptions
    from reidtools.shards import ShardWriter, iter_samples, meta

    with ShardWriter(str(tmp_path), prefix="mix") as w:
        for s in iter_samples([str(synth_dir / "train-000000.tar")]):
            m = meta(s)
            if m["camid"] == 2:
                m["dataset"] = "other"
            w.write(s)
    ps = read_pairs([str(tmp_path / "mix-000000.tar")], FitOptions(tau_ref=0.2, tau_tar=0.5))
    assert {d for d, _ in ps.refs} == {"synth", "other"}
    for t in ps.targets:
        for slot in range(3):
            j = pick_reference(ps, t, 0, slot, 0)
            assert ps.pids[j] == ps.pids[t] and j != t


def test_depth_normal_conditions_and_a_trained_reference_unet(tiny_models, synth_dir, tmp_path):
    from safetensors.torch import load_file

    from reidtools.shards import ShardWriter, image, iter_samples, meta

    data = tmp_path / "dn"
    with ShardWriter(str(data), prefix="train") as w:     # stand-ins for SMPL-rendered maps
        for s in iter_samples([str(synth_dir / "train-000000.tar")]):
            img = image(s)
            s["depth.png"], s["normal.png"] = img.convert("L"), img.transpose(0)
            w.write(s)
    shard = str(data / "train-000000.tar")
    ckpt = tmp_path / "ck"
    assert _fit(tiny_models, shard, ckpt, "--steps", "1", "--conditions", "skeleton,depth,normal",
                "--train-reference") == 0
    assert {k.split(".")[0] for k in load_file(str(ckpt / "pose_guiders.safetensors"))} == {"skeleton", "depth", "normal"}
    assert (ckpt / "reference_unet" / "diffusion_pytorch_model.safetensors").exists()
    assert run(["posegen", "sample", str(ckpt), shard, "-o", str(tmp_path / "o"), "--per-id", "1", "--steps", "1",
                "--tau-ref", "0.2", "--tau-tar", "0.5", "-q"]) == 0
    out = list(iter_samples([str(tmp_path / "o" / "train-000000.tar")]))
    assert len(out) == 4 and meta(out[0])["history"][-1]["parameters"]["conditions"] == ["skeleton", "depth", "normal"]
    # a bank without the maps the checkpoint needs is an error naming the field
    assert run(["posegen", "sample", str(ckpt), shard, "-o", str(tmp_path / "p"), "--poses",
                str(synth_dir / "gallery-000000.tar"), "--tau-ref", "0.2", "--tau-tar", "0.5", "-q"]) == 1


def test_task_split_writes_the_same_images_as_one_task(ckpt, synth_dir, tmp_path):
    from reidtools.shards import image, iter_samples

    shards = [str(synth_dir / "train-000000.tar"), str(synth_dir / "gallery-000000.tar")]
    common = ["--per-id", "1", "--steps", "1", "--guidance", "1", "--tau-ref", "0.2", "--tau-tar", "0.5", "-q"]
    assert run(["posegen", "sample", str(ckpt), *shards, "-o", str(tmp_path / "one"), *common]) == 0
    for i in (0, 1):
        assert run(["posegen", "sample", str(ckpt), *shards, "-o", str(tmp_path / "two"), *common,
                    "--shard-index", str(i), "--num-shards", "2"]) == 0
    for name in ("train-000000.tar", "gallery-000000.tar"):
        a = {s["__key__"]: np.asarray(image(s)) for s in iter_samples([str(tmp_path / "one" / name)])}
        b = {s["__key__"]: np.asarray(image(s)) for s in iter_samples([str(tmp_path / "two" / name)])}
        assert a.keys() == b.keys() and len(a) == 4          # 4 train ids, 4 test ids
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_poses_targets_feed_sample(ckpt, synth_dir, tmp_path):
    """`reid posegen poses` -> `reid posegen sample --targets`: one image per target, its pose recorded."""
    from reidtools.shards import iter_samples, meta

    train = str(synth_dir / "train-000000.tar")
    assert run(["posegen", "poses", train, "-o", str(tmp_path / "t"), "--per-id", "2", "--size", "64x32",
                "--conditions", "skeleton", "-q"]) == 0
    targets = {s["__key__"]: meta(s) for s in iter_samples([str(tmp_path / "t" / "train-000000.tar")])}
    assert run(["posegen", "sample", str(ckpt), train, "-o", str(tmp_path / "g"), "--targets", str(tmp_path / "t"),
                "--steps", "1", "--guidance", "1", "--tau-ref", "0.2", "-q"]) == 0
    out = list(iter_samples([str(tmp_path / "g" / "train-000000.tar")]))
    assert len(out) == len(targets) == 4 * 2
    for s in out:
        m = meta(s)
        p = m["history"][-1]["parameters"]
        t = targets[p["target_source"]]
        assert (t["pid"], t["target_index"]) == (m["pid"], p["index"]) and p["pose_bank"] == "targets"
        assert p["target_pose"] == t["pose"] and p["target_viewpoint"] == t["viewpoint"]


def test_pose_gen_default_eps_rejects_a_pose_mismatched_sample():
    """Pose-dIVE §E, eqs. 5-6, by hand: a frontal target, all 33 sigma = 0.9; generated from behind,
    the 11 face keypoints (0-10) drop to 0.1 and the 22 body keypoints stay at 0.9.
    O = 11 * |0.1 - 0.9| / 33 = 0.2667; mean sigma_gen = (11 * 0.1 + 22 * 0.9) / 33 = 0.6333."""
    from reidtools.vision.rules import PoseGen

    def generated(confs):
        target = {"format": "mediapipe33", "points": [[0.5, 0.5, 0.9]] * 33}
        return {"__key__": "g", "__shard__": "s.tar",
                "json": {"pose": {"format": "mediapipe33", "points": [[0.5, 0.5, c] for c in confs]},
                         "history": [{"tool": "posegen", "parameters": {"target_pose": target}}]}}

    behind = generated([0.1] * 11 + [0.9] * 22)
    out = PoseGen()(behind)
    assert out.scores["gen_offset"] == pytest.approx(0.26667, abs=1e-5)
    assert out.scores["gen_mean_conf"] == pytest.approx(0.63333, abs=1e-5)   # passes tau_gen = 0.6 (eq. 6)
    assert not out.passed                                                  # O > eps_gen = 0.1 (eq. 5)
    assert PoseGen(eps=0.6)(behind).passed                                 # what the old default kept
    close = PoseGen()(generated([0.85] * 33))                              # O = 0.05: the pose agrees
    assert close.passed and close.scores["gen_offset"] == pytest.approx(0.05, abs=1e-5)


def test_fit_writes_validation_images_every_n_steps(tiny_models, synth_dir, tmp_path):
    """diffusers' --validation_* convention: every N steps, the first training targets re-rendered
    from another image of their pid, each row reference | generated | real target."""
    from PIL import Image

    out = tmp_path / "v"
    assert _fit(tiny_models, synth_dir / "train-000000.tar", out, "--steps", "2", "--validation-every", "2",
                "--validation-images", "2", "--validation-steps", "1") == 0
    rows = sorted((out / "validation" / "step-2").glob("*.png"))
    assert len(rows) == 2 and not (out / "validation" / "step-1").exists()
    assert Image.open(rows[0]).size == (3 * 32, 64)
