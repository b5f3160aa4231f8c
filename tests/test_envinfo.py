"""`reid --version`: the versions and devices a bug report needs."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys


def test_version_reports_versions_builds_devices_and_providers():
    res = subprocess.run([sys.executable, "-m", "reidtools", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    first = {ln.split(" ", 1)[0]: ln for ln in lines if not ln.startswith(" ")}
    assert first["reidtools"] == f"reidtools {md.version('reidtools')}"
    assert first["python"].startswith(f"python {sys.version.split()[0]} ")
    import torch

    assert first["torch"].startswith(f"torch {torch.__version__} (")
    for dist in ("diffusers", "transformers", "accelerate", "scipy"):
        assert first[dist] == f"{dist} {md.version(dist)}"
    assert any(ln.strip() == "CUDA devices: none" or ln.strip().startswith("cuda:0 ") for ln in lines)
    import onnxruntime

    ort = first["onnxruntime"]
    assert ort.startswith(f"onnxruntime {onnxruntime.__version__} (") and "CPUExecutionProvider" in ort
    build = "onnxruntime-gpu" if "onnxruntime-gpu" in {d.metadata["Name"] for d in md.distributions()} else "onnxruntime"
    assert f"({build})" in ort
    assert any(ln.startswith("  reid uses: ") for ln in lines)


def test_report_names_a_missing_package_instead_of_failing(monkeypatch):
    from reidtools import envinfo

    real = envinfo._version
    monkeypatch.setattr(envinfo, "_version", lambda d: None if d == "diffusers" else real(d))
    assert "diffusers NOT INSTALLED" in envinfo.report()
