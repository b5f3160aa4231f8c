"""Generation quality: Fréchet distance between feature sets, and identity preservation (DiVE Fig. 7).

Both work on features the caller extracted (a `reid train` run, a vision model, or stored `feat.npy`).
The Fréchet distance on Inception-V3 pool3 features is FID (Heusel et al. 2017); on any other
extractor it is a Fréchet distance in that feature space, and is reported under that name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidtools.errors import ReidError


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of the rows of `feats` (N, D), N >= 2."""
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ReidError(f"a Fréchet distance needs at least 2 feature vectors, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (round-off negatives clipped to 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as tr((A S2 A)^(1/2)) with A = S1^(1/2): S1 S2 is similar to the
    symmetric PSD A S2 A (A^-1 (A S2 A) A = S1 S2 when S1 is invertible, and by continuity
    otherwise), so both have the same non-negative eigenvalues; eigh on a symmetric matrix avoids the
    complex round-off that scipy.linalg.sqrtm of the non-symmetric product produces for singular
    covariances (N < D).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ReidError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    a = _psd_sqrt(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0.0, None)).sum()
    diff = mu1 - mu2
    # FD >= 0 exactly; with singular covariances sqrt() of round-off eigenvalues (~1e-13 -> 3e-7) can
    # push the sum a hair below zero
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross), 0.0)


def frechet_distance_features(real: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets."""
    if real.shape[1] != generated.shape[1]:
        raise ReidError(f"feature dimensions differ: real {real.shape[1]}, generated {generated.shape[1]}")
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(generated))


@dataclass
class IdentityStats:
    intra_mean: float
    intra_std: float
    intra_pairs: int
    inter_mean: float
    inter_std: float
    inter_pairs: int
    ids_matched: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _distances(q: np.ndarray, g: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    if metric == "euclidean":
        d2 = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
        return np.sqrt(np.clip(d2, 0.0, None))
    raise ReidError(f"unknown distance {metric!r} (expected cosine or euclidean)")


def identity_preservation(gen_feats: np.ndarray, gen_pids, real_feats: np.ndarray, real_pids, *,
                          metric: str = "cosine", block: int = 1024) -> IdentityStats:
    """Distances between generated and real images (DiVE Fig. 7, row 1).

    intra: over every pair (generated g, real r) with pid(g) == pid(r); inter: over every pair with
    pid(g) != pid(r). Lower intra and higher inter mean better identity preservation. `metric`:
    `cosine` (1 - cos) or `euclidean` (not squared). Computed in blocks of generated rows, so memory
    stays O(block x N_real).
    """
    gen = np.asarray(gen_feats, np.float64)
    real = np.asarray(real_feats, np.float64)
    gp, rp = np.asarray(gen_pids), np.asarray(real_pids)
    if gen.shape[1] != real.shape[1]:
        raise ReidError(f"feature dimensions differ: generated {gen.shape[1]}, real {real.shape[1]}")
    sums = np.zeros(2)   # [intra, inter]
    sqs = np.zeros(2)
    counts = np.zeros(2, dtype=np.int64)
    for start in range(0, len(gen), block):
        d = _distances(gen[start:start + block], real, metric)
        same = gp[start:start + block, None] == rp[None, :]
        for i, sel in enumerate((same, ~same)):
            vals = d[sel]
            sums[i] += vals.sum()
            sqs[i] += (vals * vals).sum()
            counts[i] += vals.size
    if counts[0] == 0:
        raise ReidError("no generated identity has real images among the real samples (pids do not match)")

    def mean_std(i: int) -> tuple[float, float]:
        if counts[i] == 0:
            return float("nan"), float("nan")
        m = sums[i] / counts[i]
        return float(m), float(np.sqrt(max(sqs[i] / counts[i] - m * m, 0.0)))

    (im, isd), (em, esd) = mean_std(0), mean_std(1)
    return IdentityStats(im, isd, int(counts[0]), em, esd, int(counts[1]),
                         len(set(gp.tolist()) & set(rp.tolist())))


def evaluate_generation(real_shards: list[str], gen_shards: list[str], extractor: str | None = None, *,
                        metric: str = "cosine", batch_size: int = 64, device: str | None = None,
                        progress: bool = False) -> dict:
    """Generation quality of `gen_shards` against `real_shards` on one feature extractor.

    `extractor`: a `reid train` run folder, a transformers vision model (id or folder), or None for
    the samples' stored `feat.npy` (how FID proper is computed: see docs/invert.md). Returns the
    Fréchet distance between the two feature sets and, when samples carry `pid`, the identity
    preservation distances (DiVE Fig. 7).
    """
    from reidtools.metrics.extractors import describe, make_extractor
    from reidtools.shards import iter_samples, meta

    real = list(iter_samples(real_shards))
    gen = list(iter_samples(gen_shards))
    if len(real) < 2 or len(gen) < 2:
        raise ReidError(f"need at least 2 real and 2 generated samples, got {len(real)} and {len(gen)}")
    extract = make_extractor(extractor, batch_size=batch_size, device=device, progress=progress)
    fr, fg = extract(real), extract(gen)
    out = {"extractor": describe(extractor), "num_real": len(real), "num_generated": len(gen),
           "feature_dim": int(fr.shape[1]), "frechet_distance": frechet_distance_features(fr, fg)}
    if fr.shape[1] >= min(len(real), len(gen)):
        out["note"] = ("fewer samples than feature dimensions: the covariances are singular and the "
                       "Fréchet distance is biased upwards; compare only runs of equal size")
    rp = [meta(s).get("pid") for s in real]
    gp = [meta(s).get("pid") for s in gen]
    if None not in rp and None not in gp and set(rp) & set(gp):
        stats = identity_preservation(fg, gp, fr, rp, metric=metric)
        out["identity"] = {"metric": metric, **stats.as_dict()}
    else:
        out["identity"] = None   # e.g. FID of generated IR against another dataset's real IR images
    return out


def generation_table(result: dict) -> str:
    """A readable summary of `evaluate_generation` (stderr of `reid eval --generated`)."""
    lines = [f"generation quality on {result['extractor']} features ({result['feature_dim']}-d): "
             f"{result['num_generated']} generated vs {result['num_real']} real",
             f"  Fréchet distance      {result['frechet_distance']:.4f}"]
    ident = result.get("identity")
    if ident:
        lines += [f"  intra-identity ({ident['metric']})  {ident['intra_mean']:.4f} ± {ident['intra_std']:.4f}"
                  f"  ({ident['intra_pairs']} pairs, {ident['ids_matched']} ids)",
                  f"  inter-identity ({ident['metric']})  {ident['inter_mean']:.4f} ± {ident['inter_std']:.4f}"
                  f"  ({ident['inter_pairs']} pairs)"]
    else:
        lines.append("  identity preservation: no pid shared by generated and real samples")
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    return "\n".join(lines)
