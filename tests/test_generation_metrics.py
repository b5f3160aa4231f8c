"""Fréchet distance and identity preservation (reidtools.metrics.generation)."""

from __future__ import annotations

import numpy as np
import pytest

from reidtools.errors import ReidError
from reidtools.metrics.generation import (evaluate_generation, frechet_distance, frechet_distance_features,
                                          identity_preservation)


def test_frechet_closed_form_diagonal_gaussians():
    # Diagonal covariances commute, so tr((S1 S2)^(1/2)) = sum sqrt(s1 s2) and
    # FD = |mu1-mu2|^2 + sum(s1 + s2 - 2 sqrt(s1 s2)).
    # mu1=(0,0,0), mu2=(1,2,2): |diff|^2 = 1+4+4 = 9
    # s1=(1,4,9), s2=(4,1,1):  (1+4-2*2) + (4+1-2*2) + (9+1-2*3) = 1 + 1 + 4 = 6  -> FD = 15
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(15.0, abs=1e-9)


def test_frechet_matches_scipy_sqrtm_on_full_covariances():
    from scipy import linalg

    r = np.random.default_rng(0)
    a, b = r.normal(size=(6, 6)), r.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = r.normal(size=6), r.normal(size=6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    # symmetric in its arguments, zero for identical Gaussians
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_singular_covariances_stay_real_and_non_negative():
    r = np.random.default_rng(1)
    x, y = r.normal(size=(5, 32)), r.normal(size=(5, 32)) + 3.0   # N < D: rank-deficient covariances
    fd = frechet_distance_features(x, y)
    assert np.isfinite(fd) and fd > 32 * 9 * 0.5
    assert 0.0 <= frechet_distance_features(x, x) < 1e-5


def test_frechet_of_samples_approaches_the_gaussians():
    r = np.random.default_rng(2)
    x = r.normal(0.0, 1.0, size=(20000, 2))
    y = r.normal(0.0, 2.0, size=(20000, 2)) + np.array([3.0, 0.0])
    # closed form: 9 + 2 * (1 + 4 - 2*2) = 11
    assert frechet_distance_features(x, y) == pytest.approx(11.0, rel=0.03)


def test_identity_preservation_hand_made():
    # 1-d features, euclidean: generated g0 (pid 1) at 0, g1 (pid 2) at 10;
    # real r0 (pid 1) at 1, r1 (pid 1) at 3, r2 (pid 2) at 12.
    # intra pairs: |0-1|=1, |0-3|=3, |10-12|=2      -> mean 2, std sqrt(((1-2)^2+(3-2)^2+0)/3)=sqrt(2/3)
    # inter pairs: |0-12|=12, |10-1|=9, |10-3|=7    -> mean 28/3
    gen, real = np.array([[0.0], [10.0]]), np.array([[1.0], [3.0], [12.0]])
    st = identity_preservation(gen, [1, 2], real, [1, 1, 2], metric="euclidean", block=1)
    assert st.intra_mean == pytest.approx(2.0)
    assert st.intra_std == pytest.approx(np.sqrt(2 / 3))
    assert st.inter_mean == pytest.approx(28 / 3)
    assert (st.intra_pairs, st.inter_pairs, st.ids_matched) == (3, 3, 2)


def test_identity_preservation_cosine():
    # g (pid 1) = (1,0); real pid 1 = (1,1) -> 1 - 1/sqrt2; real pid 2 = (0,1) -> 1 - 0 = 1
    st = identity_preservation(np.array([[1.0, 0.0]]), [1], np.array([[1.0, 1.0], [0.0, 1.0]]), [1, 2])
    assert st.intra_mean == pytest.approx(1 - 1 / np.sqrt(2))
    assert st.inter_mean == pytest.approx(1.0)


def test_identity_preservation_needs_matching_ids():
    with pytest.raises(ReidError, match="pids do not match"):
        identity_preservation(np.ones((2, 3)), [1, 2], np.ones((2, 3)), [3, 4])


def _feature_shards(path, feats, pids, prefix):
    from PIL import Image

    from reidtools.shards import ShardWriter

    with ShardWriter(str(path), prefix=prefix) as w:
        for i, (f, p) in enumerate(zip(feats, pids)):
            w.write({"__key__": f"{prefix}{i}", "json": {"pid": int(p), "camid": 1},
                     "jpg": Image.new("RGB", (16, 32), (i * 20 % 255, 80, 120)), "feat.npy": f.astype(np.float32)})
    return [str(path / f"{prefix}-000000.tar")]


def test_evaluate_generation_on_stored_features(tmp_path):
    r = np.random.default_rng(3)
    real = _feature_shards(tmp_path, r.normal(size=(6, 3)), [1, 1, 2, 2, 3, 3], "real")
    gen = _feature_shards(tmp_path, r.normal(size=(4, 3)) + 1.0, [1, 2, 2, 3], "gen")
    res = evaluate_generation(real, gen, None, metric="euclidean")
    assert res["extractor"] == "feat.npy" and res["feature_dim"] == 3
    assert res["num_real"] == 6 and res["num_generated"] == 4 and res["frechet_distance"] > 0
    assert res["identity"]["intra_pairs"] == 2 + 2 * 2 + 2 and res["identity"]["ids_matched"] == 3


def test_evaluate_generation_with_a_transformers_vision_model(tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    model_dir = tmp_path / "clip"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(model_dir)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(model_dir)
    r = np.random.default_rng(4)
    real = _feature_shards(tmp_path, r.normal(size=(4, 3)), [1, 1, 2, 2], "real")
    gen = _feature_shards(tmp_path, r.normal(size=(3, 3)), [1, 2, 5], "gen")
    res = evaluate_generation(real, gen, str(model_dir))
    assert res["feature_dim"] == 16            # the model's pooled output, not the stored feat.npy
    assert res["identity"]["ids_matched"] == 2 and np.isfinite(res["frechet_distance"])


def test_evaluate_generation_with_a_reid_run_folder(tmp_path):
    from _train_data import write_train

    from reidtools.commands import cli as group
    from reidtools.commands._options import run_cli

    write_train(str(tmp_path / "real"), ids=4, per=1)
    write_train(str(tmp_path / "gen"), ids=3, per=1, prefix="gen")
    run = tmp_path / "run"
    assert run_cli(group, ["train", str(tmp_path / "real"), "-o", str(run), "--backbone", "resnet-tiny",
                           "--size", "32x16", "--batch", "2x2", "--workers", "0", "--epochs", "1", "-q"]) == 0
    res = evaluate_generation([str(tmp_path / "real" / "train-000000.tar")], [str(tmp_path / "gen" / "gen-000000.tar")],
                              str(run))
    assert res["extractor"] == str(run) and res["num_real"] == 16 and res["num_generated"] == 12
    # the generated images are copies of real ones, so same-id pairs are closer than different-id pairs
    assert res["identity"]["intra_mean"] < res["identity"]["inter_mean"]


def test_reid_eval_generated_real_cli(tmp_path, capsys):
    import json

    from reidtools.commands import cli as group
    from reidtools.commands._options import run_cli

    r = np.random.default_rng(5)
    real = _feature_shards(tmp_path, r.normal(size=(4, 3)), [1, 1, 2, 2], "real")
    gen = _feature_shards(tmp_path, r.normal(size=(3, 3)), [1, 2, 2], "gen")
    assert run_cli(group, ["eval", "--generated", gen[0], "--real", real[0], "--json", "-", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["extractor"] == "feat.npy" and res["identity"]["ids_matched"] == 2
    assert run_cli(group, ["eval", "--generated", gen[0]]) == 2          # --real missing: usage error
