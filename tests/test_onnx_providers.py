"""ONNX Runtime provider choice: CUDA only where it really exists; the active provider is logged."""

from __future__ import annotations

import logging

import pytest

from reidtools.errors import ReidError
from reidtools.vision.parsing_onnx import SchpOnnx, choose_providers

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["AzureExecutionProvider", "CPUExecutionProvider"]


def test_gpu_build_without_a_gpu_asks_only_for_the_cpu():
    # onnxruntime-gpu lists CUDA even where no GPU exists; asking for it there prints an ERROR line
    assert choose_providers("auto", GPU_BUILD, cuda_devices=0) == ["CPUExecutionProvider"]


def test_gpu_build_with_gpus_asks_for_cuda_on_the_requested_device():
    assert choose_providers("auto", GPU_BUILD, 2) == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert choose_providers("cuda:1", GPU_BUILD, 2)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert choose_providers("cpu", GPU_BUILD, 2) == ["CPUExecutionProvider"]


def test_impossible_device_requests_are_one_clear_error():
    with pytest.raises(ReidError, match="no CUDA provider.*install onnxruntime-gpu"):
        choose_providers("cuda", CPU_BUILD, 1)
    with pytest.raises(ReidError, match="1 CUDA device"):
        choose_providers("cuda:3", GPU_BUILD, 1)
    with pytest.raises(ReidError, match="expected auto, cpu, cuda or cuda:N"):
        choose_providers("gpu", GPU_BUILD, 1)


def test_this_machine_runs_on_the_cpu_without_error_noise(tmp_path, caplog, capfd):
    """On this CPU machine (whichever onnxruntime build is installed): CPU provider, logged, no ERROR."""
    onnxruntime = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: the CPU-only path is not what runs here")
    from test_mask_engines import build_onnx  # tests/ is on sys.path (rootdir conftest)

    with caplog.at_level(logging.INFO, logger="reidtools"):
        parser = SchpOnnx(str(build_onnx(tmp_path / "parsing_lip.onnx")))
    assert parser.session.get_providers() == ["CPUExecutionProvider"]
    assert any(f"on CPUExecutionProvider (onnxruntime {onnxruntime.__version__})" in r.getMessage()
               for r in caplog.records)
    assert "error" not in capfd.readouterr().err.lower()
