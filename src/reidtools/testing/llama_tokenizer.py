"""The real LLaMA / Llama-2 SentencePiece-BPE tokenizer (32000 tokens), built offline from the vocabulary
and merges that the npm package `llama-tokenizer-js` embeds.

LLaMA-1, Llama-2 (base and chat) and Vicuna v1.5 (LLaVA-1.5's language model) share one tokenizer.
`llama-tokenizer-js` bakes it into `llama-tokenizer.js` as two base64 strings, made from the
tokenizer.json distributed with the LLaMA weights (its `data-conversion.py`): the 32000 token
strings in id order, joined by newlines, and the merges in priority order as pairs of little-endian
uint16 token ids. Rebuilt here into the Hugging Face `tokenizer.json` pipeline of the Llama-2 hub
repositories (prepend "▁", spaces to "▁", BPE with byte fallback, `<s>` prepended; decoding back),
token counts and ids at full size are LLaMA's own (the package's tests, with ids from the real
tokenizer, are checked in tests/test_fullsize_caption.py).

Finding the package (it is a development aid, not a dependency): `$REID_LLAMA_TOKENIZER_JS` (the
.js file or the package folder), else `node_modules/llama-tokenizer-js` in the current directory,
`~/.cache/reidtools/` or npm's global root. `npm install -g llama-tokenizer-js` (390 kB) is enough.
"""

from __future__ import annotations

import base64
import os
import re
import struct

PACKAGE = "llama-tokenizer-js"
JS_FILE = "llama-tokenizer.js"
VOCAB_SIZE = 32000
SPECIALS = ("<unk>", "<s>", "</s>")


def js_path() -> str | None:
    """Path of `llama-tokenizer.js`: $REID_LLAMA_TOKENIZER_JS, else the usual node_modules folders."""
    env = os.environ.get("REID_LLAMA_TOKENIZER_JS")
    if env:
        path = os.path.join(env, JS_FILE) if os.path.isdir(env) else env
        return path if os.path.isfile(path) else None
    roots = [os.path.join(os.getcwd(), "node_modules"),
             os.path.join(os.path.expanduser("~"), ".cache", "reidtools", "node_modules"),
             "/usr/lib/node_modules", "/usr/local/lib/node_modules"]
    prefix = os.environ.get("NPM_CONFIG_PREFIX")
    if prefix:
        roots.append(os.path.join(prefix, "lib", "node_modules"))
    for root in roots:
        path = os.path.join(root, PACKAGE, JS_FILE)
        if os.path.isfile(path):
            return path
    return None


def vocab_and_merges(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """LLaMA's token -> id table and its merge list, decoded from `llama-tokenizer.js`."""
    with open(path, encoding="utf-8") as fh:
        src = fh.read()
    found = {name: re.search(rf'const {name} = "([A-Za-z0-9+/=]+)"', src)
             for name in ("llama_vocab_base64", "llama_merges_binary")}
    missing = [k for k, m in found.items() if m is None]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (not llama-tokenizer-js 1.x?)")
    tokens = base64.b64decode(found["llama_vocab_base64"].group(1)).decode("utf-8").split("\n")
    raw = base64.b64decode(found["llama_merges_binary"].group(1))
    ids = struct.unpack(f"<{len(raw) // 2}H", raw)
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE or tuple(tokens[:3]) != SPECIALS:
        raise ValueError(f"{path}: expected {VOCAB_SIZE} distinct LLaMA tokens starting {SPECIALS}")
    merges = [(tokens[ids[i]], tokens[ids[i + 1]]) for i in range(0, len(ids) - 1, 2)]
    return {t: i for i, t in enumerate(tokens)}, merges


def llama_tokenizer_json(path: str | None = None):
    """A `tokenizers.Tokenizer` with the Llama-2 hub repositories' tokenizer.json pipeline."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    path = path or js_path()
    if path is None:
        raise FileNotFoundError(f"{PACKAGE} not found: `npm install -g {PACKAGE}` or set REID_LLAMA_TOKENIZER_JS")
    vocab, merges = vocab_and_merges(path)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    return tok


def write_llama_tokenizer(folder: str, *, config: dict, extra_tokens: list[str] = (), path: str | None = None):
    """Save the real LLaMA tokenizer to `folder` as the hub has it (tokenizer.json + tokenizer_config.json
    + special_tokens_map.json) and return it loaded through AutoTokenizer.

    `config`: the repository's tokenizer_config.json fields (chat template, pad token, padding side...).
    `extra_tokens`: special tokens appended after id 31999 (LLaVA-1.5: `<image>` = 32000, `<pad>` = 32001)."""
    import json

    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tok = llama_tokenizer_json(path)
    if extra_tokens:
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in extra_tokens])
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True} for t in (*SPECIALS, *extra_tokens)}
    tok_config = {"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added, "bos_token": "<s>",
                  "clean_up_tokenization_spaces": False, "eos_token": "</s>", "unk_token": "<unk>",
                  "model_max_length": 1000000000000000019884624838656, "sp_model_kwargs": {},
                  "tokenizer_class": "LlamaTokenizer", **config}
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(tok_config, fh, indent=2, ensure_ascii=False)
    specials = {k: tok_config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if tok_config.get(k)}
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as fh:
        json.dump(specials, fh, indent=2)
    return AutoTokenizer.from_pretrained(folder)
