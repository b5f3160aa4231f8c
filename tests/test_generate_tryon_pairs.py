"""Person x garment selection and HSGL eq. 3 (N_HP, N_HN) checked against hard_pair_counts."""

from __future__ import annotations

from collections import namedtuple

import pytest

from reidtools.generate.tryon.pairs import eq3_counts, select_pairs
from reidtools.reid.pairs import hard_pair_counts

Row = namedtuple("Row", "pid clothes camid generated")


def test_eq3_hand_computed():
    # C=2 identities with K=(3, 4) originals, m=2 garments, n=1 image each:
    # N_HP = 2*1*(3+2-1) + 2*1*(4+2-1) = 8 + 10 = 18; N_HN = 2*1*2 * 1*(2-1) = 4
    assert eq3_counts({0: 3, 1: 4}, m=2, n=1) == {"n_hp": 18, "n_hn": 4}


def test_select_pairs_all_and_per_id():
    persons = [("a1", 1, 0.2), ("a2", 1, 0.9), ("a3", 1, 0.5), ("b1", 2, None), ("b2", 2, None)]
    assert select_pairs(persons, ["g0", "g1"]) == [(p, g) for p in ("a1", "a2", "a3", "b1", "b2") for g in ("g0", "g1")]
    got = select_pairs(persons, ["g0", "g1", "g2"], per_id=2, garments_per=2)
    # identity 1 keeps its two best (a2 0.9, a3 0.5) in input order; identity 2 its first two
    assert got == [("a2", "g0"), ("a2", "g1"), ("a3", "g0"), ("a3", "g1"),
                   ("b1", "g0"), ("b1", "g1"), ("b2", "g0"), ("b2", "g1")]
    with pytest.raises(ValueError):
        select_pairs(persons, ["g0"], garments_per=0)


@pytest.mark.parametrize("m,n", [(1, 1), (2, 2), (3, 2)])
def test_eq3_matches_counted_pairs_on_selected_output(m, n):
    # originals: identity pid has K_i = pid + 3 images in 2 own outfits over 3 cameras
    K = {pid: pid + 3 for pid in range(4)}
    rows, persons = [], []
    for pid, k in K.items():
        for j in range(k):
            rows.append(Row(pid, f"{pid}_{j % 2}", j % 3, False))
            persons.append((f"p{pid}_{j}", pid, float(-j)))   # best first: j = 0, 1, 2 (distinct cameras)
    cams = {f"p{pid}_{j}": j % 3 for pid, k in K.items() for j in range(k)}
    garments = [f"g{i:04d}" for i in range(5)]
    pairs = select_pairs(persons, garments, per_id=n, garments_per=m)
    assert len(pairs) == m * n * len(K)
    rows += [Row(int(key[1:].split("_")[0]), g, cams[key], True) for key, g in pairs]
    counted = hard_pair_counts(rows)
    want = eq3_counts(K, m, n)
    assert (counted["n_hp_generated"], counted["n_hn_generated"]) == (want["n_hp"], want["n_hn"])
