"""Reference attention: inject one U-Net's self-attention inputs into another U-Net's self-attention.

Used by `reid tryon` (IDM-VTON's garment U-Net "GarmentNet" feeding the try-on U-Net) and meant
for `reid posegen` (a reference U-Net feeding the pose-guided U-Net). Both U-Nets are diffusers
`UNet2DConditionModel`s (or anything whose attention modules take diffusers attention processors).

API
---
    ctl = ReferenceAttentionControl(main_unet, reference_unet)   # installs the processors
    with ctl.write():                  # reference pass: every self-attention (attn1) stores its
        reference_unet(ref_latents, t, encoder_hidden_states=...)   #   input hidden states
    with ctl.read():                   # main pass(es): attn1 attends over concat(own, reference)
        main_unet(latents, t, encoder_hidden_states=...)            #   keys/values, own tokens out
    ctl.zero_unconditional()           # optional, for guidance: batch [uncond | cond] with zero
                                       #   reference features for the unconditional half (IDM-VTON)
    ctl.clear()                        # drop the stored features (next reference image)
    ctl.remove()                       # restore both U-Nets' original processors

- The bank is keyed by processor name (`down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor`);
  `name_map` (reference name -> main name) covers U-Nets whose module paths differ.
- A main self-attention whose name is not in the bank (empty bank, or outside `write()`/`read()`)
  runs exactly the original processor, so with an empty bank the main U-Net is the plain U-Net.
- The stored tensor is the input of attn1, i.e. the block's normalised hidden states (B, N, C), as
  IDM-VTON stores it; features are not cleared by reading, so one reference pass serves every
  denoising step. When the main batch is k times the reference batch (classifier-free guidance
  doubles it), the reference is repeated k times along the batch.
- Reading passes `encoder_hidden_states = concat(own, reference)` to the original attn1 processor:
  queries come from the own tokens only, keys and values from both. This equals IDM-VTON's
  "attend over the concatenation, then keep the first N outputs" (attention rows are independent).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

SELF_ATTENTION_SUFFIX = "attn1.processor"


def self_attention_names(unet) -> list[str]:
    """Processor names of the self-attention layers (diffusers names them `...attn1.processor`)."""
    return [n for n in unet.attn_processors if n.endswith(SELF_ATTENTION_SUFFIX)]


class ReferenceWriter:
    """Wraps a self-attention processor: in write mode, stores its input hidden states in the bank."""

    def __init__(self, control: "ReferenceAttentionControl", name: str, inner):
        self.control, self.name, self.inner = control, name, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if self.control.mode == "write":
            keep = hidden_states.detach() if self.control.detach else hidden_states
            self.control.bank[self.control.name_map(self.name)] = keep
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


class ReferenceReader:
    """Wraps a self-attention processor: in read mode, keys/values also cover the stored reference."""

    def __init__(self, control: "ReferenceAttentionControl", name: str, inner):
        self.control, self.name, self.inner = control, name, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        ref = self.control.bank.get(self.name) if self.control.mode == "read" else None
        if ref is None or encoder_hidden_states is not None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        b = hidden_states.shape[0]
        if ref.shape[0] != b:
            if b % ref.shape[0]:
                raise ValueError(f"reference batch {ref.shape[0]} does not divide the main batch {b} ({self.name})")
            ref = ref.repeat(b // ref.shape[0], 1, 1)
        if hidden_states.ndim != 3 or ref.shape[-1] != hidden_states.shape[-1]:
            raise ValueError(f"reference features {tuple(ref.shape)} do not fit hidden states "
                             f"{tuple(hidden_states.shape)} at {self.name}")
        import torch

        context = torch.cat([hidden_states, ref.to(hidden_states.dtype)], dim=1)
        return self.inner(attn, hidden_states, context, attention_mask, temb, **kwargs)


class ReferenceAttentionControl:
    """Installs ReferenceWriter on `reference_unet` and ReferenceReader on `main_unet` (see module doc).

    `reference_unet` may be None (features then come from `store()`), or the same object as
    `main_unet` (self-reference: write with one input, read with another). `detach=False` keeps the
    stored features in the autograd graph, so a loss on the main U-Net also trains the reference U-Net
    (posegen's --train-reference).
    """

    def __init__(self, main_unet, reference_unet=None, name_map: Callable[[str], str] | None = None,
                 detach: bool = True):
        self.main_unet, self.reference_unet = main_unet, reference_unet
        self.detach = detach
        self.name_map = name_map or (lambda name: name)
        self.bank: dict = {}
        self.mode: str | None = None
        self._originals: list[tuple[object, dict]] = []
        shared = reference_unet is main_unet
        self._install(main_unet, reader=True, writer=shared)
        if reference_unet is not None and not shared:
            self._install(reference_unet, reader=False, writer=True)

    def _install(self, unet, *, reader: bool, writer: bool) -> None:
        original = dict(unet.attn_processors)
        self._originals.append((unet, original))
        procs = {}
        for name, proc in original.items():
            if name.endswith(SELF_ATTENTION_SUFFIX):
                if reader:
                    proc = ReferenceReader(self, name, proc)
                if writer:
                    proc = ReferenceWriter(self, name, proc)
            procs[name] = proc
        unet.set_attn_processor(procs)

    @contextlib.contextmanager
    def _mode(self, mode: str) -> Iterator["ReferenceAttentionControl"]:
        previous, self.mode = self.mode, mode
        try:
            yield self
        finally:
            self.mode = previous

    def write(self):
        """Context: forward passes of the reference U-Net store their self-attention inputs."""
        return self._mode("write")

    def read(self):
        """Context: forward passes of the main U-Net attend over the stored reference too."""
        return self._mode("read")

    def store(self, features: dict) -> None:
        """Put precomputed features (main-U-Net processor name -> (B, N, C) tensor) in the bank."""
        self.bank.update(features)

    def zero_unconditional(self) -> None:
        """Classifier-free guidance as IDM-VTON does it: each entry v becomes concat([zeros, v]) along
        the batch, so the unconditional half of the main batch attends over zero reference tokens
        (not the same as no reference: zero keys still take softmax mass)."""
        import torch

        self.bank = {k: torch.cat([torch.zeros_like(v), v]) for k, v in self.bank.items()}

    def clear(self) -> None:
        self.bank.clear()

    def remove(self) -> None:
        """Restore the original processors of both U-Nets and drop the bank."""
        for unet, original in reversed(self._originals):
            unet.set_attn_processor(dict(original))
        self._originals.clear()
        self.clear()
