"""`reid export`: a ReID model (run folder or published checkpoint) to ONNX, with its preprocessing.

The graph maps a normalised float32 batch `images` (N, 3, H, W) to `features` (N, D); the batch axis
is dynamic, H and W are fixed (position embeddings and the pooled map depend on them). How images
must be prepared and which feature comes out are recorded in the file's metadata_props
(METADATA_KEYS), which `reid eval --model FILE.onnx` reads. Every export is checked against the torch
model on a random batch (max |Δ| recorded, and an error above --tolerance).

Exporter: torch.onnx's TorchScript exporter (`dynamo=False`). The torch.export-based one (the
default since torch 2.9) needs `onnxscript`, which this project does not depend on; the TorchScript
one needs nothing beyond torch, and the `onnx` package (the `export` extra) to write the metadata.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

import numpy as np

from reidtools import __version__
from reidtools.errors import ReidError

log = logging.getLogger("reidtools")
INPUT, OUTPUT = "images", "features"
METADATA_KEYS = {
    "reid.input_size": "HxW the image is resized to",
    "reid.input_layout": "NCHW",
    "reid.channel_order": "RGB",
    "reid.pixel_scale": "pixels are divided by this before normalisation (255: values in [0, 1])",
    "reid.mean": "per-channel mean subtracted (R,G,B)",
    "reid.std": "per-channel std divided by (R,G,B)",
    "reid.interpolation": "PIL resampling used for resizing (bilinear or bicubic)",
    "reid.feature": "which feature is the output (e.g. post-bn: after the BNNeck)",
    "reid.feature_dim": "D",
    "reid.flip_average": "true when the model's test protocol averages an image's and its mirror's features",
    "reid.source": "the run folder or checkpoint exported",
    "reid.source_format": "run, torchreid, fastreid, cal, clipreid or transreid",
    "reid.parity_max_abs": "max |onnxruntime - torch| on the export check batch",
}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ReidError("reid export needs the onnx package: pip install 'reidtools[export]'") from None
    return onnx


def metadata(model, parity: float) -> dict[str, str]:
    p = model.prep
    meta = {
        "reid.input_size": f"{p.size[0]}x{p.size[1]}", "reid.input_layout": "NCHW", "reid.channel_order": "RGB",
        "reid.pixel_scale": "255", "reid.mean": ",".join(repr(float(v)) for v in p.mean),
        "reid.std": ",".join(repr(float(v)) for v in p.std), "reid.interpolation": p.interpolation,
        "reid.feature": model.feature, "reid.feature_dim": str(model.dim),
        "reid.flip_average": "true" if model.flip else "false",
        "reid.source": model.source, "reid.source_format": str(model.info.get("format", "")),
        "reid.parity_max_abs": f"{parity:.3g}",
    }
    meta.update({f"reid.{k}": str(v) for k, v in model.info.items() if f"reid.{k}" not in meta and k != "format"})
    return meta


def _torch_export(net, x, path: str, opset: int) -> None:
    import torch

    try:
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated in favour of the onnxscript-based one (see above)
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), path, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                              opset_version=opset, dynamo=False)
    except TypeError as exc:   # a torch without the TorchScript exporter
        raise ReidError(f"torch {torch.__version__} cannot export without onnxscript ({exc}): "
                        "pip install onnxscript") from None


def _run_onnx(path: str, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {INPUT: x})[0]


def export_onnx(model, output: str, *, opset: int = 17, tolerance: float = 1e-4, check_batch: int = 3,
                seed: int = 0, overwrite: bool = False) -> dict:
    """Write `model` (an opened FeatureModel, reidtools.reid.extract.open_model) to `output` (.onnx),
    atomically. Returns {"path", "metadata", "parity_max_abs"}; raises when the onnxruntime features
    of a random batch differ from the torch ones by more than `tolerance`."""
    import torch

    from reidtools.reid.extract import FeatureModel

    onnx = _onnx()
    if not isinstance(model, FeatureModel):
        raise ReidError(f"{getattr(model, 'source', model)}: only torch models can be exported (it is already ONNX?)")
    if os.path.exists(output) and not overwrite:
        raise ReidError(f"{output} exists (pass --overwrite to replace it)")
    model.to("cpu")
    h, w = model.prep.size
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((check_batch, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        expected = model.net(x).float().numpy()
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    try:
        _torch_export(model.net, x[:1], tmp, opset)   # batch 1 traced; the check runs batch 3 (dynamic axis)
        proto = onnx.load(tmp)
        onnx.save(proto, tmp)
        parity = float(np.abs(_run_onnx(tmp, x.numpy()) - expected).max())
        if not parity <= tolerance:
            raise ReidError(f"{model.source}: ONNX features differ from torch by {parity:.3g} "
                            f"(> --tolerance {tolerance:g}); not written")
        meta = metadata(model, parity)
        proto.doc_string = f"reidtools {__version__} reid export of {model.source}"
        proto.producer_name, proto.producer_version = "reidtools", __version__
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    log.info("wrote %s: %s features (%d-d) of %s, max |onnx - torch| %.3g", output, model.feature, model.dim,
             model.source, parity)
    return {"path": output, "metadata": meta, "parity_max_abs": parity}
