"""What `reid --version` prints for bug reports: versions, builds, and the devices/providers seen.

Versions come from installed metadata (no import); torch and onnxruntime are imported only to ask
them which devices and providers they really see. Nothing here raises: a broken install is
exactly when this report is wanted, so each failure becomes part of the text.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys

# import name is not always the distribution name
PACKAGES = ("diffusers", "transformers", "accelerate", "peft", "safetensors", "huggingface-hub", "tokenizers",
            "numpy", "pillow", "scipy", "webdataset", "click")
EXTRAS = {"mediapipe": "pose", "matplotlib": "plot", "onnx": "export", "fsspec": "remote"}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _torch_lines() -> list[str]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - reporting, not running
        return [f"torch: cannot import ({type(exc).__name__}: {exc})"]
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    lines = [f"torch {torch.__version__} ({build})"]
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                lines.append(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
        else:
            lines.append("  CUDA devices: none")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            lines.append("  mps: available")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"  devices: cannot query ({type(exc).__name__}: {exc})")
    return lines


def _onnxruntime_lines() -> list[str]:
    builds = [d for d in ("onnxruntime-gpu", "onnxruntime") if _version(d)]
    if not builds:
        return ["onnxruntime: not installed"]
    lines = []
    if len(builds) > 1:
        lines.append("onnxruntime: WARNING both onnxruntime and onnxruntime-gpu are installed; they share one "
                     "import name and break each other (uninstall both, reinstall one)")
    try:
        import onnxruntime as ort

        from reidtools.vision.parsing_onnx import _cuda_devices, choose_providers

        available = ort.get_available_providers()
        lines.append(f"onnxruntime {ort.__version__} ({' + '.join(builds)}); providers: {', '.join(available)}")
        used = choose_providers("auto", available, _cuda_devices())
        lines.append(f"  reid uses: {', '.join(p if isinstance(p, str) else p[0] for p in used)}"
                     + ("" if len(used) > 1 or "CUDAExecutionProvider" not in available else " (torch sees no GPU)"))
    except Exception as exc:  # noqa: BLE001
        lines.append(f"onnxruntime ({' + '.join(builds)}): cannot import ({type(exc).__name__}: {exc})")
    return lines


def report() -> list[str]:
    """The lines of the report."""
    lines = [f"reidtools {_version('reidtools') or 'not installed (running from a source tree)'}",
             f"python {platform.python_version()} ({platform.python_implementation()}, {platform.system()} "
             f"{platform.machine()}) at {sys.executable}"]
    lines += _torch_lines()
    for dist in PACKAGES:
        lines.append(f"{dist} {_version(dist) or 'NOT INSTALLED'}")
    lines += _onnxruntime_lines()
    for dist, extra in EXTRAS.items():
        lines.append(f"{dist} {_version(dist) or 'not installed'} (extra: {extra})")
    return lines
