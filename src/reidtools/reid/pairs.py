"""Hard-pair counts of a training pool (HSGL eq. 1 / eq. 3), logged per epoch in log.jsonl."""

from __future__ import annotations

from collections import Counter


def hard_pair_counts(rows) -> dict:
    """Ordered pairs (i, j), i != j, over `rows` (objects with pid, clothes, camid, generated):

    n_hp: same pid and (different clothes or different camera); n_hn: different pid, same clothes
    (eq. 1); n_hp_generated / n_hn_generated: the same counted from generated anchors only, which is
    what HSGL eq. 3 counts for try-on samples (N_HP, N_HN)."""
    rows = list(rows)
    by_pid = Counter(r.pid for r in rows)
    by_pid_look = Counter((r.pid, r.clothes, r.camid) for r in rows)
    by_clothes = Counter(r.clothes for r in rows)
    by_clothes_pid = Counter((r.clothes, r.pid) for r in rows)
    out = {"n_hp": 0, "n_hn": 0, "n_hp_generated": 0, "n_hn_generated": 0}
    for r in rows:
        hp = by_pid[r.pid] - by_pid_look[(r.pid, r.clothes, r.camid)]
        hn = by_clothes[r.clothes] - by_clothes_pid[(r.clothes, r.pid)]
        out["n_hp"] += hp
        out["n_hn"] += hn
        if r.generated:
            out["n_hp_generated"] += hp
            out["n_hn_generated"] += hn
    return out
