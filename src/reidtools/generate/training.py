"""What every diffusion fine-tuning loop of the toolkit shares (`invert fit`, `posegen fit`, `finetune`).

- `batch_indices`: the data order as a function of (seed, step) alone, so a resumed run sees the very
  batches the uninterrupted run would have seen;
- `mixed_precision`: `--mixed-precision auto` resolved the same way everywhere;
- optimizer state as safetensors tensors + JSON param groups, so resuming unpickles nothing.
"""

from __future__ import annotations

from collections import defaultdict

from reidtools.errors import ReidError
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


def mixed_precision(name: str) -> str:
    """`auto` -> fp16 on CUDA, no on the CPU; else one of accelerate's names."""
    import torch

    if name == "auto":
        return "fp16" if torch.cuda.is_available() else "no"
    if name not in ("no", "fp16", "bf16"):
        raise ReidError(f"--mixed-precision {name!r} is not auto, no, fp16 or bf16")
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
