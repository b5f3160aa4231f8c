"""reid eval metrics: hand-computed cases per protocol, and a property test against a deliberately
simple reference (per query: mask, stable argsort, cumulative sum)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reidtools.metrics.protocols import PROTOCOLS, Meta, _one_per, evaluate, rank_distmat


def meta(pids, cams=None, clothes=None, modality=None, prefix="k"):
    n = len(pids)
    return Meta([f"{prefix}{i:03d}" for i in range(n)], np.asarray(pids, np.int64),
                None if cams is None else np.asarray(cams, np.int64),
                None if clothes is None else np.asarray(clothes, object),
                None if modality is None else np.asarray(modality, object))


# ----------------------------------------------------------------------------- hand-computed cases
def test_market_hand_computed():
    # q0 pid1 cam1. g0 (pid1 cam1) is removed; ranking g1- g2+ g3- g4+ g5-:
    #   AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4 = 0.5; first hit at rank 2.
    # q1 pid2 cam2. g1 (pid2 cam2) removed; ranking g0- g2- g3- g4- g5+:
    #   AP = 1/5 = 0.2; INP = 1/5; first hit at rank 5.
    # q2 pid4: no match -> skipped.  mAP = (0.5 + 0.2)/2 = 0.35, mINP = 0.35,
    #   CMC@1 = 0, CMC@2..4 = 0.5, CMC@5.. = 1.
    g = meta([1, 2, 1, 3, 1, 2], [1, 2, 2, 1, 3, 1])
    q = meta([1, 2, 4], [1, 2, 1])
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]] * 3, np.float32)
    r = rank_distmat(d, q, g, "market")
    assert r["mAP"] == pytest.approx(0.35, abs=1e-12)
    assert r["mINP"] == pytest.approx(0.35, abs=1e-12)
    assert r["cmc"][:6] == pytest.approx([0, 0.5, 0.5, 0.5, 1, 1])
    assert len(r["cmc"]) == 50 and r["cmc"][-1] == 1
    assert (r["num_query"], r["num_query_valid"]) == (3, 2)
    assert rank_distmat(d, q, g, "general")["mAP"] == r["mAP"]


def test_ties_follow_gallery_order():
    # all distances equal: the ranking is the gallery order. q pid1 cam1; goods g1, g3 (cam 2):
    # ranking g0- g1+ g2- g3+ -> AP = (1/2 + 2/4)/2 = 0.5, INP = 0.5
    g = meta([2, 1, 3, 1], [1, 2, 1, 2])
    q = meta([1], [1])
    r = rank_distmat(np.zeros((1, 4), np.float32), q, g, "market")
    assert r["mAP"] == pytest.approx(0.5) and r["rank1"] == 0 and r["cmc"][1] == 1
    # -0.0 and +0.0 are the same distance: still gallery order
    r2 = rank_distmat(np.array([[0.0, -0.0, 0.0, -0.0]], np.float32), q, g, "market")
    assert r2["mAP"] == pytest.approx(0.5)


def test_cc_and_sc_hand_computed():
    # q pid1 cam1 clothes a.
    # g0 pid1 cam2 a (d .1), g1 pid2 cam2 x (.2), g2 pid1 cam2 b (.3), g3 pid1 cam1 b (.4), g4 pid1 cam3 c (.5)
    # CC: good g2, g4; removed g0 (same clothes), g3 (same cam); ranking g1- g2+ g4+:
    #   AP = (1/2 + 2/3)/2 = 7/12, INP = 2/3, rank1 0, rank2 1
    # SC: good g0; removed g2, g3, g4 (different clothes or same cam); ranking g0+ g1-: AP 1, rank1 1
    g = meta([1, 2, 1, 1, 1], [2, 2, 2, 1, 3], ["a", "x", "b", "b", "c"])
    q = meta([1], [1], ["a"])
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], np.float32)
    cc = rank_distmat(d, q, g, "cc")
    assert cc["mAP"] == pytest.approx(7 / 12) and cc["mINP"] == pytest.approx(2 / 3)
    assert cc["rank1"] == 0 and cc["cmc"][1] == 1
    sc = rank_distmat(d, q, g, "sc")
    assert sc["mAP"] == pytest.approx(1.0) and sc["mINP"] == pytest.approx(1.0) and sc["rank1"] == 1


def test_prcc_hand_computed():
    # queries: qa pid1 camC(3), qb pid1 camB(2). gallery (camera A = camid 1 only):
    # g0 pid1 A, g1 pid2 A, g2 pid1 B (not gallery), g3 pid1 A.
    # cc (qa): d = .5 .2 .0 .6 -> ranking g1- g0+ g3+: AP = (1/2 + 2/3)/2 = 7/12, rank1 0
    # sc (qb): d = .1 .2 .0 .3 -> ranking g0+ g1- g3+: AP = (1 + 2/3)/2 = 5/6, rank1 1
    q = meta([1, 1], [3, 2])
    g = meta([1, 2, 1, 1], [1, 1, 2, 1])
    d = np.array([[0.5, 0.2, 0.0, 0.6], [0.1, 0.2, 0.0, 0.3]], np.float32)
    cc = evaluate(None, None, q, g, "prcc", distmat=d, prcc_query="cc")
    assert cc["mAP"] == pytest.approx(7 / 12) and cc["rank1"] == 0
    assert (cc["num_query"], cc["num_gallery"]) == (1, 3)
    sc = evaluate(None, None, q, g, "prcc", distmat=d, prcc_query="sc")
    assert sc["mAP"] == pytest.approx(5 / 6) and sc["rank1"] == 1
    # single-shot sc: each trial draws one of g0/g3 for pid 1 (and g1 for pid 2):
    #   g0 drawn -> ranking g0+ g1- -> AP 1;  g3 drawn -> ranking g1- g3+ -> AP 1/2
    ss = evaluate(None, None, q, g, "prcc", distmat=d, prcc_query="sc", prcc_gallery="single-shot",
                  num_trials=10, seed=3)
    assert len(ss["trials"]) == 10 and all(t["num_gallery"] == 2 for t in ss["trials"])
    expected = []
    for t in range(10):
        pick = random.Random(3 + t).choice(["k000", "k003"])
        expected.append(1.0 if pick == "k000" else 0.5)
    assert [t["mAP"] for t in ss["trials"]] == pytest.approx(expected)
    assert ss["mAP"] == pytest.approx(np.mean(expected))
    assert [t["seed"] for t in ss["trials"]] == list(range(3, 13))


def test_sysu_hand_computed():
    # q0 pid1 cam3, q1 pid1 cam6; gallery (one per pid+cam, so every trial is the same):
    # g0 p2 c2 .1, g1 p2 c1 .2, g2 p1 c2 .3, g3 p3 c4 .4, g4 p1 c5 .5
    # q0 (cam 3): g0, g2 removed; ranking p2 p3 p1+ -> AP 1/3, INP 1/3, dedup hit at 3
    # q1 (cam 6): ranking p2 p2 p1+ p3 p1+ -> AP (1/3 + 2/5)/2 = 11/30, INP 2/5;
    #             dedup order p2 p1 p3 -> hit at 2 (the raw ranking would say 3)
    # mAP = (1/3 + 11/30)/2 = 0.35; mINP = (1/3 + 2/5)/2 = 11/30; CMC 0, .5, 1
    q = meta([1, 1], [3, 6])
    g = meta([2, 2, 1, 3, 1], [2, 1, 2, 4, 5])
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]] * 2, np.float32)
    r = evaluate(None, None, q, g, "sysu-all", distmat=d)
    assert len(r["trials"]) == 10
    assert r["mAP"] == pytest.approx(0.35) and r["mINP"] == pytest.approx(11 / 30)
    assert r["cmc"][:3] == pytest.approx([0, 0.5, 1])
    # indoor: gallery cams 1, 2 -> g0 g1 g2. q0: g0, g2 removed -> no match (skipped).
    # q1: ranking p2 p2 p1+ -> AP 1/3, dedup hit at 2.
    r = evaluate(None, None, q, g, "sysu-indoor", distmat=d, num_trials=2)
    assert r["mAP"] == pytest.approx(1 / 3) and r["num_query_valid"] == 1 and r["num_gallery"] == 3
    assert r["cmc"][:2] == pytest.approx([0, 1])


def test_llcm_hand_computed():
    # q0 pid1 cam1 rgb, q1 pid1 cam2 ir. gallery: g0 p1 c1 ir .1, g1 p2 c2 ir .2, g2 p1 c3 ir .3,
    # g3 p2 c3 ir .4, g4 p1 c4 rgb .5.
    # v2i: query q0, gallery g0-g3; g0 removed (same pid+cam); ranking p2 p1+ p2 -> AP 1/2, INP 1/2,
    #      dedup hit at 2.  i2v: query q1, gallery g4 -> AP 1, rank1 1.
    q = meta([1, 1], [1, 2], modality=["rgb", "ir"])
    g = meta([1, 2, 1, 2, 1], [1, 2, 3, 3, 4], modality=["ir", "ir", "ir", "ir", "rgb"])
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]] * 2, np.float32)
    v2i = evaluate(None, None, q, g, "llcm-v2i", distmat=d, num_trials=3)
    assert v2i["mAP"] == pytest.approx(0.5) and v2i["mINP"] == pytest.approx(0.5)
    assert v2i["cmc"][:2] == pytest.approx([0, 1]) and v2i["num_query"] == 1 and v2i["num_gallery"] == 4
    i2v = evaluate(None, None, q, g, "llcm-i2v", distmat=d, num_trials=3)
    assert i2v["mAP"] == pytest.approx(1.0) and i2v["rank1"] == 1 and i2v["num_gallery"] == 1


def test_one_per_identity_camera_matches_reference_draw():
    # the reference: random.seed(trial); for id in sorted(ids): for cam in cams: random.choice(sorted(files))
    rng = np.random.default_rng(1)
    pids, cams = rng.integers(0, 5, 60), rng.integers(1, 4, 60)
    m = meta(pids, cams)
    m.keys = [f"{p:04d}_c{c}_{i:03d}" for i, (p, c) in enumerate(zip(pids, cams))]
    for trial in range(3):
        random.seed(trial)
        expected = []
        for pid in sorted(set(pids.tolist())):
            for cam in (1, 2, 3):
                files = sorted(m.keys[i] for i in range(60) if pids[i] == pid and cams[i] == cam)
                if files:
                    expected.append(random.choice(files))
        assert [m.keys[i] for i in _one_per(m, [1, 2, 3], trial)] == expected


def test_no_match_and_empty_query_are_errors():
    q, g = meta([1], [1]), meta([2, 1], [1, 1])
    with pytest.raises(ValueError, match="no query has a match"):
        evaluate(None, None, q, g, "market", distmat=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="query set is empty"):
        evaluate(None, None, meta([1], [1]), g, "sysu-all", distmat=np.zeros((1, 2), np.float32))


# ----------------------------------------------------------------------------- property test
def reference(dist, q, g, protocol, max_rank=50):
    """Per query: mask, stable argsort, cumulative sum (written independently of the library)."""
    aps, inps, firsts = [], [], []
    nq = len(q)
    for i in range(nq):
        same = g.pid == q.pid[i]
        if protocol == "market":
            junk = same & (g.camid == q.camid[i])
            good = same & ~junk
        elif protocol == "cc":
            junk = same & ((g.camid == q.camid[i]) | (g.clothes == q.clothes[i]))
            good = same & (g.camid != q.camid[i]) & (g.clothes != q.clothes[i])
        elif protocol == "sc":
            junk = same & ((g.camid == q.camid[i]) | (g.clothes != q.clothes[i]))
            good = same & (g.camid != q.camid[i]) & (g.clothes == q.clothes[i])
        elif protocol == "sysu":
            junk = (q.camid[i] == 3) & (g.camid == 2)
            good = same & ~junk
        order = np.argsort(dist[i], kind="stable")
        keep = ~junk[order]
        match = good[order][keep].astype(np.int64)
        if protocol == "sysu":
            labels = g.pid[order][keep]
            _, first_idx = np.unique(labels, return_index=True)
            dedup = labels[np.sort(first_idx)]
            hit = np.flatnonzero(dedup == q.pid[i])
        if not match.any():
            continue
        cum = match.cumsum()
        pos = np.flatnonzero(match)
        aps.append(float((cum / np.arange(1, len(cum) + 1) * match).sum() / match.sum()))
        inps.append(cum[pos[-1]] / (pos[-1] + 1.0))
        firsts.append((hit[0] if protocol == "sysu" else pos[0]) + 1)
    if not aps:
        return None
    firsts = np.asarray(firsts)
    cmc = [(firsts <= r).mean() for r in range(1, max_rank + 1)]
    return {"mAP": np.mean(aps), "mINP": np.mean(inps), "cmc": cmc, "num_query_valid": len(aps)}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), nq=st.integers(1, 12), ng=st.integers(1, 40), ties=st.booleans(),
       protocol=st.sampled_from(["market", "cc", "sc", "sysu"]))
def test_matches_simple_reference(data, nq, ng, ties, protocol):
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    npid = data.draw(st.integers(1, 5))
    cams = (1, 2, 3, 6) if protocol == "sysu" else (1, 2, 3)
    q = meta(rng.integers(0, npid, nq), rng.choice(cams, nq), rng.choice(["a", "b"], nq))
    g = meta(rng.integers(0, npid, ng), rng.choice((1, 2, 4) if protocol == "sysu" else cams, ng),
             rng.choice(["a", "b"], ng))
    if ties:
        d = rng.integers(0, 4, (nq, ng)).astype(np.float32)
    else:
        d = rng.normal(size=(nq, ng)).astype(np.float32)
    ref = reference(d, q, g, protocol)
    name = "sysu-all" if protocol == "sysu" else protocol
    if ref is None:
        with pytest.raises(ValueError, match="no query has a match"):
            rank_distmat(d, q, g, name)
        return
    got = rank_distmat(d, q, g, name)
    assert got["num_query_valid"] == ref["num_query_valid"]
    assert got["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)
    assert got["mINP"] == pytest.approx(ref["mINP"], abs=1e-6)
    assert np.allclose(got["cmc"], ref["cmc"], atol=1e-6)


def test_block_size_does_not_change_results():
    from reidtools.metrics.protocols import rank_trial

    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(37, 8)).astype(np.float32), rng.normal(size=(90, 8)).astype(np.float32)
    q, g = meta(rng.integers(0, 6, 37), rng.integers(1, 4, 37)), meta(rng.integers(0, 6, 90), rng.integers(1, 4, 90))
    a = rank_trial(qf, gf, q, g, PROTOCOLS["market"], block_rows=5)
    b = rank_trial(qf, gf, q, g, PROTOCOLS["market"], block_rows=1000)
    assert a == b


def test_distances_match_numpy():
    from reidtools.metrics.distance import block_distance, prepare

    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(9, 7)).astype(np.float32)
    cos = block_distance(prepare(qf, "cosine"), prepare(gf, "cosine"), "cosine").numpy()
    qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
    assert np.allclose(cos, 1 - qn @ gn.T, atol=1e-5)
    euc = block_distance(prepare(qf, "euclidean"), prepare(gf, "euclidean"), "euclidean").numpy()
    assert np.allclose(euc, ((qf[:, None] - gf[None]) ** 2).sum(-1), atol=1e-4)


def test_evaluate_leaves_features_alone_unless_told():
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(50, 6)).astype(np.float32)
    q, g = meta(rng.integers(0, 5, 20), rng.integers(1, 4, 20)), meta(rng.integers(0, 5, 50), rng.integers(1, 4, 50))
    q0, g0 = qf.copy(), gf.copy()
    a = evaluate(qf, gf, q, g, "market")
    assert np.array_equal(qf, q0) and np.array_equal(gf, g0)
    b = evaluate(qf, gf, q, g, "market", copy=False)
    assert a == b
    assert np.allclose(np.linalg.norm(gf, axis=1), 1, atol=1e-6)  # normalised in place


def test_stable_sort_fallback_for_huge_galleries_agrees(monkeypatch):
    from reidtools.metrics import ranking

    rng = np.random.default_rng(5)
    q, g = meta(rng.integers(0, 4, 30), rng.integers(1, 4, 30)), meta(rng.integers(0, 4, 80), rng.integers(1, 4, 80))
    d = rng.integers(0, 5, (30, 80)).astype(np.float32)  # many ties
    fast = rank_distmat(d, q, g, "market")
    monkeypatch.setattr(ranking, "_KEY_COLS", 8)  # forces the stable-argsort path
    assert rank_distmat(d, q, g, "market") == fast
    ref = reference(d, q, g, "market")
    assert fast["mAP"] == pytest.approx(ref["mAP"], abs=1e-9) and fast["mINP"] == pytest.approx(ref["mINP"], abs=1e-9)
    assert np.allclose(fast["cmc"], ref["cmc"], atol=1e-9)
