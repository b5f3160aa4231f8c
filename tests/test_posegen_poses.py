"""`reid posegen poses`: the parametric body, ray-capsule/ellipsoid rendering, 2D->3D lifting,
viewpoint sampling, and targets fed to `reid posegen sample --targets`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reidtools.commands import main
from reidtools.generate.posegen import body as B
from reidtools.generate.posegen import lift as L
from reidtools.generate.posegen import render as R

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def render1(caps=(), radii=(), ells=(), size=(64, 80)):
    caps = np.asarray(caps, dtype=np.float64).reshape(1, -1, 2, 3)
    radii = np.asarray(radii, dtype=np.float64).reshape(1, -1)
    ells = np.asarray(ells, dtype=np.float64).reshape(1, -1, 4, 3)
    d, n = R.render(caps, radii, ells, size, dtype=torch.float64)
    return d[0].numpy(), n[0].numpy()


# ----------------------------------------------------------------------------- rendering, closed form
def test_capsule_depth_and_normal_at_known_pixels():
    # axis from (20, 30.5, 50) to (60, 30.5, 50) along u, radius 10. Pixel (row i, col j) is the ray
    # through (u, v) = (j + 0.5, i + 0.5) along +z, so the surface is at z = 50 - sqrt(r^2 - dv^2 - du^2)
    d, n = render1([[[20, 30.5, 50], [60, 30.5, 50]]], [10])
    assert d[30, 40] == pytest.approx(40.0)                          # on the axis: dv = 0
    np.testing.assert_allclose(n[30, 40], [0, 0, -1], atol=1e-12)    # facing the camera
    dv = 36.5 - 30.5                                                 # row 36: 6 px below the axis
    assert d[36, 40] == pytest.approx(50 - math.sqrt(100 - dv * dv))  # 42.0
    np.testing.assert_allclose(n[36, 40], [0, dv / 10, -math.sqrt(100 - dv * dv) / 10], atol=1e-12)
    # the end cap, a sphere around (60, 30.5, 50): column 65 -> du = 5.5
    du = 65.5 - 60
    assert d[30, 65] == pytest.approx(50 - math.sqrt(100 - du * du))
    np.testing.assert_allclose(n[30, 65], [du / 10, 0, -math.sqrt(100 - du * du) / 10], atol=1e-12)
    assert np.isinf(d[30, 71]) and np.isinf(d[41, 40])              # du = 11.5 > r; dv = 11 > r
    # the encoding: (128, 128, 255) faces the camera; green = up, so a normal pointing down (+v) is dark
    rgb = R.encode_normal(n, np.isfinite(d))
    assert tuple(rgb[30, 40]) == (128, 128, 255)
    assert tuple(rgb[36, 40]) == (128, round(255 * (1 - 0.6) / 2), round(255 * (1 + 0.8) / 2))   # (128, 51, 230)
    assert tuple(rgb[0, 0]) == (0, 0, 0)                              # background


def test_sphere_and_ellipsoid_depth_and_normal():
    # a sphere (zero-length capsule) of radius 8 at (40, 32, 100): pixel (35, 43) is du = dv = 3.5
    d, n = render1([[[40, 32, 100], [40, 32, 100]]], [8])
    r2 = 64 - 3.5 ** 2 - 3.5 ** 2
    assert d[35, 43] == pytest.approx(100 - math.sqrt(r2))
    np.testing.assert_allclose(n[35, 43], [3.5 / 8, 3.5 / 8, -math.sqrt(r2) / 8], atol=1e-12)
    # an axis-aligned ellipsoid, semi-axes 20 (u), 10 (v), 5 (z), centre (40.5, 32.5, 30):
    # at du = 12 on the centre row z = 30 - 5 sqrt(1 - 12^2/20^2) = 26; normal ~ (du/a^2, 0, -(dz)/c^2)
    d, n = render1(ells=[[[40.5, 32.5, 30], [20, 0, 0], [0, 10, 0], [0, 0, 5]]])
    assert d[32, 52] == pytest.approx(30 - 5 * math.sqrt(1 - 144 / 400))
    g = np.array([12 / 400, 0, -4 / 25])
    np.testing.assert_allclose(n[32, 52], g / np.linalg.norm(g), atol=1e-12)
    assert d[32, 40] == pytest.approx(25.0) and np.isinf(d[32, 61]) and np.isinf(d[43, 40])


def test_the_nearer_of_two_crossing_limbs_wins():
    # a horizontal limb at depth 50 crosses a vertical one at depth 80 at pixel (30, 40)
    horizontal, vertical = [[10, 30.5, 50], [70, 30.5, 50]], [[40.5, 5, 80], [40.5, 60, 80]]
    d, n = render1([horizontal, vertical], [4, 6])
    assert d[30, 40] == pytest.approx(46.0)           # 50 - r of the horizontal one
    assert d[50, 40] == pytest.approx(74.0)           # below it only the vertical one: 80 - 6
    d2, _ = render1([[[10, 30.5, 90], [70, 30.5, 90]], vertical], [4, 6])
    assert d2[30, 40] == pytest.approx(74.0)          # pushed behind: the vertical one shows
    # the body: seen from its left (azimuth 90), the left arm hides the right one
    from reidtools.generate.posegen.targets import Target, render_targets

    j = B.mean_body()
    r = render_targets([Target(j, B.BodyShape(), 90.0, 0.0)], (128, 64), ())[0]
    for part in ("elbow", "wrist", "knee"):
        assert r.visible[B.J[f"left_{part}"]] and not r.visible[B.J[f"right_{part}"]]
    front = render_targets([Target(j, B.BodyShape(), 0.0, 0.0)], (128, 64), ())[0]
    assert front.visible[B.J["nose"]] and front.visible[B.J["right_elbow"]]
    back = render_targets([Target(j, B.BodyShape(), 180.0, 0.0)], (128, 64), ())[0]
    assert not back.visible[B.J["nose"]]             # behind the head sphere


def test_depth_encoding_round_trip_and_range():
    depth = np.array([[np.inf, 0.0, -50.0, 50.0, 400.0]])
    enc = R.encode_depth(depth, z_root=0.0, scale=100.0)   # 100 px per body height, span 1 height
    # near = bright: v = 1 + 65534 * clip(0.5 - z / 100, 0, 1)
    assert enc.tolist() == [[0, 1 + 32767, 65535, 1, 1]]
    back = R.decode_depth(enc, 0.0, 100.0)
    assert np.isnan(back[0, 0]) and back[0, 1] == pytest.approx(0.0, abs=1e-3) and back[0, 2] == pytest.approx(-50.0)


# ----------------------------------------------------------------------------- camera and lifting
def test_a_90_degree_turn_swaps_shoulder_width_for_depth():
    j = B.mean_body()
    frame = (100.0, 64.0, 128.0)                      # 100 px per body height, root at (64, 128)
    ls, rs = B.J["left_shoulder"], B.J["right_shoulder"]
    front = L.project(j, 0.0, 0.0, frame)
    assert front[ls, 0] - front[rs, 0] == pytest.approx(100 * B.SHOULDER_WIDTH)   # left shoulder on the image right
    assert front[ls, 2] - front[rs, 2] == pytest.approx(0.0, abs=1e-12)
    side = L.project(j, 90.0, 0.0, frame)             # camera on the person's left
    assert side[ls, 0] - side[rs, 0] == pytest.approx(0.0, abs=1e-9)
    assert side[rs, 2] - side[ls, 2] == pytest.approx(100 * B.SHOULDER_WIDTH)     # the width is now depth, left nearer
    assert side[ls, 1] == pytest.approx(front[ls, 1])                            # heights do not change
    behind = L.project(j, 180.0, 0.0, frame)
    assert behind[ls, 0] - behind[rs, 0] == pytest.approx(-100 * B.SHOULDER_WIDTH)
    up = L.project(j, 0.0, 90.0, frame)               # from straight above: the torso's height vanishes
    assert up[ls, 1] == pytest.approx(up[B.J["left_hip"], 1])


def _pose_of(joints, azimuth, frame, size):
    p = L.project(joints, azimuth, 0.0, frame)
    h, w = size
    return {"format": "mediapipe33", "points": [[u / w, v / h, 0.9] for u, v, _ in p]}


def test_keypoints_reprojected_at_azimuth_0_equal_the_input_pose():
    size = (256, 128)
    j = B.mean_body()
    j[B.J["left_elbow"]] += (0.0, 0.03, 0.1)            # a bent, forward-swinging arm
    pose = _pose_of(j, 0.0, (200.0, 64.0, 150.0), size)
    lifted = L.lift(pose, size)
    assert lifted.azimuth == pytest.approx(0.0, abs=1e-6) or lifted.azimuth == pytest.approx(360.0, abs=1e-6)
    again = L.project(lifted.joints, 0.0, 0.0, L.frame_source(lifted, size))
    pts = np.asarray(pose["points"])
    np.testing.assert_allclose(again[:, 0] / size[1], pts[:, 0], atol=1e-12)
    np.testing.assert_allclose(again[:, 1] / size[0], pts[:, 1], atol=1e-12)
    # at another target size of the same aspect, normalised positions are the same
    half = L.project(lifted.joints, 0.0, 0.0, L.frame_source(lifted, (128, 64)))
    np.testing.assert_allclose(half[:, 0] / 64, pts[:, 0], atol=1e-12)


def test_lifting_recovers_a_known_3d_pose():
    # ground truth: the mean body (the lift's own prior) with a bent arm and a forward step, seen at 30 deg
    j = B.mean_body()
    for name, off in (("left_elbow", (0, 0.02, 0.08)), ("left_wrist", (0, 0.08, 0.2)), ("right_knee", (0, 0.03, 0.1))):
        j[B.J[name]] += off
    # keep the bones at their lengths: re-place children along the bent directions
    for parent, child in (("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_hip", "right_knee"),
                          ("right_knee", "right_ankle")):
        length = next(lg for p, c, lg, *_ in B.LIMBS if (p, c) == (parent, child))
        v = j[B.J[child]] - j[B.J[parent]]
        j[B.J[child]] = j[B.J[parent]] + v / np.linalg.norm(v) * length
    size = (256, 128)
    lifted = L.lift(_pose_of(j, 30.0, (200.0, 64.0, 150.0), size), size)
    assert lifted.azimuth == pytest.approx(30.0, abs=0.5)
    assert lifted.scale == pytest.approx(200.0, rel=1e-6)
    for name in ("left_elbow", "left_wrist", "right_knee"):
        np.testing.assert_allclose(lifted.joints[B.J[name]], j[B.J[name]], atol=5e-3)


def test_lifting_against_the_synthetic_datasets_ground_truth(synth_dir):
    """synth's json `view` is its ground truth (front / back / side), and in a side view the far
    side's keypoints are the less confident ones (synth._keypoints: 0.3-0.55 vs 0.88-0.99)."""
    from reidtools.shards import image, iter_samples, meta

    seen = {"front": 0, "back": 0, "side": 0}
    for s in iter_samples([str(synth_dir / "train-000000.tar"), str(synth_dir / "gallery-000000.tar")]):
        m = meta(s)
        w, h = image(s).size
        lf = L.lift(m["pose"], (h, w))
        cos_a = math.cos(math.radians(lf.azimuth))
        view = m["view"]
        seen[view] += 1
        if view == "front":
            assert cos_a > 0.3, (s["__key__"], lf.azimuth)
        elif view == "back":
            assert cos_a < -0.3, (s["__key__"], lf.azimuth)
        else:
            assert abs(cos_a) < 0.75, (s["__key__"], lf.azimuth)
            conf = np.asarray(m["pose"]["points"])[:, 2]
            near = "left" if conf[B.J["left_shoulder"]] > conf[B.J["right_shoulder"]] else "right"
            far = "right" if near == "left" else "left"
            cam = L.to_camera(lf.joints, lf.azimuth)
            assert cam[B.J[f"{near}_shoulder"], 2] < cam[B.J[f"{far}_shoulder"], 2], s["__key__"]
        # every lifted bone is at least its prior length (exactly it where the image shortens it)
        for parent, child, length, *_ in B.LIMBS:
            assert np.linalg.norm(lf.joints[B.J[child]] - lf.joints[B.J[parent]]) >= length - 1e-9
    assert min(seen.values()) > 0


def test_retargeting_keeps_directions_and_sets_lengths():
    j = B.mean_body()
    shape = B.BodyShape(shoulder=1.2, arm=0.9, leg=1.1, head=1.0)
    t = B.retarget(j, shape)
    ls, le = B.J["left_shoulder"], B.J["left_elbow"]
    assert t[ls, 0] == pytest.approx(1.2 * B.SHOULDER_WIDTH / 2)
    assert np.linalg.norm(t[le] - t[ls]) == pytest.approx(0.9 * B.UPPER_ARM)
    assert np.linalg.norm(t[B.J["left_knee"]] - t[B.J["left_hip"]]) == pytest.approx(1.1 * B.THIGH)


# ----------------------------------------------------------------------------- viewpoints
def _scan(n_ids=1):
    from reidtools.generate.posegen.targets import BankPose, Scan

    scan = Scan()
    for p in range(n_ids):
        scan.owner[("synth", p + 1)] = 0
        scan.first[("synth", p + 1)] = (f"k{p}", "train")
    scan.bank = [BankPose("b0", B.mean_body())]
    return scan


def test_uniform_viewpoints_pass_a_chi_square_test():
    from scipy.stats import chi2

    from reidtools.generate.posegen.targets import Viewpoints, plan_targets

    jobs = plan_targets(_scan(4), _scan().bank, Viewpoints("uniform"), None, 250, 0, 0.05)
    az = np.array([j.azimuth for j in jobs])
    assert len(az) == 1000 and az.min() >= 0 and az.max() < 360
    counts, _ = np.histogram(az, bins=12, range=(0, 360))
    stat = float(((counts - 1000 / 12) ** 2 / (1000 / 12)).sum())
    assert chi2.sf(stat, df=11) > 0.01, counts
    # and it is a test that can fail: a distribution squeezed into [0, 300) does
    squeezed, _ = np.histogram(az * 300 / 360, bins=12, range=(0, 360))
    assert chi2.sf(float(((squeezed - 1000 / 12) ** 2 / (1000 / 12)).sum()), df=11) < 1e-6


def test_dataset_viewpoints_reproduce_the_input_histogram():
    from scipy.stats import chi2

    from reidtools.generate.posegen.targets import dataset_viewpoints, plan_targets

    r = np.random.default_rng(0)
    inputs = np.concatenate([r.uniform(0, 30, 70), r.uniform(170, 190, 20), r.uniform(265, 275, 10)])  # front-heavy
    views = dataset_viewpoints(inputs)
    jobs = plan_targets(_scan(4), _scan().bank, views, None, 250, 3, 0.05)
    az = np.array([j.azimuth for j in jobs])
    got, _ = np.histogram(az, bins=views.edges)
    want, _ = np.histogram(inputs, bins=views.edges)
    assert np.all(got[want == 0] == 0)                     # nothing where the input has nothing
    expected = want[want > 0] / want.sum() * len(az)
    stat = float(((got[want > 0] - expected) ** 2 / expected).sum())
    assert chi2.sf(stat, df=int((want > 0).sum()) - 1) > 0.01, (got, want)


def test_histogram_file_and_elevation(tmp_path):
    from reidtools.errors import ReidError
    from reidtools.generate.posegen.targets import file_viewpoints

    f = tmp_path / "h.json"
    f.write_text(json.dumps({"edges": [80, 100, 260, 280], "weights": [1, 0, 3]}))
    v = file_viewpoints(str(f), (10.0, 20.0))
    r = np.random.default_rng(1)
    draws = [v.sample(r) for _ in range(400)]
    az = np.array([a for a, _ in draws])
    assert np.all(((az >= 80) & (az < 100)) | ((az >= 260) & (az < 280)))
    assert 0.65 < np.mean(az > 180) < 0.85                 # weight 3 of 4
    assert all(10 <= e <= 20 for _, e in draws)
    f.write_text(json.dumps({"edges": [0, 10], "weights": [1, 2]}))
    with pytest.raises(ReidError, match="len\\(edges\\)"):
        file_viewpoints(str(f))


# ----------------------------------------------------------------------------- the command
def test_poses_writes_target_samples(synth_dir, tmp_path):
    import io

    from PIL import Image

    from reidtools.shards import iter_samples

    train = str(synth_dir / "train-000000.tar")
    out = tmp_path / "t"
    assert run(["posegen", "poses", train, "-o", str(out), "--per-id", "2", "--size", "64x32", "--seed", "5", "-q"]) == 0
    samples = list(iter_samples([str(out / "train-000000.tar")]))
    assert len(samples) == 4 * 2
    keys = {s["__key__"] for s in iter_samples([train])}
    for s in samples:
        m = s["json"] if isinstance(s["json"], dict) else json.loads(s["json"])
        assert s["__key__"].endswith(f"-tgt{m['target_index']:03d}") and m["source"] in keys
        assert m["history"][-1]["tool"] == "posegen-poses" and m["body"]["model"] == "capsules"
        assert 0 <= m["viewpoint"]["azimuth"] < 360 and m["viewpoint"]["elevation"] == 0
        pts = np.asarray(m["pose"]["points"])
        assert m["pose"]["format"] == "mediapipe33" and pts.shape == (33, 3)
        depth = Image.open(io.BytesIO(s["depth.png"]))
        assert depth.mode.startswith("I;16") and depth.size == (32, 64)
        normal = np.asarray(Image.open(io.BytesIO(s["normal.png"])))
        d = np.asarray(depth)
        assert ((d > 0) == normal.any(axis=2)).all()        # one silhouette for both maps
        assert np.asarray(Image.open(io.BytesIO(s["skeleton.png"]))).any()
    # the same seed: the same targets; another: others
    again = tmp_path / "t2"
    assert run(["posegen", "poses", train, "-o", str(again), "--per-id", "2", "--size", "64x32", "--seed", "5",
                "--batch-size", "3", "-q"]) == 0
    a = {s["__key__"]: s["depth.png"] for s in samples}
    assert all(a[s["__key__"]] == s["depth.png"] for s in iter_samples([str(again / "train-000000.tar")]))


def test_poses_from_a_joint_file_and_clear_errors(synth_dir, tmp_path, capsys):
    from reidtools.shards import iter_samples

    train = str(synth_dir / "train-000000.tar")
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"format": "mediapipe33", "poses": [{"name": "stand", "joints": B.mean_body().tolist()}]}))
    assert run(["posegen", "poses", train, "-o", str(tmp_path / "f"), "--poses", str(bank), "--per-id", "1",
                "--size", "64x32", "--conditions", "depth", "-q"]) == 0
    out = list(iter_samples([str(tmp_path / "f" / "train-000000.tar")]))
    assert len(out) == 4 and all(s["json"]["source"] == "bank.json#stand" for s in out)
    assert all("skeleton.png" not in s and "normal.png" not in s and "depth.png" in s for s in out)
    assert run(["posegen", "poses", train, "-o", str(tmp_path / "g"), "--body", "smpl"]) == 2
    assert "--body smpl is not available" in capsys.readouterr().err
    bank.write_text(json.dumps({"format": "mediapipe33", "poses": [{"name": "x", "joints": [[0, 0, 0]]}]}))
    assert run(["posegen", "poses", train, "-o", str(tmp_path / "h"), "--poses", str(bank), "-q"]) == 1
    assert "pose 'x' must have 33" in capsys.readouterr().err
    assert run(["posegen", "poses", train, "-o", str(tmp_path / "i"), "--viewpoints", "nowhere.json"]) == 2
    assert run(["posegen", "poses", train, "-o", str(tmp_path / "j"), "--conditions", "skeleton,albedo"]) == 2


# ----------------------------------------------------------------------------- poses | fit | sample
FIT = ["--guider-channels", "4,8,8,16", "--size", "64x32", "--batch-size", "2", "--tau-ref", "0.2",
       "--tau-tar", "0.5", "--lr", "1e-3", "--save-every", "1", "-q"]


@pytest.mark.slow   # a fit of its own (~50 s on a busy 2-core machine); the default suite's twin is in test_posegen.py
def test_poses_then_sample_end_to_end_on_rendered_maps(synth_dir, tmp_path):
    from reidtools.generate.posegen.conditions import condition_tensors
    from reidtools.shards import image, iter_samples, meta
    from reidtools.testing.posegen import write_tiny_posegen

    models = write_tiny_posegen(str(tmp_path / "models"))
    train = str(synth_dir / "train-000000.tar")
    ckpt = tmp_path / "ckpt"
    # fit on depth/normal maps rendered for the training images' own poses
    assert run(["posegen", "fit", train, "-o", str(ckpt), "--base", models["base"], "--image-encoder",
                models["image_encoder"], *FIT, "--steps", "1", "--conditions", "skeleton,depth,normal",
                "--render-conditions"]) == 0
    assert json.loads((ckpt / "manifest.json").read_text())["options"]["render_conditions"] is True
    targets = tmp_path / "targets"
    assert run(["posegen", "poses", train, "-o", str(targets), "--per-id", "2", "--size", "64x32",
                "--viewpoints", "uniform", "-q"]) == 0
    made = {s["__key__"]: s for s in iter_samples([str(targets / "train-000000.tar")])}
    # the guiders read the 16-bit depth at full precision (more levels than an 8-bit map could hold)
    some = next(iter(made.values()))
    d = condition_tensors(meta(some)["pose"], {"depth": some["depth.png"]}, ["depth"], (64, 32), 0.3)["depth"]
    assert len(torch.unique(d[d > 0])) > 0 and float(d.max()) <= 1.0
    out = tmp_path / "gen"
    assert run(["posegen", "sample", str(ckpt), train, "-o", str(out), "--targets", str(targets / "train-000000.tar"),
                "--steps", "1", "--guidance", "1", "--tau-ref", "0.2", "-q"]) == 0
    gen = list(iter_samples([str(out / "train-000000.tar")]))
    assert len(gen) == 4 * 2                               # one image per target of each of the 4 ids
    for s in gen:
        m = meta(s)
        p = m["history"][-1]["parameters"]
        t = meta(made[p["target_source"]])
        assert p["pose_bank"] == "targets" and t["pid"] == m["pid"] and t["target_index"] == p["index"]
        assert p["target_pose"]["points"] == t["pose"]["points"] and p["target_viewpoint"] == t["viewpoint"]
        assert image(s).size == (32, 64)
    # --targets fixes the number per identity: --per-id with it is a usage error
    assert run(["posegen", "sample", str(ckpt), train, "-o", str(tmp_path / "x"), "--targets", str(targets),
                "--per-id", "3", "-q"]) == 2


def test_stdin_input_is_not_resumed_into_a_used_directory(synth_dir, tmp_path, monkeypatch, capsys):
    import io
    import sys

    data = (synth_dir / "train-000000.tar").read_bytes()
    for attempt, code in ((1, 0), (2, 1)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert run(["posegen", "poses", "-", "-o", str(tmp_path / "o"), "--per-id", "1", "--size", "32x16",
                    "--conditions", "skeleton", "-q"]) == code, attempt
    assert "stdin has no shard name" in capsys.readouterr().err
