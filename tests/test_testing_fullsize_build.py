"""`reidtools.testing.fullsize.build(name, folder, device=, dtype=)`: bench/gpu.sh makes the published-size
random weights where they will run (a GPU) in the dtype they run in (fp16). Checked in the default suite
on a shrunk copy of a data file (same builder code path, kilobytes instead of gigabytes)."""

from __future__ import annotations

import copy
import os

import pytest

torch = pytest.importorskip("torch")

from reidtools.testing import fullsize as F  # noqa: E402


@pytest.fixture
def small_clip(monkeypatch):
    """`clip-vit-large-patch14` (the transformers path: CLIPModel + its preprocessor file) at toy widths."""
    cfg = copy.deepcopy(F.load_config("clip-vit-large-patch14"))
    cfg["config"]["projection_dim"] = 8
    cfg["config"]["text_config"].update(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, projection_dim=8)
    cfg["config"]["vision_config"].update(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                          num_attention_heads=2, image_size=28, patch_size=14, projection_dim=8)
    monkeypatch.setattr(F, "load_config", lambda name: cfg)
    return cfg


def _dtypes(folder) -> set:
    from safetensors import safe_open

    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as fh:
        return {fh.get_slice(k).get_dtype() for k in fh.keys()}


@pytest.mark.parametrize("dtype, stored", [(None, {"F32"}), ("float16", {"F16"}), ("bfloat16", {"BF16"})])
def test_build_makes_and_saves_in_the_dtype_asked(small_clip, tmp_path, dtype, stored):
    from transformers import CLIPVisionModelWithProjection

    out = F.build("clip-vit-large-patch14", str(tmp_path / "m"), device="cpu",
                  dtype=getattr(torch, dtype) if dtype else None)
    assert torch.get_default_dtype() == torch.float32           # the builder's default dtype does not leak
    assert torch.empty(1).device.type == "cpu"                   # nor its default device
    assert _dtypes(out) == stored
    enc = CLIPVisionModelWithProjection.from_pretrained(out)     # Pose-dIVE's loader of this folder
    assert enc.config.projection_dim == 8 and os.path.isfile(os.path.join(out, "preprocessor_config.json"))


def test_default_dtype_restored_when_the_build_fails(small_clip, tmp_path):
    small_clip["architecture"] = "NoSuchModel"                    # fails inside the build
    with pytest.raises(AttributeError):
        F.build("clip-vit-large-patch14", str(tmp_path / "m"), device="cpu", dtype=torch.float16)
    assert torch.get_default_dtype() == torch.float32
