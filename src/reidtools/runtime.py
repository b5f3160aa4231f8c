"""Device and dtype choices shared by the model-bearing tools."""

from __future__ import annotations

from reidtools.errors import ReidError

DTYPES = ("fp32", "fp16", "bf16")


def best_device(requested: str | None = None):
    """`requested` if given (e.g. 'cpu', 'cuda:1'); else, under accelerate/torchrun, this process's own
    GPU (cuda:LOCAL_RANK), so N processes use N GPUs instead of all landing on cuda:0; else CUDA, then
    MPS, then CPU. Every model-bearing command picks its device here."""
    import os

    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ReidError(f"--device {requested}: CUDA is not available on this machine")
        return torch.device(requested)
    if torch.cuda.is_available():
        local = os.environ.get("LOCAL_RANK", "")
        if local:
            if not local.isdigit():
                raise ReidError(f"LOCAL_RANK={local!r} is not a process index (set by accelerate/torchrun)")
            return torch.device(f"cuda:{int(local) % torch.cuda.device_count()}")
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_bf16_kernels() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_WARNED: set = set()


def torch_dtype(name: str, device=None):
    """fp16/bf16/fp32 -> torch dtype. fp16 on CPU falls back to fp32 (CPU kernels are slow or missing).
    bf16 on a CPU without native bf16 kernels is kept -- it may be what makes a model fit in memory
    (IDM-VTON is ~28 GB in fp32) -- but warned about: convolutions there run up to ~200x slower than fp32
    (1.3x on 8x4 maps, 75-200x at 64x32-512x256: bench/cpu_precision.py)."""
    import torch

    if name not in DTYPES:
        raise ReidError(f"--dtype {name!r} is not one of {', '.join(DTYPES)}")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
    on_cpu = device is not None and torch.device(device).type == "cpu"
    if on_cpu and dtype == torch.float16:
        return torch.float32
    if on_cpu and dtype == torch.bfloat16 and "bf16-cpu" not in _WARNED and not cpu_has_bf16_kernels():
        import logging

        _WARNED.add("bf16-cpu")
        logging.getLogger("reidtools").warning(
            "--dtype bf16 on a CPU without native bf16 kernels (no AVX512-BF16/AMX): convolutions run "
            "up to ~200x slower than fp32; pass --dtype fp32 unless the model only fits in memory as bf16")
    return dtype


def dtype_name(dtype) -> str:
    """A torch dtype by its --dtype name (fp32, fp16, bf16; anything else as torch spells it)."""
    import torch

    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype).replace("torch.", ""))


def dtype_record(modules: dict, main: str) -> dict:
    """The precision a generator ran in, for `history`: `dtype` = that of `modules[main]` (the denoising
    network), and `dtypes` = {component: dtype} when the components differ. Read from the loaded weights,
    not from --dtype: a CPU runs fp16 as fp32 (`torch_dtype`) and a pipeline may keep a part in fp32 (the
    SDXL VAE, or a VAE on a CPU without bf16 kernels)."""
    names = {k: dtype_name(next(m.parameters()).dtype) for k, m in modules.items() if m is not None}
    out = {"dtype": names[main]}
    if len(set(names.values())) > 1:
        out["dtypes"] = names
    return out
