"""Throughput (images/s) of `reid mask` engines on this machine, model loading excluded.

    .venv/bin/python bench/mask_speed.py [--engines labels,schp-onnx,segformer,pose] [--repeats 3]

- labels: synthetic 128x64 samples with ground-truth parse maps.
- schp-onnx: SCHP-sized random weights at its LIP input (473x473, 20 labels): ResNet-101 (dilated
  layer4, output stride 16) + PSP module, built with the `onnx` package (see `schp_sized`).
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
    """(images per wall second, images per CPU second of this process, all threads): the second is
    a contention-independent figure on a shared machine."""
    times, cpu = [], []
    for _ in range(repeats):
        batch = fresh(samples)
        t, c = time.perf_counter(), time.process_time()
        for _ in fn(iter(batch)):
            pass
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return len(samples) / statistics.median(times), len(samples) / statistics.median(cpu)


def schp_sized(path):
    """SCHP's compute at 473x473, random weights: its ResNet-101 backbone (BatchNorm folded away;
    layer4 dilated, output stride 16 as in SCHP) + its PSP context module (pooling branches 1/2/3/6,
    3x3 bottleneck 4096->512) + a 1x1 classifier to 20 labels. SCHP's edge, decoder and fusion
    branches (a few GMACs more) are omitted, so this slightly understates SCHP's cost."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    state = {"n": 0, "macs": 0}

    def name(prefix):
        state["n"] += 1
        return f"{prefix}{state['n']}"

    def conv(x, hw, cin, cout, k=1, stride=1, dil=1, relu=True):
        w = name("w")
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * np.sqrt(1 / (k * k * cin))).astype(np.float32), w))
        pad = dil * (k - 1) // 2
        y = name("c")
        nodes.append(helper.make_node("Conv", [x, w], [y], pads=[pad] * 4, strides=[stride] * 2, dilations=[dil] * 2))
        hw_out = (hw + 2 * pad - dil * (k - 1) - 1) // stride + 1
        state["macs"] += hw_out * hw_out * cout * cin * k * k
        if relu:
            r = name("r")
            nodes.append(helper.make_node("Relu", [y], [r]))
            y = r
        return y, hw_out

    x, hw = conv("input.1", 473, 3, 64, 3, 2)          # SCHP's deep stem: three 3x3 convs
    x, hw = conv(x, hw, 64, 64, 3)
    x, hw = conv(x, hw, 64, 128, 3)
    p = name("p")
    nodes.append(helper.make_node("MaxPool", [x], [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, hw, cin = p, (hw + 2 - 3) // 2 + 1, 128
    for planes, blocks, stride, dil in ((64, 3, 1, 1), (128, 4, 2, 1), (256, 23, 2, 1), (512, 3, 1, 2)):
        for i in range(blocks):
            s = stride if i == 0 else 1
            y, h2 = conv(x, hw, cin, planes)
            y, h2 = conv(y, h2, planes, planes, 3, s, dil)
            y, h2 = conv(y, h2, planes, planes * 4, relu=False)
            short = x
            if i == 0:
                short, _ = conv(x, hw, cin, planes * 4, 1, s, relu=False)
            a = name("a")
            nodes.append(helper.make_node("Add", [y, short], [a]))
            r = name("r")
            nodes.append(helper.make_node("Relu", [a], [r]))
            x, hw, cin = r, h2, planes * 4
    branches = [x]
    for size in (1, 2, 3, 6):  # PSP: adaptive pools as fixed-kernel average pools at this size, 1x1, resize back
        k = -(-hw // size)
        ap = name("ap")
        nodes.append(helper.make_node("AveragePool", [x], [ap], kernel_shape=[k, k], strides=[k, k], ceil_mode=1))
        y, _ = conv(ap, size, cin, 512)
        up, sc = name("up"), name("sc")
        inits.append(numpy_helper.from_array(np.array([1, 1, hw / size, hw / size], np.float32), sc))
        nodes.append(helper.make_node("Resize", [y, "", sc], [up], mode="linear"))
        branches.append(up)
    cat = name("cat")
    nodes.append(helper.make_node("Concat", branches, [cat], axis=1))
    x, hw = conv(cat, hw, cin + 4 * 512, 512, 3)
    out, hw = conv(x, hw, 512, 20, relu=False)
    nodes[-1].output[0] = "parsing"
    graph = helper.make_graph(nodes, "schp_sized",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 473, 473])],
                              [helper.make_tensor_value_info("parsing", TensorProto.FLOAT, [1, 20, hw, hw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    params = sum(int(np.prod(t.dims)) for t in inits)
    return state["macs"] / 1e9, params / 1e6


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

            gmacs, mparams = schp_sized(os.path.join(tmp, "schp.onnx"))
            parser = SchpOnnx(os.path.join(tmp, "schp.onnx"), device="cpu")
            s = synth_samples(4)
            rate = timeit(E.parser_map(E.MaskWriter(None, None, 0, engine), parser, 1), s, args.repeats)
            rows.append(("schp-onnx", f"SCHP-sized random weights (ResNet-101 OS16 + PSP; {mparams:.1f} M params, "
                                      f"{gmacs:.1f} GMACs), 473x473", len(s), rate))
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
    print("| engine | input | images | images/s wall (median of %d) | images per CPU-second |" % args.repeats)
    print("| --- | --- | --- | --- | --- |")
    for name, what, n, (rate, cpu_rate) in rows:
        print(f"| {name} | {what} | {n} | {rate:.3g} | {cpu_rate:.3g} |")


if __name__ == "__main__":
    main()
