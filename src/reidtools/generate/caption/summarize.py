"""Per-clothes-id item lists from a chat LLM (DLCR: LLaMA-2-chat summarises all LLaVA captions of a
clothes id). The captions of one id are concatenated and cut to their first 200 words."""

from __future__ import annotations

import logging

from reidtools.errors import ReidError
from reidtools.generate.prompts import parse_items

log = logging.getLogger("reidtools")

DEFAULT_MODEL = "meta-llama/Llama-2-7b-chat-hf"
DLCR_INSTRUCTION = "Extract the clothing items from the following text: "


def first_words(texts: list[str], limit: int = 200) -> str:
    """The concatenated texts cut to their first `limit` words."""
    words = " ".join(texts).split()
    return " ".join(words[:limit])


class Summarizer:
    def __init__(self, model: str, *, device, dtype, instruction: str = DLCR_INSTRUCTION, words: int = 200,
                 max_new_tokens: int = 128, temperature: float = 0.0):
        from reidtools.generate.inpaint.pipeline import quiet_loading
        from reidtools.hub import resolve_model

        path = resolve_model(model)   # before the heavy imports: a missing model fails fast
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_loading()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ReidError(f"--summary-model {model!r}: not a causal LM with a tokenizer ({exc})") from None
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device, self.instruction, self.words = device, instruction, words
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self._described = False      # the first batch's prompt lengths are logged at info level

    def prompt(self, captions: list[str]) -> str:
        request = self.instruction + first_words(captions, self.words)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": request}],
                                                      add_generation_prompt=True, tokenize=False)
        log.warning("the summary model has no chat template; sending the plain instruction")
        return request

    def summarize(self, groups: list[list[str]], seed: int | None = None) -> list[tuple[str, list[str]]]:
        """(answer, parsed items) for each group of captions, in one batch."""
        import torch

        if not groups:
            return []
        texts = [self.prompt(g) for g in groups]
        # chat templates already hold the BOS token
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        (log.debug if self._described else log.info)("summary prompts: %d-%d tokens (padded to %d)", min(lengths),
                                                      max(lengths), enc["input_ids"].shape[1])
        self._described = True
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.temperature > 0}
        if self.temperature > 0:
            kwargs["temperature"] = self.temperature
            if seed is not None:
                torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs, pad_token_id=self.tokenizer.pad_token_id)
        answers = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [(a.strip(), parse_items(a)) for a in answers]
