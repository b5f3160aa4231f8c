"""The readable table of `reid eval` results."""

from __future__ import annotations


def table(result: dict) -> str:
    """A few lines: protocol, counts, and the headline figures in percent."""
    pct = lambda v: f"{100.0 * v:6.2f}"  # noqa: E731
    head = f"protocol {result['protocol']}  distance {result.get('distance', '?')}"
    if "rerank" in result:
        r = result["rerank"]
        head += f"  rerank k1={r['k1']} k2={r['k2']} lambda={r['lambda']}"
    if "tracklets" in result:
        head += f"  tracklets ({result['tracklets']['pool']} pooling)"
    counts = (f"queries {result['num_query']} (valid {result['num_query_valid']})  "
              f"gallery {result['num_gallery']}")
    if "trials" in result:
        counts += f"  trials {len(result['trials'])} (figures are their mean)"
    names = ("mAP", "mINP", "rank1", "rank5", "rank10")
    line1 = "  ".join(f"{n:>6}" for n in names)
    line2 = "  ".join(pct(result[n]) for n in names)
    return "\n".join([head, counts, line1, line2])
