"""Shared fixtures. Everything runs on the CPU with tiny data; see the README for `make test`."""

from __future__ import annotations

import os
import signal

import pytest

# Tests never reach a model hub: a model that is not a local folder must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# A non-interactive shell starts `cmd &` with SIGINT ignored, and children inherit an ignored signal
# through exec: the tests that interrupt a `reid` child with SIGINT would see it ignored. A handler
# (unlike SIG_IGN) is reset to the default on exec, so children start as they would from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


# ----------------------------------------------------------------------------- synthetic dataset
SYNTH_SMALL = dict(ids=8, outfits=2, cams=2, images_per=2, size=(64, 32), seed=0)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small synthetic dataset: DIR/{train,query,gallery}-000000.tar (rgb; 4 train + 4 test ids)."""
    from reidtools.data.synth import write_dataset

    out = tmp_path_factory.mktemp("synth")
    write_dataset(str(out), **SYNTH_SMALL)
    return out


@pytest.fixture(scope="session")
def synth_ir_dir(tmp_path_factory):
    """Like `synth_dir`, with modalities rgb+ir (camera 1 rgb, camera 2 ir)."""
    from reidtools.data.synth import write_dataset

    out = tmp_path_factory.mktemp("synth_ir")
    write_dataset(str(out), modalities=("rgb", "ir"), **SYNTH_SMALL)
    return out
