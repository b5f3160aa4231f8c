"""`reid posegen sample` at published size: a Pose-dIVE model of two SD-1.5 U-Nets (`sd15`) and CLIP
ViT-L/14 (`clip-vit-large-patch14`), random weights in the hub layout (reidtools/testing/fullsize/),
fit for one step by the real `reid posegen fit` (the cheapest honest way to get the folder `sample`
loads: the command writes it), then sampled through the real `reid posegen sample` at 64x32 with 2
DDIM steps and classifier-free guidance (both U-Nets, the skeleton guider and the image encoder run).
The fit's folder is also checked on disk: every tensor once, the optimizer state only where --resume
reads it.

Outside the default suite: `pytest -m fullsize tests/test_fullsize_posegen.py`; REID_FULLSIZE_LOG and
REID_FULLSIZE_LOCK as in tests/test_fullsize_fit.py (each build and run its own process).
"""

from __future__ import annotations

import json
import math
import os

import pytest

from test_fullsize import REID, _meta
from test_fullsize_fit import SD15_TEXT_DIM, _build, _header, _posegen_fit, _run, _synth

pytestmark = pytest.mark.fullsize

UNET = "denoising_unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("posegen-full")
    sd15 = _build("sd15", root / "sd15")
    encoder = _build("clip-vit-large-patch14", root / "clip-l")
    train = _synth(root / "synth")
    ckpt = root / "ckpt"
    _run("posegen fit sd15 x2", _posegen_fit(train, ckpt, sd15, encoder))
    return {"ckpt": ckpt, "train": train}


def _params(path) -> int:
    return sum(math.prod(s) for s in _header(path).values())


def test_fit_folder_holds_each_tensor_once(fitted):
    ckpt = fitted["ckpt"]
    last = ckpt / "checkpoint-1"
    files = {str(p.relative_to(ckpt)): p.stat() for p in ckpt.rglob("*") if p.is_file()}
    sizes = {rel: st.st_size for rel, st in files.items()}
    print(json.dumps(sizes, indent=1, sort_keys=True))   # the per-file figures of docs/posegen.md
    # the final artefact's weights are the checkpoint's files (hard links), not a second U-Net
    for rel in (UNET, "pose_guiders.safetensors"):
        a, b = files[rel], files[f"checkpoint-1/{rel}"]
        assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    on_disk = sum({(st.st_dev, st.st_ino): st.st_size for st in files.values()}.values())
    trained = _params(ckpt / UNET) + _params(ckpt / "pose_guiders.safetensors")
    assert round(_params(ckpt / UNET) / 1e6, 1) == 859.5
    # AdamW keeps two fp32 moments (exp_avg, exp_avg_sq) per trained value, + one step scalar per tensor
    moments = _header(last / "train_state.safetensors")
    assert sum(math.prod(s) for k, s in moments.items() if not k.endswith(".step")) == 2 * trained
    assert not any(p.name.startswith("train_state") for p in ckpt.iterdir())
    # fp32 weights + fp32 moments = 12 bytes per trained value; the headers (key names) stay under 1 MB
    assert 12 * trained < on_disk < 12 * trained + 1_000_000
    assert sizes[f"checkpoint-1/{UNET}"] < 4 * trained < 3.5e9


def test_sample_two_sd15_unets_clip_large(fitted, tmp_path):
    import numpy as np

    from reidtools.shards import expand_inputs, image, iter_samples

    out = tmp_path / "gen"
    _run("posegen sample sd15 x2", [*REID, "posegen", "sample", str(fitted["ckpt"]), fitted["train"], "-o", str(out),
                                    "--per-id", "1", "--steps", "2", "--size", "64x32", "--batch-size", "2",
                                    "--dtype", "fp32", "--device", "cpu", "-q"])
    # one output shard per input shard holding identities, named after it (no NAME.stats.json:
    # `posegen sample` writes its plans without the per-shard map's run records)
    assert sorted(os.listdir(out)) == ["train-000000.tar"]
    samples = list(iter_samples(expand_inputs([str(out)])))
    metas = _meta(out)
    # _synth: 2 training identities, --per-id 1
    assert len(samples) == 2 and sorted(m["pid"] for m in metas) == sorted({m["pid"] for m in metas})
    for s, m in zip(samples, metas):
        assert s["__key__"] == f"{m['source']}-pose000"
        img = np.asarray(image(s))
        assert img.shape == (64, 32, 3) and img.std() > 0   # a NaN anywhere would decode to a flat image
        assert "pose" not in m and "view" not in m          # they described the reference, not this image
        h = m["history"][-1]
        p = h["parameters"]
        assert h["tool"] == "posegen" and p["checkpoint_step"] == 1 and p["steps"] == 2
        assert p["size"] == [64, 32] and p["conditions"] == ["skeleton"] and p["guidance_scale"] == 3.5
        assert p["scheduler"] == "ddim" and p["reference"] == m["source"]
        assert len(p["target_pose"]["points"]) == 33 and p["target_pose"]["format"] == "mediapipe33"
    man = json.loads((fitted["ckpt"] / "manifest.json").read_text())
    assert man["embed_dim"] == SD15_TEXT_DIM
