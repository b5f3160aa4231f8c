"""Clothing captions from a vision-language model (DLCR: LLaVA-1.5 asked about the clothes).

Any transformers image-text-to-text model works (AutoProcessor + AutoModelForImageTextToText, e.g.
LLaVA, InstructBLIP-style models with a chat template). CLIP-style processors resize the short side
and centre-crop, which would cut the head and feet off a tall person crop, so each image is first
padded to a square with the processor's mean colour (LLaVA-1.5's own "pad" aspect mode).
"""

from __future__ import annotations

import logging

from PIL import Image

from reidtools.errors import ReidError

log = logging.getLogger("reidtools")

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
DLCR_QUESTION = "What clothes is the person wearing?"


def pad_to_square(img: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Centre `img` on a square canvas of its longer side, filled with `fill`."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img.convert("RGB"), ((side - w) // 2, (side - h) // 2))
    return canvas


def _mean_colour(processor) -> tuple[int, int, int]:
    mean = getattr(getattr(processor, "image_processor", None), "image_mean", None) or (0.5, 0.5, 0.5)
    return tuple(int(round(float(m) * 255)) for m in mean[:3])


class Captioner:
    """Batched VQA captioning: one question, many images."""

    def __init__(self, model: str, *, device, dtype, question: str = DLCR_QUESTION, temperature: float = 0.2,
                 max_new_tokens: int = 96):
        from reidtools.generate.inpaint.pipeline import quiet_loading
        from reidtools.hub import resolve_model

        path = resolve_model(model)   # before the heavy imports: a missing model fails fast
        from transformers import AutoModelForImageTextToText, AutoProcessor

        quiet_loading()
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ReidError(f"--model {model!r}: not an image-text-to-text model with a processor ({exc})") from None
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"          # generation continues from the right end of every row
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
        self.device, self.question = device, question
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.fill = _mean_colour(self.processor)
        self.prompt = self._prompt(question)
        self._described = False

    def _describe(self, enc) -> None:
        # the prompt as the model sees it: at full size the image alone is (336/14)^2 = 576 tokens
        image_id = getattr(self.processor, "image_token_id", None)
        ids = enc["input_ids"][0]
        images = int((ids == image_id).sum()) if image_id is not None else 0
        pixels = tuple(enc["pixel_values"].shape[1:]) if "pixel_values" in enc else None
        log.info("caption prompt: %d tokens, %d of them image tokens; pixel values %s", ids.shape[0], images, pixels)

    def _prompt(self, question: str) -> str:
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return f"USER: <image>\n{question} ASSISTANT:"     # LLaVA-1.5's conversation format

    def caption(self, images: list[Image.Image], seed: int | None = None) -> list[str]:
        """Answers for `images` (one batch). With temperature > 0 the sampling RNG is seeded with `seed`."""
        import torch

        if not images:
            return []
        squares = [pad_to_square(im.convert("RGB"), self.fill) for im in images]
        enc = self.processor(images=squares, text=[self.prompt] * len(squares), return_tensors="pt", padding=True)
        if not self._described:
            self._described = True
            self._describe(enc)
        enc = {k: (v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device))
               for k, v in enc.items()}
        sample = self.temperature > 0
        kwargs = {"do_sample": sample, "max_new_tokens": self.max_new_tokens}
        if sample:
            kwargs["temperature"] = self.temperature
            if seed is not None:
                torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        answers = self.processor.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [" ".join(a.split()) for a in answers]
