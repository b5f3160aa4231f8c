"""Clothing prompts: DLCR's bank normalisation, the inpainting prompt policies, and the model-free
caption engines (random garments from the packaged vocabulary; templates from synthetic metadata)."""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from reidtools.errors import ReidError, SampleError
from reidtools.seeding import rng

HSGL_PROMPT = "generate a new cloth for the person"            # HSGL paper, §3.2.2
HSGL_CODE_PROMPT = "change the outfit of the person"            # HSGL released code
_PUNCT = str.maketrans("", "", string.punctuation)


# ----------------------------------------------------------------------------- DLCR normalisation
def normalize_items(items: list[str]) -> str:
    """DLCR's prompt from an item list: lower-case, punctuation removed, items of <= 2 characters
    dropped, joined by spaces.  ["Blue T-Shirt.", "a", "Jeans"] -> "blue tshirt jeans"."""
    kept = []
    for item in items:
        text = " ".join(str(item).lower().translate(_PUNCT).split())
        if len(text) > 2:
            kept.append(text)
    return " ".join(kept)


_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|[a-z][.)])\s+", re.I)
_PREAMBLE = re.compile(r"(clothing items|items|here (is|are)|extracted|following)\b.*:\s*$", re.I)


def parse_items(text: str) -> list[str]:
    """The item list in an LLM answer: bulleted/numbered lines, else comma/semicolon-separated text.

    "Here are the items:\\n1. blue shirt\\n2. black jeans" -> ["blue shirt", "black jeans"].
    """
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n") if ln.strip()]
    listed = [_LIST_MARK.sub("", ln).strip() for ln in lines if _LIST_MARK.match(ln)]
    if listed:
        items = listed
    else:
        body = " ".join(ln for ln in lines if not _PREAMBLE.search(ln))
        if ":" in body:
            body = body.split(":", 1)[1]
        items = re.split(r"[,;]|\band\b", body)
    out = []
    for item in items:
        item = item.strip().strip(".").strip()
        if item and item.lower() not in (i.lower() for i in out):
            out.append(item)
    return out


# ----------------------------------------------------------------------------- model-free engines
@lru_cache(maxsize=1)
def vocabulary() -> dict:
    """The packaged garment vocabulary (src/reidtools/generate/vocab.json)."""
    return json.loads(resources.files("reidtools.generate").joinpath("vocab.json").read_text("utf-8"))


def random_outfit(seed: int, clothes_id: str, vocab: dict | None = None) -> list[str]:
    """One random garment (with a random colour) per body part: top, bottom, footwear (DLCR's
    random-prompt ablation). Depends only on (seed, clothes id)."""
    vocab = vocab or vocabulary()
    r = rng(seed, "random-outfit", clothes_id)
    items = []
    for part in ("top", "bottom", "footwear"):
        colour = vocab["colors"][int(r.integers(len(vocab["colors"])))]
        garment = vocab[part][int(r.integers(len(vocab[part])))]
        items.append(f"{colour} {garment}")
    return items


def template_items(garments: dict) -> list[str]:
    """Items from the synthetic dataset's ground-truth `garments`: e.g. {"upper": "red", "upper_pattern":
    "striped", "lower": "blue", "lower_type": "pants", "shoes": "black"} -> ["red striped top", "blue pants",
    "black shoes"]. Parts are `upper*`, `lower*`, `shoes*`/`footwear*`; nested dicts per part are accepted."""
    if not isinstance(garments, dict) or not garments:
        raise ValueError("`garments` must be a non-empty object")
    names = {"upper": "top", "lower": "pants", "shoes": "shoes", "footwear": "shoes"}
    items = []
    for part, default_noun in names.items():
        if part == "footwear" and "shoes" in garments:
            continue
        fields = _part_fields(garments, part)
        if not fields:
            continue
        colour = fields.get("color") or fields.get("colour") or fields.get("")
        pattern = fields.get("pattern")
        noun = fields.get("type") or fields.get("kind") or fields.get("garment") or default_noun
        words = [str(w) for w in (colour, None if pattern in (None, "plain", "solid", "none") else pattern, noun) if w]
        items.append(" ".join(words).replace("_", " "))
    if not items:  # unknown layout: the values in key order, still deterministic
        items = [f"{v} {k}".replace("_", " ") for k, v in sorted(garments.items()) if isinstance(v, (str, int, float))]
    return items


def _part_fields(garments: dict, part: str) -> dict:
    value = garments.get(part)
    if isinstance(value, dict):
        return {str(k).lower(): v for k, v in value.items()}
    fields = {"": value} if isinstance(value, str) else {}
    for key, val in garments.items():
        if key.startswith(part + "_") and isinstance(val, (str, int, float)):
            fields[key[len(part) + 1:].lower()] = val
    return fields


# ----------------------------------------------------------------------------- banks
def load_bank(path: str) -> dict[str, list[str]]:
    """A prompt bank: JSON object clothes id -> list of items (or one string)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ReidError(f"cannot read prompt bank {path!r} ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ReidError(f"prompt bank {path!r} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ReidError(f"prompt bank {path!r} must be a non-empty object: clothes id -> list of items")
    bank = {}
    for cid, items in data.items():
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ReidError(f"prompt bank {path!r}: entry {cid!r} must be a list of strings")
        bank[str(cid)] = items
    return bank


# ----------------------------------------------------------------------------- inpainting policies
@dataclass(frozen=True)
class Target:
    prompt: str
    clothes: str            # the variant's new clothes id
    target: str | None      # the bank's clothes id the prompt came from (bank policy only)


def _tag(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=4).hexdigest()


def parse_policy(spec: str) -> tuple[str, str]:
    """`bank:FILE.json` / `fixed:TEXT` / `field:NAME` -> (kind, argument); ValueError otherwise."""
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in ("bank", "fixed", "field") or not arg:
        raise ValueError(f"{spec!r} is not bank:FILE.json, fixed:TEXT or field:NAME")
    return kind, arg


class PromptPolicy:
    """`bank:FILE.json`, `fixed:TEXT` or `field:NAME` (see docs/inpaint.md)."""

    def __init__(self, spec: str, seed: int = 0):
        kind, arg = parse_policy(spec)
        self.kind, self.arg, self.seed, self.spec = kind, arg, seed, spec
        self.bank: dict[str, str] = {}
        if kind == "bank":
            raw = load_bank(arg)
            self.bank = {cid: normalize_items(items) for cid, items in raw.items()}
            self.bank = {cid: p for cid, p in self.bank.items() if p}
            if not self.bank:
                raise ReidError(f"prompt bank {arg!r}: every entry is empty after normalisation")
            self.ids = sorted(self.bank)

    def targets(self, sample: dict, meta: dict, count: int) -> list[Target]:
        """`count` prompts for one sample; variant k depends only on (seed, key, k)."""
        key = sample["__key__"]
        own = str(meta.get("clothes", key))
        if self.kind == "fixed":
            return [Target(self.arg, f"{own}+{_tag(key, k)}", None) for k in range(count)]
        if self.kind == "field":
            prompt = meta.get(self.arg)
            if isinstance(prompt, list):
                prompt = normalize_items(prompt)
            if not isinstance(prompt, str) or not prompt.strip():
                raise SampleError(sample.get("__shard__", "<memory>"), key,
                                  f"metadata lacks a prompt in {self.arg!r}: run `reid caption` first")
            return [Target(prompt, f"{own}+{_tag(prompt)}", None) for _ in range(count)]
        others = [cid for cid in self.ids if cid != own]
        if not others:
            raise SampleError(sample.get("__shard__", "<memory>"), key,
                              f"prompt bank {self.arg!r} holds no clothes id other than the sample's own ({own!r})")
        # a per-sample permutation: K distinct targets when the bank has K others, then it cycles
        order = rng(self.seed, key, "bank-targets").permutation(len(others))
        picks = [others[int(order[k % len(others)])] for k in range(count)]
        return [Target(self.bank[t], f"{own}+{t}", t) for t in picks]
