"""Prompts longer than the text encoder's 77 tokens: counted with the model's own tokenizer, then
truncated explicitly and reported, never dropped silently.

CLIP's text encoder has 77 positions (start token + 75 + end token). diffusers truncates longer
prompts and says so only through its own logger, which `reid` keeps quiet. DLCR's bank prompts
(an identity's other outfits' items, normalised and joined) can run past 75 tokens. We keep
diffusers' truncation (what the paper's code did, so results stay comparable) and make it visible:
the first long prompt is logged with its count and the words dropped, every output records its
`prompt_tokens` in `history`, and the run ends with how many prompts were cut.
Chunked encoding (several 77-token windows concatenated) would change the conditioning the
inpainting U-Net was trained with, so it is not done silently either.
"""

from __future__ import annotations

import logging

log = logging.getLogger("reidtools")


class PromptBudget:
    """Token counts of prompts for one tokenizer, and the record of the ones truncated."""

    def __init__(self, tokenizer, limit: int | None = None):
        self.tokenizer = tokenizer
        self.limit = int(limit or tokenizer.model_max_length)
        self.truncated: set[str] = set()
        self.longest = 0
        self._counts: dict[str, int] = {}

    def count(self, prompt: str) -> int:
        """Tokens of `prompt` including the start and end tokens (the positions it needs)."""
        if prompt not in self._counts:
            ids = self.tokenizer(prompt, truncation=False, add_special_tokens=True, verbose=False).input_ids
            self._counts[prompt] = len(ids)
        return self._counts[prompt]

    def check(self, prompts: list[str]) -> list[int]:
        """Counts for `prompts`; warns (with the count and the dropped words) the first time one is too long."""
        counts = [self.count(p) for p in prompts]
        for prompt, n in zip(prompts, counts):
            if n <= self.limit or prompt in self.truncated:
                continue
            if not self.truncated:
                ids = self.tokenizer(prompt, truncation=False, add_special_tokens=True, verbose=False).input_ids
                dropped = self.tokenizer.decode(ids[self.limit - 1:-1], skip_special_tokens=True)
                log.warning("a prompt has %d tokens but the text encoder reads %d: truncated, dropping %r "
                            "(later long prompts are counted and reported at the end)", n, self.limit, dropped)
            self.truncated.add(prompt)
            self.longest = max(self.longest, n)
        return counts

    def summary(self) -> str | None:
        """One line for the end of a run, or None when nothing was truncated."""
        if not self.truncated:
            return None
        return (f"{len(self.truncated)} distinct prompts were longer than {self.limit} tokens and were truncated "
                f"(longest: {self.longest} tokens)")
