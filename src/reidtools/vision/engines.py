"""`reid mask`'s engines behind one interface: samples in, samples with mask.png (+ parse.png) out."""

from __future__ import annotations

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
