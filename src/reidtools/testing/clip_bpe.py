"""The real CLIP BPE tokenizer (49408 tokens), built offline from the vocabulary that `open-clip-torch` ships.

OpenAI's CLIP and every Stable Diffusion text encoder share one byte-level BPE: 256 byte symbols,
the same 256 with `</w>`, the first 48894 merges of `bpe_simple_vocab_16e6.txt.gz`, then
`<|startoftext|>` and `<|endoftext|>` (CLIP's `simple_tokenizer.py`). Written as `vocab.json` +
`merges.txt`, that is the hub's `tokenizer/` folder, so prompt token counts at full size are the real
ones (the tiny character-level tokenizer of `testing.models` counts one token per letter).

The vocabulary file is located without importing open_clip (whose import needs torchvision):
`pip install --no-deps open-clip-torch` is enough, or point `REID_CLIP_BPE` at the .txt.gz.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2          # CLIP simple_tokenizer: merges[1:49152-256-2+1]
VOCAB_SIZE = 49408


def bpe_path() -> str | None:
    """Path of the BPE vocabulary: $REID_CLIP_BPE, else the installed open_clip package's copy."""
    env = os.environ.get("REID_CLIP_BPE")
    if env:
        return env if os.path.isfile(env) else None
    spec = importlib.util.find_spec("open_clip")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, BPE_FILE)
        if os.path.isfile(path):
            return path
    return None


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable-character table, in CLIP's order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def vocab_and_merges(path: str) -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id table and its merge list from the gzipped BPE file."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        merges = fh.read().split("\n")[1:N_MERGES + 1]
    symbols = _bytes_to_unicode()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ValueError(f"{path}: expected {VOCAB_SIZE} distinct CLIP tokens, got {len(set(tokens))}")
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_bpe_tokenizer(folder: str, *, pad_token: str = "<|endoftext|>", max_length: int = 77,
                             path: str | None = None):
    """Save the real CLIPTokenizer to `folder` (hub layout) and return it.

    `pad_token`: SD-1.x and SD-2 inpainting pad with `<|endoftext|>`; SDXL's second tokenizer pads with "!".
    """
    from transformers import CLIPTokenizer

    path = path or bpe_path()
    if path is None:
        raise FileNotFoundError(f"{BPE_FILE} not found: `pip install --no-deps open-clip-torch` or set REID_CLIP_BPE")
    vocab, merges = vocab_and_merges(path)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as fh:
        json.dump(vocab, fh, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                        model_max_length=max_length, pad_token=pad_token)
    tok.save_pretrained(folder)
    return tok
