"""DLCR prediction refinement: the released rule on a hand-computed case, against a loop transcription
of the released code on random data, variant ordering/matching, and `reid refine` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reidtools.commands import cli
from reidtools.commands._options import run_cli
from reidtools.errors import SampleError
from reidtools.metrics import evaluate
from reidtools.metrics.protocols import PROTOCOLS, Meta
from reidtools.metrics.refine import Views, evaluate_refined, refine_scores, refined_distances
from reidtools.metrics.variants import match, variant_order
from reidtools.shards import ShardWriter


# ----------------------------------------------------------------------------- the rule by hand
def test_hand_computed_three_views_six_gallery_items():
    # gallery g0..g5 with pids A B C A D E (codes 0 1 2 0 3 4); top = 3; s = cos + 1 given directly.
    # view 0 (original): 1.6 1.8 1.5 1.2 1.7 1.0 -> top-3 g1 B 1.8, g4 D 1.7, g0 A 1.6; max 1.8
    #   start: {B: 1.8, D: 1.7, A: 1.6}; its own votes (s/max)s: B 1.8, D 2.89/1.8 = 1.605556,
    #   A 2.56/1.8 = 1.422222
    # view 1: 1.9 1.4 1.6 1.85 1.3 1.5 -> top-3 g0 A 1.9, g3 A 1.85, g2 C 1.6 -> {A: 1.9, C: 1.6}, max 1.9
    #   votes: A 1.9 (C is not in the map: ignored)
    # view 2: 1.7 1.75 1.2 1.1 1.0 1.65 -> top-3 g1 B 1.75, g0 A 1.7, g5 E 1.65, max 1.75
    #   votes: B 1.75, A 2.89/1.75 = 1.651429 (E ignored)
    # aggregated: B = 1.8 + 1.8 + 1.75 = 5.35; D = 1.7 + 1.605556 = 3.305556;
    #             A = 1.6 + 1.422222 + 1.9 + 1.651429 = 6.573651
    # original top-3 gets max(aggregated[pid], s): g1 5.35, g4 3.305556, g0 6.573651; the rest keep s
    # ranking before: g1 g4 g0 g2 g3 g5; after: g0 (6.57) g1 (5.35) g4 (3.31) g2 (1.5) g3 (1.2) g5 (1.0)
    # (g3, also A, stays 5th: only the original top-3 entries are re-scored)
    sims = torch.tensor([[[1.6, 1.8, 1.5, 1.2, 1.7, 1.0]],
                         [[1.9, 1.4, 1.6, 1.85, 1.3, 1.5]],
                         [[1.7, 1.75, 1.2, 1.1, 1.0, 1.65]]])
    pids = torch.tensor([0, 1, 2, 0, 3, 4])
    out, rows, idx, refined = refine_scores(sims, torch.zeros(1, 6, dtype=torch.bool), pids,
                                            torch.ones(1, 2, dtype=torch.bool), top=3)
    expected = [6.573651, 5.35, 1.5, 1.2, 3.305556, 1.0]
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5)
    assert rows.tolist() == [True] and idx[0].tolist() == [1, 4, 0]
    assert torch.argsort(-out[0], stable=True).tolist() == [0, 1, 4, 2, 3, 5]
    # metrics: query pid A from another camera; good = g0, g3
    q = Meta(["q"], np.array([0]), np.array([9]))
    g = Meta([f"g{i}" for i in range(6)], pids.numpy().astype(np.int64), np.ones(6, np.int64))
    views = Views(np.zeros((0, 4), np.float32), np.array([[0, 1]]))
    from reidtools.metrics.protocols import rank_distmat

    before = rank_distmat(2.0 - sims[0].numpy(), q, g, "market")
    after = rank_distmat(2.0 - out.numpy(), q, g, "market")
    assert before["rank1"] == 0.0 and after["rank1"] == 1.0
    assert before["mAP"] == pytest.approx((1 / 3 + 2 / 5) / 2) and after["mAP"] == pytest.approx((1 + 2 / 5) / 2)
    _ = views


def test_first_view_only_and_missing_views():
    sims = torch.tensor([[[1.6, 1.8, 1.5, 1.2, 1.7, 1.0]],
                         [[1.9, 1.4, 1.6, 1.85, 1.3, 1.5]],
                         [[1.7, 1.75, 1.2, 1.1, 1.0, 1.65]]])
    pids = torch.tensor([0, 1, 2, 0, 3, 4])
    none = torch.zeros(1, 6, dtype=torch.bool)
    # only view 1 present: A = 1.6 + 1.422222 + 1.9 = 4.922222; B = 3.6; D = 3.305556
    out, *_ = refine_scores(sims, none, pids, torch.tensor([[True, False]]), top=3)
    np.testing.assert_allclose(out[0].numpy(), [4.922222, 3.6, 1.5, 1.2, 3.305556, 1.0], rtol=1e-5)
    # no view present: the row is returned untouched
    out, rows, *_ = refine_scores(sims, none, pids, torch.tensor([[False, False]]), top=3)
    assert rows.tolist() == [False] and torch.equal(out[0], sims[0, 0])


def test_junk_is_not_in_any_top_k():
    # g2 (pid A, the query's camera) is junk: with the highest score in every view it would be the
    # original top-1; removed, the top-2 is g1 (B 1.8), g0 (A 1.6). view 1: g0 A 1.9, g1 B 1.4.
    # aggregated: B = 1.8 + 1.8 + 1.4^2/1.9 = 4.631579; A = 1.6 + 2.56/1.8 + 1.9 = 4.922222 -> g0 first
    sims = torch.tensor([[[1.6, 1.8, 1.95, 1.0]], [[1.9, 1.4, 1.99, 1.0]]])
    pids = torch.tensor([0, 1, 0, 2])
    removed = torch.tensor([[False, False, True, False]])
    out, _, idx, _ = refine_scores(sims, removed, pids, torch.tensor([[True]]), top=2)
    assert idx[0].tolist() == [1, 0]
    np.testing.assert_allclose(out[0].numpy(), [4.922222, 4.631579, 1.95, 1.0], rtol=1e-5)


# ----------------------------------------------------------------------------- vs the released code
def released_loop(sim_views, q_pids, q_cams, g_pids, g_cams, top):
    """A plain transcription of test_reranking_prcc's dict loop (pid -> score per view) on similarity
    matrices s = cos + 1, one per view; junk = same pid and camera. Returns the refined matrix."""
    original = sim_views[0].copy()
    for j in range(len(q_pids)):
        junk = np.flatnonzero((g_pids == q_pids[j]) & (g_cams == q_cams[j]))
        views = []
        for s in sim_views:
            order = np.argsort(s[j], kind="stable")
            order = order[np.isin(order, junk, invert=True)]
            # ties: the released code's unstable argsort; here a higher score, then the lower index
            order = sorted(order[-top - 3:], key=lambda i: (s[j][i], -i))[-top:]
            d = {}
            for i in order:
                d[g_pids[i]] = s[j][i]
            views.append(d)
        agg = dict(views[0])
        for d in views:
            mx = max(d.values())
            for p, v in d.items():
                if p in agg:
                    agg[p] += (v / mx) * v
        keep = [i for i in np.argsort(original[j], kind="stable") if i not in set(junk)][-top:]
        for i in keep:
            original[j, i] = max(agg[g_pids[i]], original[j, i])
    return original


def _random_set(rng, n, ids, cams):
    return Meta([f"k{i}" for i in range(n)], rng.integers(0, ids, n).astype(np.int64),
                rng.integers(1, cams + 1, n).astype(np.int64))


def test_matches_the_released_loop_on_random_data():
    rng = np.random.default_rng(3)
    nq, ng, dim, nviews = 30, 80, 8, 3
    q, g = _random_set(rng, nq, 10, 3), _random_set(rng, ng, 10, 3)
    qf = rng.normal(size=(nq, dim)).astype(np.float32)
    gf = rng.normal(size=(ng, dim)).astype(np.float32)
    vf = (qf[:, None, :] + 0.7 * rng.normal(size=(nq, nviews, dim))).reshape(-1, dim).astype(np.float32)
    index = np.arange(nq * nviews).reshape(nq, nviews)
    fn = refined_distances(qf, gf, Views(vf, index), q, g, PROTOCOLS["market"], top=5, block_bytes=1 << 14)
    got = 2.0 - fn(0, nq).numpy()
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    gn = norm(gf)
    sims = [norm(qf) @ gn.T + 1] + [norm(vf[index[:, v]]) @ gn.T + 1 for v in range(nviews)]
    want = released_loop([s.astype(np.float32) for s in sims], q.pid, q.camid, g.pid, g.camid, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, sims[0], atol=1e-3)   # the rule did change something


def test_plain_path_equals_reid_eval():
    """refine=False goes through the same trial/combination code and must give `reid eval`'s result."""
    rng = np.random.default_rng(5)
    q, g = _random_set(rng, 25, 8, 3), _random_set(rng, 90, 8, 3)
    qf, gf = rng.normal(size=(25, 6)).astype(np.float32), rng.normal(size=(90, 6)).astype(np.float32)
    views = Views(qf[:3].copy(), np.array([[0]] * 3 + [[-1]] * 22))
    for protocol, extra in (("market", {}), ("prcc", {"prcc_query": "cc", "prcc_gallery": "single-shot",
                                                     "num_trials": 3})):
        want = evaluate(qf, gf, q, g, protocol, **extra)
        got = evaluate_refined(qf, gf, q, g, views, protocol, refine=False, **extra)
        assert got == want


def test_rerank_plain_path_equals_reid_eval_rerank():
    rng = np.random.default_rng(6)
    q, g = _random_set(rng, 20, 6, 3), _random_set(rng, 60, 6, 3)
    qf, gf = rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(60, 6)).astype(np.float32)
    rr = {"k1": 5, "k2": 3, "lambda": 0.3}
    views = Views(qf.copy(), np.arange(20)[:, None])
    want = evaluate(qf, gf, q, g, "market", rerank=rr)
    assert evaluate_refined(qf, gf, q, g, views, "market", rerank=rr, refine=False) == want
    refined = evaluate_refined(qf, gf, q, g, views, "market", rerank=rr)
    assert refined["rerank"] == want["rerank"] and 0.0 <= refined["mAP"] <= 1.0


# ----------------------------------------------------------------------------- variants
def test_variant_order_prefers_history_then_suffix_then_key():
    hist = {"history": [{"tool": "mask"}, {"tool": "inpaint", "parameters": {"variant": 7}}]}
    assert variant_order("q1-x", hist) == (0, 7, "q1-x")
    assert variant_order("q1-inpaint03", {}) == (0, 3, "q1-inpaint03")
    assert variant_order("q1-other", {}) == (1, 0, "q1-other")
    keys = ["q1-inpaint10", "q1-zz", "q1-inpaint02", "q1-inpaint00"]
    assert sorted(keys, key=lambda k: variant_order(k, {})) == ["q1-inpaint00", "q1-inpaint02", "q1-inpaint10", "q1-zz"]


def test_match_orders_cuts_and_reports():
    rows = {"a": 0, "b": 1, "c": 2}
    recs = [("s", k, src, variant_order(k, {})) for k, src in
            [("a-inpaint02", "a"), ("a-inpaint00", "a"), ("a-inpaint01", "a"), ("b-inpaint00", "b"), ("a", None)]]
    index, counts = match(recs, rows, 3, views=2)
    assert index.tolist() == [[1, 2], [3, -1], [-1, -1]]
    assert counts == {"variants": 4, "originals_skipped": 1, "variants_beyond_views": 1}
    with pytest.raises(SampleError, match=r"s: zz-inpaint00: source 'zz' is not a query key"):
        match([("s", "zz-inpaint00", "zz", (0, 0, ""))], rows, 3, views=2)
    with pytest.raises(SampleError, match=r"s: stray: metadata lacks 'source'"):
        match([("s", "stray", None, (1, 0, "stray"))], rows, 3, views=2)


# ----------------------------------------------------------------------------- CLI end to end
DIM = 16


def _centers():
    return np.random.default_rng(99).normal(size=(10, DIM))


def write_prcc(tmp_path, *, noise=1.3, variants=2, skip_variants=(), bad_source=False):
    """PRCC-like feature shards: gallery camera A (camid 1), queries camera C (camid 3); variants are
    closer to the identity centre than their query (what a clothes-invariant view would give)."""
    rng = np.random.default_rng(0)
    c = _centers()
    with ShardWriter(str(tmp_path / "g"), prefix="gallery", maxcount=50) as w:
        for i in range(60):
            pid = i % 10
            w.write({"__key__": f"g{i:03d}", "json": {"pid": pid, "camid": 1, "clothes": f"{pid}_0"},
                     "feat.npy": (c[pid] + 0.9 * rng.normal(size=DIM)).astype(np.float32)})
    with ShardWriter(str(tmp_path / "q"), prefix="query", maxcount=50) as wq, \
            ShardWriter(str(tmp_path / "v"), prefix="var", maxcount=30) as wv:
        for i in range(40):
            pid = i % 10
            key = f"q{i:03d}"
            wq.write({"__key__": key, "json": {"pid": pid, "camid": 3, "clothes": f"{pid}_1"},
                      "feat.npy": (c[pid] + noise * rng.normal(size=DIM)).astype(np.float32)})
            if i in skip_variants:
                continue
            for k in range(variants):
                wv.write({"__key__": f"{key}-inpaint{k:02d}",
                          "json": {"pid": pid, "camid": 3, "source": key,
                                   "history": [{"tool": "inpaint", "parameters": {"variant": k}}]},
                          "feat.npy": (c[pid] + 0.6 * rng.normal(size=DIM)).astype(np.float32)})
        if bad_source:
            wv.write({"__key__": "nobody-inpaint00", "json": {"pid": 0, "camid": 3, "source": "nobody"},
                      "feat.npy": np.zeros(DIM, np.float32)})
    return str(tmp_path / "q"), str(tmp_path / "g"), str(tmp_path / "v")


def reid(args, capsys):
    rc = run_cli(cli, ["refine", "-q", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_end_to_end_with_feature_shards(tmp_path, capsys):
    q, g, v = write_prcc(tmp_path, skip_variants=(0, 1, 2))
    rc, out, err = reid([q, "-g", g, "--variants", v, "-p", "prcc", "--json", "-"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    for key in ("protocol", "mAP", "mINP", "rank1", "rank5", "rank10", "cmc", "num_query", "num_query_valid",
                "num_gallery", "unrefined", "refine"):
        assert key in res
    plain = res["unrefined"]
    assert set(plain) == set(res) - {"unrefined", "refine"}
    assert res["refine"]["queries"] == 40 and res["refine"]["queries_refined"] == 37
    assert res["refine"]["queries_unrefined"] == 3 and res["refine"]["views_used"] == 74
    assert res["refine"]["rule"] == "released" and res["refine"]["views"] == 4 and res["refine"]["top"] == 5
    # the un-refined figures are exactly `reid eval`'s
    rc, out_eval, _ = run_eval([q, "-g", g, "-p", "prcc", "--json", "-"], capsys)
    assert rc == 0 and json.loads(out_eval) == plain
    # variants nearer the identity help
    assert res["rank1"] > plain["rank1"]
    assert "unrefined:" in err and "refined queries 37 of 40" in err
    # --views 0: every query keeps its ranking
    rc, out, err = reid([q, "-g", g, "--variants", v, "-p", "prcc", "--views", "0", "--json", "-"], capsys)
    res0 = json.loads(out)
    assert rc == 0 and res0["rank1"] == plain["rank1"] and res0["mAP"] == plain["mAP"]


def run_eval(args, capsys):
    rc = run_cli(cli, ["eval", "-q", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_rerank_and_single_shot(tmp_path, capsys):
    q, g, v = write_prcc(tmp_path)
    rc, out, err = reid([q, "-g", g, "--variants", v, "-p", "prcc", "--rerank", "--k1", "5", "--k2", "3",
                         "--prcc-gallery", "single-shot", "--trials", "2", "--json", "-"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert len(res["trials"]) == 2 and res["rerank"] == {"k1": 5, "k2": 3, "lambda": 0.3}
    assert res["unrefined"]["rerank"] == res["rerank"] and res["num_gallery"] == 10


def test_cli_errors_name_the_variant(tmp_path, capsys):
    q, g, v = write_prcc(tmp_path, bad_source=True)
    rc, _, err = reid([q, "-g", g, "--variants", v, "-p", "prcc"], capsys)
    assert rc == 1 and "nobody-inpaint00: source 'nobody' is not a query key" in err
    assert err.count("\n") == 1
    rc, _, err = reid([q, "-g", g, "-p", "prcc"], capsys)
    assert rc == 2 and "--variants" in err


def test_cli_variants_without_features_need_a_model(tmp_path, capsys):
    q, g, _ = write_prcc(tmp_path, variants=0)
    with ShardWriter(str(tmp_path / "nv"), prefix="var") as w:
        w.write({"__key__": "q000-inpaint00", "json": {"pid": 0, "camid": 3, "source": "q000"}})
    rc, _, err = reid([q, "-g", g, "--variants", str(tmp_path / "nv"), "-p", "prcc"], capsys)
    assert rc == 1 and "q000-inpaint00: missing field 'feat.npy': pass --model" in err


@pytest.mark.slow
def test_cli_with_a_tiny_trained_run(tmp_path, capsys):
    """The whole chain on images: train a tiny run, then refine with image variants (no feat.npy).
    Slow only because of `reid train` (~20-40 s here); run with -m slow."""
    from _train_data import person, write_train

    keys = write_train(str(tmp_path / "train"), ids=4, per=1)
    assert run_cli(cli, ["train", str(tmp_path / "train"), "-o", str(tmp_path / "run"), "--backbone", "resnet-tiny",
                         "--size", "32x16", "--batch", "2x4", "--workers", "0", "-q", "--epochs", "1"]) == 0
    assert keys
    with ShardWriter(str(tmp_path / "q"), prefix="query") as wq, ShardWriter(str(tmp_path / "g"), prefix="gallery") as wg, \
            ShardWriter(str(tmp_path / "v"), prefix="var") as wv:
        for pid in range(100, 104):
            for k in range(2):
                wg.write({"__key__": f"g{pid}_{k}", "jpg": person(pid, 1, 0, k),
                          "json": {"pid": pid, "camid": 1, "clothes": f"{pid}_1"}})
            key = f"q{pid}"
            wq.write({"__key__": key, "jpg": person(pid, 2, 1, 0), "json": {"pid": pid, "camid": 3, "clothes": f"{pid}_2"}})
            for k in range(2):
                wv.write({"__key__": f"{key}-inpaint{k:02d}", "jpg": person(pid, 50 + k, 1, k),
                          "json": {"pid": pid, "camid": 3, "clothes": f"x{k}", "source": key}})
    rc, out, err = reid([str(tmp_path / "q"), "-g", str(tmp_path / "g"), "--variants", str(tmp_path / "v"),
                         "--model", str(tmp_path / "run"), "-p", "prcc", "--views", "2", "--json", "-"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert res["num_query"] == 4 and res["num_gallery"] == 8 and res["refine"]["views_used"] == 8
    assert 0.0 <= res["rank1"] <= 1.0 and 0.0 <= res["unrefined"]["rank1"] <= 1.0


@pytest.mark.slow
def test_acceptance_chain_on_the_synthetic_dataset(tmp_path, capsys):
    """synth -> mask -> caption (bank) -> inpaint the queries (tiny SD) -> train (tiny) -> refine."""
    from reidtools.data.synth import write_dataset
    from reidtools.testing.models import build_inpaint_pipeline

    def reid_(*args):
        return run_cli(cli, [str(a) for a in args])

    write_dataset(str(tmp_path / "synth"), ids=8, outfits=2, cams=2, images_per=2, size=(64, 32), seed=0)
    build_inpaint_pipeline(str(tmp_path / "sd"))
    synth = tmp_path / "synth"
    assert reid_("mask", "-q", synth / "train-000000.tar", "-o", tmp_path / "tm") == 0
    assert reid_("caption", "-q", "--engine", "template", tmp_path / "tm", "-o", tmp_path / "tc",
                 "--bank", tmp_path / "bank.json") == 0
    assert reid_("mask", "-q", synth / "query-000000.tar", "-o", tmp_path / "qm") == 0
    assert reid_("inpaint", "-q", tmp_path / "qm", "-o", tmp_path / "qv", "--model", tmp_path / "sd",
                 "--prompts", f"bank:{tmp_path / 'bank.json'}", "-k", 2, "--steps", 1, "--size", "64x32",
                 "--dtype", "fp32") == 0
    assert reid_("train", synth / "train-000000.tar", "-o", tmp_path / "run", "--backbone", "resnet-tiny",
                 "--size", "32x16", "--batch", "2x4", "--workers", "0", "-q", "--epochs", "1") == 0
    capsys.readouterr()
    rc, out, err = reid([str(synth / "query-000000.tar"), "-g", str(synth / "gallery-000000.tar"),
                         "--variants", str(tmp_path / "qv"), "--model", str(tmp_path / "run"), "-p", "cc",
                         "--json", "-"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert res["refine"]["queries_refined"] == res["refine"]["queries"] == res["num_query"] > 0
    assert res["refine"]["views_used"] == 2 * res["num_query"]
    assert set(res["unrefined"]) == set(res) - {"unrefined", "refine"}
