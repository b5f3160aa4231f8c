"""What every diffusion fine-tuning loop of the toolkit shares (`invert fit`, `posegen fit`, `finetune`).

- `batch_indices`: the data order as a function of (seed, step) alone, so a resumed run sees the very
  batches the uninterrupted run would have seen;
- `mixed_precision`: `--mixed-precision auto` resolved the same way everywhere;
- optimizer state as safetensors tensors + JSON param groups, so resuming unpickles nothing.
"""

from __future__ import annotations

from collections import defaultdict

from reidtools.errors import ReidError, UsageError
from reidtools.seeding import rng


def batch_indices(n: int, step: int, batch: int, seed: int) -> list[int]:
    """Indices of global batch `step` over n items: consecutive slices of per-epoch permutations."""
    out = []
    pos = step * batch
    while len(out) < batch:
        epoch, off = divmod(pos, n)
        perm = rng(seed, "epoch", epoch).permutation(n)
        take = min(batch - len(out), n - off)
        out.extend(int(i) for i in perm[off:off + take])
        pos += take
    return out


def mixed_precision(name: str, *, cpu: bool | None = None) -> str:
    """`auto` -> fp16 on CUDA, no on the CPU; else one of accelerate's names. `cpu`: whether the run
    is on the CPU (None: wherever torch finds no CUDA device).

    fp16 on the CPU is refused: accelerate then runs neither fp16 autocast nor loss scaling, so the
    fit would run its frozen fp16-cast weights through slow CPU kernels and train on unscaled fp16
    gradients. bf16 is accelerate's CPU autocast and is kept -- it halves the frozen weights' memory
    -- but warned about where the CPU has no native bf16 kernels: a full-size SD-1.5 fit step then
    runs many times slower than fp32 (bench/cpu_precision.py, BENCHMARKS.md)."""
    import torch

    if cpu is None:
        cpu = not torch.cuda.is_available()
    if name not in ("auto", "no", "fp16", "bf16"):
        raise ReidError(f"--mixed-precision {name!r} is not auto, no, fp16 or bf16")
    if name == "auto":
        return "no" if cpu else "fp16"
    if cpu and name == "fp16":
        raise UsageError("--mixed-precision fp16 needs a GPU: on the CPU accelerate runs no fp16 autocast and no "
                         "loss scaling; use bf16 (CPU autocast) or no")
    if cpu and name == "bf16":
        from reidtools.runtime import cpu_has_bf16_kernels

        if not cpu_has_bf16_kernels():
            import logging

            logging.getLogger("reidtools").warning(
                "--mixed-precision bf16 on a CPU without native bf16 kernels (no AVX512-BF16/AMX): the fit "
                "runs many times slower than with --mixed-precision no (fp32); keep bf16 only if fp32 "
                "does not fit in memory")
    return name


def optimizer_state_tensors(optimizer) -> tuple[dict, dict]:
    """Optimizer state as flat tensors (for safetensors) plus its param_groups (for JSON): no pickle."""
    import torch

    sd = optimizer.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            tensors[f"optim.{idx}.{name}"] = (val if torch.is_tensor(val) else torch.tensor(val)).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_state_from(tensors: dict, meta: dict) -> dict:
    """The inverse of `optimizer_state_tensors` (other keys in `tensors` are ignored)."""
    state: dict = defaultdict(dict)
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state[int(idx)][name] = val
    return {"state": dict(state), "param_groups": meta["param_groups"]}
