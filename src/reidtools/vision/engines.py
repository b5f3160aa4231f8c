"""`reid mask`'s engines behind one interface: samples in, samples with mask.png (+ parse.png) out."""

from __future__ import annotations

from dataclasses import dataclass

from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from reidtools.errors import SampleError
from reidtools.shards.sample import image, mask, meta, where
from reidtools.vision.masks import dilate, label_names, mask_from_parse, parse_label_list, repaint_ids

ENGINES = ("labels", "schp-onnx", "segformer", "pose")
NO_PARSE = "the labels engine needs a parse.png (datasets with parsing maps, `reid synth`); use --engine schp-onnx/segformer/pose"


class MaskWriter:
    """Turns parse maps into masks under a keep/repaint rule; caches the rule per label set."""

    def __init__(self, keep: str | None, repaint: str | None, dilate_px: int, engine: str,
                 model: str | None = None):
        self.keep, self.repaint, self.dilate_px = keep, repaint, dilate_px
        self.engine, self.model = engine, model
        self._ids: dict[str, list[int]] = {}

    def ids(self, label_set: str) -> list[int]:
        if label_set not in self._ids:
            # LabelError (a ValueError) names the bad label; the command turns it into a usage error
            keep = parse_label_list(self.keep, label_set)
            repaint = parse_label_list(self.repaint, label_set)
            self._ids[label_set] = repaint_ids(label_set, keep, repaint)
        return self._ids[label_set]

    def info(self, label_set: str | None) -> dict:
        d = {"engine": self.engine, "dilate": self.dilate_px}
        if self.model:
            d["model"] = self.model
        if label_set:
            names = label_names(label_set)
            d["repaint"] = [names[i] for i in self.ids(label_set)]
        return d

    def from_parse(self, sample: dict, parse: np.ndarray, label_set: str, write_parse: bool) -> dict:
        m = meta(sample)
        sample["mask.png"] = Image.fromarray(dilate(mask_from_parse(parse, self.ids(label_set)), self.dilate_px), "L")
        if write_parse:
            sample["parse.png"] = Image.fromarray(parse.astype(np.uint8), "L")
        m["parse_labels"] = label_set
        m["mask"] = self.info(label_set)
        return sample


def batched(samples: Iterable[dict], n: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for s in samples:
        batch.append(s)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def labels_map(writer: MaskWriter, default_labels: str | None):
    def fn(samples):
        for s in samples:
            parse = np.asarray(mask(s, "parse.png", hint=NO_PARSE))
            label_set = default_labels or meta(s).get("parse_labels")
            if label_set is None:
                raise SampleError(*where(s), "metadata lacks 'parse_labels' (lip/atr): pass --labels")
            try:
                writer.ids(label_set)
            except ValueError as exc:
                raise SampleError(*where(s), f"--keep/--repaint: {exc}") from None
            n = len(label_names(label_set))
            if parse.size and parse.max() >= n:
                raise SampleError(*where(s), f"parse.png holds label {int(parse.max())}, beyond the {n} {label_set} labels")
            yield writer.from_parse(s, parse, label_set, write_parse=False)
    return fn


def parser_map(writer: MaskWriter, parser, batch_size: int):
    def fn(samples):
        for batch in batched(samples, batch_size):
            parses = parser([image(s) for s in batch])
            for s, parse in zip(batch, parses):
                yield writer.from_parse(s, parse, parser.labels, write_parse=True)
    return fn


def pose_map(writer: MaskWriter, estimator):
    from reidtools.vision.pose_mask import pose_mask

    def fn(samples):
        for s in samples:
            pose, person = estimator(image(s))
            m = meta(s)
            m["pose"] = pose
            s["mask.png"] = Image.fromarray(dilate(pose_mask(pose["points"], person), writer.dilate_px), "L")
            m["mask"] = writer.info(None)
            yield s
    return fn


@dataclass
class MaskRun:
    """`reid mask`'s options. The default rule is DLCR's ID-preserving mask (seed 000 §3.1)."""
    inputs: tuple
    output: str
    engine: str = "labels"
    model: str | None = None
    labels: str | None = None
    keep: str | None = None
    repaint: str | None = None
    dilate_px: int = 0
    batch_size: int = 8
    device: str = "auto"
    shard_index: int = 0
    num_shards: int = 1
    seed: int = 0
    overwrite: bool = False


def run_mask(run: MaskRun, *, progress: bool = True):
    """Write mask.png / parse.png with the chosen engine; returns the MapReport."""
    from reidtools.errors import UsageError
    from reidtools.shards import expand_inputs, map_shards
    from reidtools.vision.masks import LabelError

    def check(writer, label_set):
        try:
            writer.ids(label_set)
        except LabelError as exc:
            raise UsageError(f"--keep/--repaint: {exc}") from None

    if run.engine == "pose" and (run.keep or run.repaint or run.labels):
        raise UsageError("--keep/--repaint/--labels need a parsing engine (the pose engine has no labels)")
    if run.engine == "schp-onnx" and not run.model:
        raise UsageError("--engine schp-onnx needs --model FILE.onnx (e.g. parsing_lip.onnx)")
    shards = expand_inputs(list(run.inputs))
    if run.engine == "labels":
        writer = MaskWriter(run.keep, run.repaint, run.dilate_px, run.engine)
        if run.labels:
            check(writer, run.labels)
        fn = labels_map(writer, run.labels)
    elif run.engine == "pose":
        from reidtools.vision.pose_mediapipe import MediaPipePose

        writer = MaskWriter(None, None, run.dilate_px, run.engine, "mediapipe-pose")
        fn = pose_map(writer, MediaPipePose())
    else:
        model = run.model
        if run.engine == "schp-onnx":
            from reidtools.vision.parsing_onnx import SchpOnnx

            parser = SchpOnnx(model, run.labels, run.device)
        else:
            from reidtools.vision.parsing_segformer import DEFAULT_MODEL, SegformerParser

            model = model or DEFAULT_MODEL
            parser = SegformerParser(model, run.labels, run.device)
        writer = MaskWriter(run.keep, run.repaint, run.dilate_px, run.engine, model)
        check(writer, parser.labels)
        fn = parser_map(writer, parser, run.batch_size)
    return map_shards(shards, run.output, fn, shard_index=run.shard_index, num_shards=run.num_shards, desc="mask",
                      progress=progress, overwrite=run.overwrite)

