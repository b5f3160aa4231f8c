"""Benchmarks for `reid invert` and the generation-quality measures.

1. Fréchet distance at FID size (D=2048): reid's symmetric-eigen trace term vs the usual
   scipy.linalg.sqrtm(S1 @ S2) (pytorch-fid's baseline), time and agreement.
2. One identity-token optimisation step on an SD-1.5-sized CLIP text encoder (49408 x 768 embedding,
   12 layers, random weights, batch 16 x 77 tokens): reid's trainable placeholder rows (forward hook)
   vs diffusers' textual-inversion recipe (the whole embedding matrix trainable, other rows restored
   after each AdamW step). Time per step and optimizer-state size.

Run: .venv/bin/python bench/invert.py [--dim 2048 --n 4000 --layers 12 --repeat 3]
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def timeit(fn, repeat):
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out), out


def bench_frechet(dim=2048, n=4000, repeat=3):
    from scipy import linalg

    from reidtools.metrics.generation import frechet_distance, gaussian_stats

    r = np.random.default_rng(0)
    mix = r.normal(size=(dim, dim)) / np.sqrt(dim)
    x = r.normal(size=(n, dim)) @ mix
    y = r.normal(size=(n, dim)) @ mix * 1.1 + 0.05
    m1, s1 = gaussian_stats(x)
    m2, s2 = gaussian_stats(y)

    def scipy_fd():
        covmean = linalg.sqrtm(s1 @ s2)
        covmean = covmean.real
        d = m1 - m2
        return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))

    t_ref, _ = timeit(scipy_fd, repeat)
    t_ours, _ = timeit(lambda: frechet_distance(m1, s1, m2, s2), repeat)
    ref, ours = scipy_fd(), frechet_distance(m1, s1, m2, s2)
    return {"dim": dim, "n": n, "scipy_sqrtm_s": t_ref, "reid_eigh_s": t_ours, "speedup": t_ref / t_ours,
            "fd_scipy": ref, "fd_reid": ours, "rel_diff": abs(ref - ours) / abs(ref)}


def bench_token_step(repeat=3, batch=16, layers=12):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from reidtools.generate.inversion.model import PlaceholderRows

    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=layers,
                         num_attention_heads=12, max_position_embeddings=77)
    n_new = 1000                                   # identities
    ids = torch.randint(0, 49408, (batch, 77))
    ids[:, 5] = torch.arange(batch) + 49408        # one identity token per caption
    results = {}

    # reid: frozen matrix, trainable rows via hook
    te = CLIPTextModel(cfg)
    te.requires_grad_(False)
    te.resize_token_embeddings(49408 + n_new, mean_resizing=False)
    emb = te.get_input_embeddings()
    rows = PlaceholderRows(emb, 49408, emb.weight[49408:])
    opt = torch.optim.AdamW([rows.weight], lr=5e-5, weight_decay=1e-2)

    def step_hook():
        te(ids)[0].float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step_hook()
    results["hook_s"], _ = timeit(step_hook, repeat)
    results["hook_optim_state_MB"] = sum(v.numel() * v.element_size() for s in opt.state.values()
                                         for v in s.values() if torch.is_tensor(v)) / 2**20
    rows.handle.remove()
    del te, opt

    # diffusers' recipe: whole matrix trainable, restore the frozen rows after the step
    te = CLIPTextModel(cfg)
    te.requires_grad_(False)
    te.resize_token_embeddings(49408 + n_new, mean_resizing=False)
    emb = te.get_input_embeddings()
    emb.weight.requires_grad_(True)
    orig = emb.weight.detach().clone()
    keep = torch.ones(49408 + n_new, dtype=torch.bool)
    keep[49408:] = False
    opt = torch.optim.AdamW([emb.weight], lr=5e-5, weight_decay=1e-2)

    def step_full():
        te(ids)[0].float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            emb.weight[keep] = orig[keep]

    step_full()
    results["full_matrix_s"], _ = timeit(step_full, repeat)
    results["full_optim_state_MB"] = sum(v.numel() * v.element_size() for s in opt.state.values()
                                         for v in s.values() if torch.is_tensor(v)) / 2**20
    results["speedup"] = results["full_matrix_s"] / results["hook_s"]
    results.update(batch=batch, layers=layers, new_tokens=n_new)
    return results


def main():
    import argparse

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=2048, help="feature dimension for the Fréchet benchmark")
    ap.add_argument("--n", type=int, default=4000, help="feature vectors per set")
    ap.add_argument("--layers", type=int, default=12, help="text-encoder layers (SD 1.5: 12)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    fd = bench_frechet(dim=a.dim, n=a.n, repeat=a.repeat)
    print("frechet:", {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fd.items()}, flush=True)
    tok = bench_token_step(repeat=a.repeat, layers=a.layers)
    print("token step:", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in tok.items()})


if __name__ == "__main__":
    main()
