"""Losses, sampler and progressive pairing of `reid train`, each against a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch

from reidtools.errors import ReidError
from reidtools.reid.losses import (adjust_distances, batch_hard_triplet, clothes_adversarial_loss,
                                   cross_entropy_ls, hard_sample_matrices, hsal_triplet, pairwise_distance)
from reidtools.reid.progressive import eligible_count, eligible_fraction, pair_variants
from reidtools.reid.sampler import pk_batches


def test_cross_entropy_label_smoothing_by_hand():
    # logits [2, 0, 0], target 0, eps 0.1: log Z = log(e^2 + 2) = 2.239545
    # log p = [-0.239545, -2.239545, -2.239545]; q = [0.9 + 0.1/3, 0.1/3, 0.1/3]
    # loss = 0.933333 * 0.239545 + 2 * 0.033333 * 2.239545 = 0.223575 + 0.149303 = 0.372878
    loss = cross_entropy_ls(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]), 0.1)
    assert loss.item() == pytest.approx(0.372878, abs=1e-5)
    # eps = 0 is plain cross-entropy
    plain = cross_entropy_ls(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]), 0.0)
    assert plain.item() == pytest.approx(0.239545, abs=1e-5)


def test_pairwise_distances():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    d = pairwise_distance(f, "euclidean")
    assert d[0, 1].item() == pytest.approx(5.0) and d[1, 1].item() < 1e-5
    c = pairwise_distance(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]), "cosine")
    assert c[0, 1].item() == pytest.approx(1.0) and c[0, 2].item() == pytest.approx(2.0)


# The HSAL batch: 4 samples, 1-D features f = [0, 1, 1.2, 2.1]
#   pids    [0,   0,   1,   1]
#   clothes ["a", "b", "a", "a"]  (labels 0, 1, 0, 0)
#   cams    [0,   0,   0,   1]
# Distances: d01=1, d02=1.2, d03=2.1, d12=0.2, d13=1.1, d23=0.9
# IS_HP (eq. 5): (0,1) same pid, clothes a != b; (2,3) same pid and clothes, camera 0 != 1.
# IS_HN: (0,2) and (0,3): different pid, both wear "a". (1,x): "b" is worn by nobody else.
# D' (eqs. 6-7, alpha 0.05): d01=1.05, d23=0.945, d02=1.2*0.95=1.14, d03=2.1*0.95=1.995, others equal.
# L_trip(D), margin 0.3, batch-hard:
#   a0: ap=d01=1,   an=min(d02,d03)=1.2 -> 0.1
#   a1: ap=1,       an=min(d12,d13)=0.2 -> 1.1
#   a2: ap=d23=0.9, an=min(d02,d12)=0.2 -> 1.0
#   a3: ap=0.9,     an=min(d03,d13)=1.1 -> 0.1        mean = 2.3 / 4 = 0.575
# L_trip(D'):
#   a0: ap=1.05,  an=min(1.14, 1.995)=1.14 -> 0.21
#   a1: ap=1.05,  an=min(0.2, 1.1)=0.2     -> 1.15
#   a2: ap=0.945, an=min(1.14, 0.2)=0.2    -> 1.045
#   a3: ap=0.945, an=min(1.995, 1.1)=1.1   -> 0.145   mean = 2.55 / 4 = 0.6375
# L_hatrip (eq. 10) = 0.575 + 0.5 * 0.6375 = 0.89375; with lambda = 0.1 (eq. 12): 0.089375
PIDS = torch.tensor([0, 0, 1, 1])
CLOTHES = torch.tensor([0, 1, 0, 0])
CAMS = torch.tensor([0, 0, 0, 1])
FEAT = torch.tensor([[0.0], [1.0], [1.2], [2.1]], dtype=torch.float64)


def test_hard_sample_matrices_eq5():
    is_hp, is_hn = hard_sample_matrices(PIDS, CLOTHES, CAMS)
    hp = {(i, j) for i in range(4) for j in range(4) if is_hp[i, j]}
    hn = {(i, j) for i in range(4) for j in range(4) if is_hn[i, j]}
    assert hp == {(0, 1), (1, 0), (2, 3), (3, 2)}
    assert hn == {(0, 2), (2, 0), (0, 3), (3, 0)}


def test_adjusted_distances_eq6_7():
    d = pairwise_distance(FEAT)
    is_hp, is_hn = hard_sample_matrices(PIDS, CLOTHES, CAMS)
    adj = adjust_distances(d, is_hp, is_hn, 0.05)
    assert adj[0, 1].item() == pytest.approx(1.05, abs=1e-6)
    assert adj[2, 3].item() == pytest.approx(0.945, abs=1e-6)
    assert adj[0, 2].item() == pytest.approx(1.14, abs=1e-6)
    assert adj[0, 3].item() == pytest.approx(1.995, abs=1e-6)
    assert adj[1, 2].item() == pytest.approx(0.2, abs=1e-6)


def test_batch_hard_triplet_by_hand():
    assert batch_hard_triplet(pairwise_distance(FEAT), PIDS, 0.3).item() == pytest.approx(0.575, abs=1e-6)


def test_hsal_aggregated_triplet_by_hand():
    d = pairwise_distance(FEAT)
    loss = hsal_triplet(d, PIDS, CLOTHES, CAMS, alpha=0.05, margin=0.3)
    assert loss.item() == pytest.approx(0.89375, abs=1e-6)
    assert (0.1 * loss).item() == pytest.approx(0.089375, abs=1e-7)
    # alpha = 0 reduces eq. 10 to 1.5 x the plain triplet
    assert hsal_triplet(d, PIDS, CLOTHES, CAMS, alpha=0.0).item() == pytest.approx(1.5 * 0.575, abs=1e-6)


def test_hsal_gradient_flows_to_features():
    f = FEAT.clone().requires_grad_(True)
    hsal_triplet(pairwise_distance(f), PIDS, CLOTHES, CAMS).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


def test_clothes_adversarial_loss_by_hand():
    # one sample, cos logits [0.5, 0, -0.5], scale 1, eps 0.1; its clothes class 0; its identity
    # wears classes {0, 1} (positives), class 2 is a negative.
    #   log p0 = 0.5 - log(e^-0.5 + e^0.5) = 0.5 - log(2.255252) = -0.313262
    #   log p1 = 0   - log(e^-0.5 + e^0)   = -log(1.606531)       = -0.474077
    #   q = 0.9 * [1,0,0] + 0.1/2 * [1,1,0] = [0.95, 0.05, 0]
    #   loss = 0.95 * 0.313262 + 0.05 * 0.474077 = 0.297599 + 0.023704 = 0.321303
    loss = clothes_adversarial_loss(torch.tensor([[0.5, 0.0, -0.5]]), torch.tensor([0]),
                                    torch.tensor([[1.0, 1.0, 0.0]]), scale=1.0, epsilon=0.1)
    assert loss.item() == pytest.approx(0.321303, abs=1e-5)
    # large logits stay finite (the max shift)
    big = clothes_adversarial_loss(torch.tensor([[1.0, 0.9, -1.0]]), torch.tensor([1]),
                                   torch.tensor([[1.0, 1.0, 0.0]]), scale=200.0)
    assert math.isfinite(big.item())


# ----------------------------------------------------------------------------- sampler
def test_pk_sampler_invariants_and_determinism():
    labels = [pid for pid in range(10) for _ in range(7)] + [10, 10]  # identity 10 has 2 < K images
    batches = pk_batches(labels, 4, 4, seed=3, epoch=0)
    assert batches
    for b in batches:
        ids = [labels[i] for i in b]
        assert len(b) == 16 and len(set(ids)) == 4
        assert all(ids.count(p) == 4 for p in set(ids))
    flat = [i for b in batches for i in b if labels[i] != 10]
    assert len(flat) == len(set(flat))                 # an image is not reused within an epoch
    assert batches == pk_batches(labels, 4, 4, seed=3, epoch=0)
    assert batches != pk_batches(labels, 4, 4, seed=3, epoch=1)
    assert batches != pk_batches(labels, 4, 4, seed=4, epoch=0)


def test_pk_sampler_subset_and_errors():
    labels = [0, 0, 1, 1, 2, 2, 9, 9]
    for b in pk_batches(labels, 2, 2, seed=0, epoch=0, indices=[0, 1, 2, 3, 4, 5]):
        assert all(labels[i] != 9 for i in b)
    with pytest.raises(ReidError, match="only 2 identities"):
        pk_batches([0, 0, 1, 1], 3, 2, seed=0, epoch=0)


# ----------------------------------------------------------------------------- progressive
def test_progressive_schedule_dlcr_defaults():
    assert [eligible_fraction(e) for e in (0, 4, 5, 9, 10, 14, 15, 60)] == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    # 5 variants (DLCR's released K): ceil(0.25 * 5) = 2, ceil(2.5) = 3, ceil(3.75) = 4, then 5
    assert [eligible_count(5, f) for f in (0.25, 0.5, 0.75, 1.0)] == [2, 3, 4, 5]
    assert eligible_count(10, 0.25) == 3 and eligible_count(1, 0.25) == 1 and eligible_count(0, 1.0) == 0


def test_pair_variants_uses_only_eligible_ones():
    variants = {"a": [10, 11, 12, 13], "b": [20, 21, 22, 23]}
    early = set()
    late = set()
    for batch in range(200):
        early.update(pair_variants(["a", "b", "c"], variants, 0, seed=1, batch_index=batch))
        late.update(pair_variants(["a", "b", "c"], variants, 20, seed=1, batch_index=batch))
    assert early == {10, 20}                        # ceil(0.25 * 4) = 1: the first variant only
    assert late == {10, 11, 12, 13, 20, 21, 22, 23}
    got = pair_variants(["a", "c", "b"], variants, 7, seed=1, batch_index=0)
    assert len(got) == 2 and got[0] in (10, 11) and got[1] in (20, 21)   # "c" has no variant
