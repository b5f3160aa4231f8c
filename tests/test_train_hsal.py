"""HSAL through the trainer (issue 16.6): lambda of HSGL eq. 12, the eq. 11 margin and the feature it
measures, as `reid train` applies them (not the loss functions alone: tests/test_reid_losses.py)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from _train_data import write_train
from reidtools.commands import cli as group
from reidtools.commands._options import run_cli

TINY = ["--backbone", "resnet-tiny", "--size", "32x16", "--batch", "3x4", "--workers", "0", "-q",
        "--epochs", "1", "--log-every", "1", "--cal-start-epoch", "0"]


def reid(*argv) -> int:
    return run_cli(group, [str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hsal")
    write_train(str(root / "train"))
    return root / "train"


def _spy(monkeypatch):
    """Record what the trainer passes to HSAL (eq. 10) and gets back, and every distance matrix."""
    from reidtools.reid import trainer

    calls, dists = [], []
    real_hsal, real_dist = trainer.hsal_triplet, trainer.pairwise_distance

    def hsal(dist, pids, clothes, cams, *, alpha, margin):
        out = real_hsal(dist, pids, clothes, cams, alpha=alpha, margin=margin)
        calls.append({"dist": dist, "margin": margin, "alpha": alpha, "value": float(out.detach())})
        return out

    def distance(feat, metric="euclidean"):
        out = real_dist(feat, metric)
        dists.append((feat.detach(), out))
        return out

    monkeypatch.setattr(trainer, "hsal_triplet", hsal)
    monkeypatch.setattr(trainer, "pairwise_distance", distance)
    return calls, dists


def _steps(run):
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "step"]


def test_cal_hsal_weighs_hatrip_by_lambda_0_1(data, tmp_path, monkeypatch):
    """HSGL eq. 12: L = L_ReID + lambda L_hatrip, "lambda = 0.1 for non-metric baselines" (§3.4.3;
    §4: "set to 0.1 for CAL and AIM, as their original implementations lack triplet loss")."""
    calls, _ = _spy(monkeypatch)
    run = tmp_path / "run"
    assert reid("train", data, "-o", run, *TINY, "--method", "cal+hsal") == 0
    steps = _steps(run)
    assert len(steps) == len(calls) > 0
    for rec, call in zip(steps, calls):
        assert rec["hatrip"] == pytest.approx(0.1 * call["value"], rel=1e-6)
        # the step's total is the sum of its terms: L_id + L_clothes + L_adv + 0.1 L_hatrip
        assert rec["loss"] == pytest.approx(rec["id"] + rec["clothes"] + rec["adversarial"] + rec["hatrip"], rel=1e-5)
    assert any(c["value"] > 0 for c in calls)       # a zero loss would hide a missing factor
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["hsal_lambda"] == 0.1 and "eq. 12" in cfg["sources"]["hsal_lambda"]


def test_hsal_lambda_option_and_metric_baseline(data, tmp_path, monkeypatch):
    calls, _ = _spy(monkeypatch)
    run = tmp_path / "run"
    assert reid("train", data, "-o", run, *TINY, "--method", "cal+hsal", "--hsal-lambda", "0.5") == 0
    assert [r["hatrip"] for r in _steps(run)] == pytest.approx([0.5 * c["value"] for c in calls], rel=1e-6)
    calls.clear()
    run = tmp_path / "metric"
    # hsal on the metric baseline: lambda_orig = the triplet weight (1), and hatrip replaces the triplet
    assert reid("train", data, "-o", run, *TINY, "--method", "hsal") == 0
    steps = _steps(run)
    assert "triplet" not in steps[0]
    assert [r["hatrip"] for r in steps] == pytest.approx([c["value"] for c in calls], rel=1e-6)


def test_margin_and_features_defaults_and_released_options(data, tmp_path, monkeypatch):
    """HSGL eq. 11 has a margin but no value; Alg. 1 line 27 (F = M_theta(B)) does not say which
    feature: defaults 0.3 on the pre-BN feature (as the triplet), released code 0.0 post-BN."""
    calls, dists = _spy(monkeypatch)
    run = tmp_path / "paper"
    assert reid("train", data, "-o", run, *TINY, "--method", "cal+hsal") == 0
    first = calls[0]
    assert first["margin"] == 0.3 and first["alpha"] == 0.05
    feat = next(f for f, d in dists if d is first["dist"])
    assert float(feat.min()) >= 0.0                          # pooled ReLU activations: the pre-BN feature
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["hsal_margin"] == 0.3 and cfg["options"]["hsal_features"] == "pre-bn"

    calls.clear()
    dists.clear()
    run = tmp_path / "released"
    assert reid("train", data, "-o", run, *TINY, "--method", "cal+hsal", "--hsal-margin", "0",
                "--hsal-features", "post-bn") == 0
    first = calls[0]
    assert first["margin"] == 0.0
    feat = next(f for f, d in dists if d is first["dist"])
    # the BNNeck output in training mode at the first step (weight 1, bias 0): zero batch mean per dimension
    assert torch.allclose(feat.mean(dim=0), torch.zeros(feat.shape[1]), atol=1e-5)
    assert float(feat.min()) < 0.0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["hsal_margin"] == 0.0 and cfg["sources"]["hsal_margin"] == "command line"
    assert cfg["options"]["hsal_features"] == "post-bn"


def test_hsal_margin_follows_margin(data, tmp_path):
    run = tmp_path / "run"
    assert reid("train", data, "-o", run, *TINY, "--method", "hsal", "--margin", "0.5") == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["options"]["hsal_margin"] == 0.5 and cfg["sources"]["hsal_margin"] == "--margin (command line)"
