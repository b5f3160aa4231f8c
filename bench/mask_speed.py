"""Throughput (images/s) of `reid mask` engines on this machine, model loading excluded.

    .venv/bin/python bench/mask_speed.py [--engines labels,schp-onnx,segformer,pose] [--repeats 3]

- labels: synthetic 128x64 samples with ground-truth parse maps.
- schp-onnx: a random-weight ONNX conv stack at SCHP's LIP input (473x473, 20 labels) with the
  GMACs printed; it is NOT SCHP's ResNet-101 architecture, only a compute stand-in.
- segformer: SegFormer-B2-sized random weights (depths 3/4/6/3, widths 64/128/320/512, decoder 768,
  18 ATR labels, 512x512 input like mattmdjaga/segformer_b2_clothes), saved and loaded from a folder.
- pose: MediaPipe Pose + segmentation (needs the pose extra; run with a venv that has it).
Medians over --repeats runs are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np


def synth_samples(n, size=(128, 64)):
    from reidtools.data.synth import iter_synth

    out = []
    for s in iter_synth(ids=max(2, n // 8 + 2), outfits=2, cams=2, images_per=2, size=size, seed=0):
        out.append(s)
        if len(out) == n:
            break
    return out


def fresh(samples):
    return [{**s, "json": dict(s["json"])} for s in samples]


def timeit(fn, samples, repeats):
    times = []
    for _ in range(repeats):
        batch = fresh(samples)
        t = time.perf_counter()
        for _ in fn(iter(batch)):
            pass
        times.append(time.perf_counter() - t)
    return len(samples) / statistics.median(times)


def schp_standin(path):
    """473x473 -> 20 labels at 1/8 resolution: convs 3-64-128-256 (stride 2 each), 8 x 3x3 256->256, 1x1 -> 20."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x, c, hw, macs = [], [], "input.1", 3, 473, 0
    layers = [(64, 2), (128, 2), (256, 2)] + [(256, 1)] * 8
    for i, (co, stride) in enumerate(layers):
        w = (rng.standard_normal((co, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[stride, stride]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        hw = (hw + 2 - 3) // stride + 1
        macs += hw * hw * co * c * 9
        x, c = f"r{i}", co
    inits.append(numpy_helper.from_array((rng.standard_normal((20, c, 1, 1)) * 0.05).astype(np.float32), "wo"))
    nodes.append(helper.make_node("Conv", [x, "wo"], ["parsing"]))
    macs += hw * hw * 20 * c
    graph = helper.make_graph(nodes, "schp_standin",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 473, 473])],
                              [helper.make_tensor_value_info("parsing", TensorProto.FLOAT, [1, 20, hw, hw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return macs / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="labels,schp-onnx,segformer,pose")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from reidtools.vision import engines as E

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench-mask-")
    for engine in args.engines.split(","):
        if engine == "labels":
            s = synth_samples(400)
            rate = timeit(E.labels_map(E.MaskWriter(None, None, 0, "labels"), None), s, args.repeats)
            rows.append(("labels", "synthetic 128x64, ground-truth parse.png", len(s), rate))
        elif engine == "schp-onnx":
            from reidtools.vision.parsing_onnx import SchpOnnx

            gmacs = schp_standin(os.path.join(tmp, "schp.onnx"))
            parser = SchpOnnx(os.path.join(tmp, "schp.onnx"), device="cpu")
            s = synth_samples(6)
            rate = timeit(E.parser_map(E.MaskWriter(None, None, 0, engine), parser, 1), s, args.repeats)
            rows.append(("schp-onnx", f"random conv stack, 473x473 input, {gmacs:.1f} GMACs (stand-in)", len(s), rate))
        elif engine == "segformer":
            import torch
            from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

            from reidtools.data.labels import ATR_LABELS
            from reidtools.vision.parsing_segformer import SegformerParser

            torch.manual_seed(0)
            cfg = SegformerConfig(depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8],
                                  decoder_hidden_size=768, num_labels=18, id2label=dict(enumerate(ATR_LABELS)),
                                  label2id={n: i for i, n in enumerate(ATR_LABELS)})
            folder = os.path.join(tmp, "segformer-b2")
            SegformerForSemanticSegmentation(cfg).save_pretrained(folder)
            SegformerImageProcessor(size={"height": 512, "width": 512}).save_pretrained(folder)
            parser = SegformerParser(folder, device="cpu")
            s = synth_samples(8)
            rate = timeit(E.parser_map(E.MaskWriter(None, None, 0, engine), parser, 4), s, args.repeats)
            nparams = sum(p.numel() for p in parser.model.parameters()) / 1e6
            rows.append(("segformer", f"B2-size random weights ({nparams:.1f} M params), 512x512, batch 4", len(s), rate))
        elif engine == "pose":
            try:
                from reidtools.vision.pose_mediapipe import MediaPipePose

                est = MediaPipePose()
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"pose: skipped ({exc})")
                continue
            import matplotlib
            from PIL import Image

            photo = Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")).convert("RGB")
            s = [{"__key__": f"g{i}", "jpg": photo.resize((256, 128 * 3)), "json": {}} for i in range(20)]
            rate = timeit(E.pose_map(E.MaskWriter(None, None, 0, "pose"), est), s, args.repeats)
            rows.append(("pose", "MediaPipe Pose (complexity 1) + segmentation, 256x384 photo", len(s), rate))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU")
    print("| engine | input | images | images/s (median of %d) |" % args.repeats)
    print("| --- | --- | --- | --- |")
    for name, what, n, rate in rows:
        print(f"| {name} | {what} | {n} | {rate:.2f} |")


if __name__ == "__main__":
    main()
