"""LLaVA-1.5-7B and Llama-2-7B-chat at full width, depth cut to `depth_cut` decoder layers, saved as their
hub repositories are laid out: config.json + generation_config.json + safetensors (fp16, as published),
the real LLaMA tokenizer (tokenizer.json, tokenizer_config.json with the chat template,
special_tokens_map.json) and, for LLaVA, preprocessor_config.json, processor_config.json and
chat_template.json. What `LlavaForConditionalGeneration`/`AutoProcessor` and
`LlamaForCausalLM`/`AutoTokenizer` `from_pretrained` read, nothing more.
"""

from __future__ import annotations

import copy
import json
import os


def cut_config(cfg: dict) -> dict:
    """The published config with the decoder depth cut to cfg["depth_cut"]["num_hidden_layers"]."""
    config = copy.deepcopy(cfg["config"])
    text = config["text_config"] if "text_config" in config else config
    text["num_hidden_layers"] = int(cfg["depth_cut"]["num_hidden_layers"])
    return config


def write_preprocessing(cfg: dict, folder: str):
    """The repository's small files: the real LLaMA tokenizer (+ the config's extra tokens) and, verbatim,
    cfg["files"] (processor, chat template, generation config). Returns the tokenizer."""
    from reidtools.testing.llama_tokenizer import write_llama_tokenizer

    tok_cfg = cfg["tokenizer"]
    tok = write_llama_tokenizer(folder, config=tok_cfg["config"], extra_tokens=tok_cfg["extra_tokens"])
    for name, content in cfg.get("files", {}).items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            json.dump(content, fh, indent=2)
    return tok


def build_llm(cfg: dict, folder: str) -> None:
    import torch
    import transformers

    arch = getattr(transformers, cfg["architecture"])
    config = arch.config_class(**cut_config(cfg))
    model = arch(config).to(torch.float16)     # the hub checkpoints are fp16
    model.save_pretrained(folder, safe_serialization=True)
    del model
    tok = write_preprocessing(cfg, folder)     # after save_pretrained, which writes its own generation_config.json
    vocab = (config.text_config if hasattr(config, "text_config") else config).vocab_size
    if len(tok) > vocab:
        raise ValueError(f"{cfg['model']}: tokenizer has {len(tok)} tokens, the embedding {vocab}")
