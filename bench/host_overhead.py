"""Host-side CPU cost per generated image of `reid inpaint`, with a null model (U-Net and VAE that return
zeros at once), on one core: everything the CPU does around the GPU's denoising (decode source and
mask, resizes, diffusers' pre/post-processing, compositing, PNG encode, tar write, json).

    .venv/bin/python bench/host_overhead.py [--images 32] [--source 768x256] [--size 768x256] [--steps 50]

Runs the real `reid inpaint` command in this process (run_cli) with `load_pipeline` returning a
Stable Diffusion inpainting pipeline whose U-Net returns zeros and whose VAE is SD's 8x geometry
without convolutions (encode: zeros at 1/8; decode: zeros at full size), so what is timed is the host
work only. Reports ms per image (wall; CPU of all threads; CPU of the main thread, which is what
stands between GPU batches) of --repeats timed runs after a warm-up shard, and their median; then
the main thread's top functions by cumulative CPU time of one more run under cProfile (timed by
thread_time, so other threads and the machine's other load do not count; the profiler's own
per-call overhead inflates Python-heavy functions, so use it for shares, the timed runs for totals).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


_PIPE = []


def null_pipeline(model, *, device="cpu", dtype=None, **_):
    """Built once (the warm-up run) and reused, so the timed run measures per-image work only."""
    if not _PIPE:
        _PIPE.append(_build_null())
    return _PIPE[0]


def _build_null():
    import torch
    from diffusers.models.autoencoders.vae import DecoderOutput

    from reidtools.testing.models import make_inpaint_pipeline

    pipe = make_inpaint_pipeline(vae_channels=(8, 8, 8, 8))   # SD's 8x geometry; its convolutions are bypassed
    pipe.set_progress_bar_config(disable=True)

    def unet_forward(sample, timestep, encoder_hidden_states=None, return_dict=True, **kw):
        out = torch.zeros_like(sample[:, :4])
        return (out,) if not return_dict else type("O", (), {"sample": out})()

    class _Dist:
        def __init__(self, z):
            self.z = z

        def sample(self, generator=None):
            return self.z

        def mode(self):
            return self.z

    def vae_encode(x, return_dict=True):
        z = torch.zeros(x.shape[0], 4, x.shape[2] // 8, x.shape[3] // 8, dtype=x.dtype)
        return type("E", (), {"latent_dist": _Dist(z)})() if return_dict else (_Dist(z),)

    def vae_decode(z, return_dict=True, generator=None):
        x = torch.zeros(z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8, dtype=z.dtype)
        return DecoderOutput(sample=x) if return_dict else (x,)

    pipe.unet.forward = unet_forward
    pipe.vae.encode = vae_encode
    pipe.vae.decode = vae_decode
    return pipe


def write_inputs(folder: str, n: int, size: tuple[int, int]) -> str:
    from PIL import Image

    from reidtools.shards import ShardWriter

    h, w = size
    r = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 3 + y) % 256, (y * 2) % 256, (x * 4) % 256], -1).astype(np.int16)
    m = np.zeros((h, w), np.uint8)
    m[h // 5: 4 * h // 5, w // 6: 5 * w // 6] = 255
    with ShardWriter(folder, prefix="train", maxcount=n) as wr:
        for i in range(n):
            img = np.clip(base + r.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
            wr.write({"__key__": f"s{i:05d}", "jpg": Image.fromarray(img), "mask.png": Image.fromarray(m, "L"),
                      "json": {"dataset": "b", "split": "train", "pid": i, "camid": 0, "clothes": f"{i}_0"}})
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--source", default="768x256", help="HxW of the input images")
    ap.add_argument("--size", default="768x256", help="generation HxW")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (the median is reported)")
    ap.add_argument("--top", type=int, default=18, help="functions shown of one more, profiled run (0: none)")
    ap.add_argument("--inline-encode", action="store_true",
                    help="the baseline: encode images in the calling thread (TarStream before its encoder thread)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import reidtools.generate.inpaint.pipeline as pl
    from reidtools.commands import cli
    from reidtools.commands._options import run_cli

    pl.load_pipeline = null_pipeline
    if args.inline_encode:
        from reidtools.shards import writer as W

        def inline_write(self, sample):
            W.check_key(sample["__key__"], sample.get("__shard__", "<output>"))
            self._put(W._encode_sample(sample["__key__"], sample))
            self.count += 1

        W.TarStream.write = inline_write
    src = tuple(int(v) for v in args.source.split("x"))
    with tempfile.TemporaryDirectory() as work:
        warm = write_inputs(os.path.join(work, "warm"), args.batch_size, src)
        timed = write_inputs(os.path.join(work, "in"), args.images, src)
        common = ["--model", "null", "--prompts", "fixed:blue shirt black jeans", "-k", "1", "--steps",
                  str(args.steps), "--size", args.size, "--dtype", "fp32", "--device", "cpu", "--batch-size",
                  str(args.batch_size), "-q"]
        if run_cli(cli, ["inpaint", warm, "-o", os.path.join(work, "warm-out"), *common]):
            raise SystemExit("bench/host_overhead.py: the warm-up run failed")
        runs = []
        for r in range(args.repeats):     # timed without the profiler, whose overhead is per Python call
            out_dir = os.path.join(work, f"out{r}")
            t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
            if run_cli(cli, ["inpaint", timed, "-o", out_dir, *common]):
                raise SystemExit("bench/host_overhead.py: the timed run failed")
            runs.append((time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0))
        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir) if f.endswith(".tar"))
        # cProfile sees the calling (main) thread only, so time it by that thread's CPU time: the
        # breakdown of what stands between GPU batches, unaffected by the machine's other load
        prof = cProfile.Profile(time.thread_time)
        if args.top:
            prof.enable()
            run_cli(cli, ["inpaint", timed, "-o", os.path.join(work, "out-profiled"), *common])
            prof.disable()
    n = args.images
    print(f"# {n} images, source {args.source}, generation {args.size}, {args.steps} steps, batch {args.batch_size}, "
          f"1 thread; output {size / n / 1024:.1f} KiB per image; inline encode: {args.inline_encode}")
    # main thread CPU: what stands between two GPU batches; the rest runs beside them
    for wall, cpu, main_cpu in runs:
        print(f"run: host ms per image: wall {1000 * wall / n:.1f}, CPU {1000 * cpu / n:.1f} (all threads), "
              f"main thread CPU {1000 * main_cpu / n:.1f}")
    med = [1000 * statistics.median(r[i] for r in runs) / n for i in range(3)]
    print(f"median of {len(runs)}: host ms per image: wall {med[0]:.1f}, CPU {med[1]:.1f} (all threads), "
          f"main thread CPU {med[2]:.1f}")
    if args.top:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
        print("profiled run (main thread, thread_time; profiler overhead included):")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))


if __name__ == "__main__":
    main()
