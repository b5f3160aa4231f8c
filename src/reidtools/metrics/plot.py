"""CMC curve plots (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from reidtools.errors import ReidError


def plot_cmc(curves: list[tuple[str, list[float]]], path: str, title: str | None = None) -> None:
    """Write a PNG with one CMC curve (rank 1..len) per (label, cmc) pair, in percent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReidError("--plot needs matplotlib: pip install 'reidtools[plot]'") from None
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for label, cmc in curves:
        ranks = list(range(1, len(cmc) + 1))
        ax.plot(ranks, [100.0 * v for v in cmc], label=label, linewidth=1.6)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, max(len(c) for _, c in curves))
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise ReidError(f"--plot: cannot write {path!r} ({exc.strerror})") from None
    finally:
        plt.close(fig)


def curve_label(result: dict, name: str) -> str:
    return f"{name} ({result.get('protocol', '?')}: R1 {100 * result['rank1']:.1f}, mAP {100 * result['mAP']:.1f})"
