"""Random-weight models built from configs, for the tests, the demo and the benchmarks.

Each builder saves its model with `save_pretrained` in the published folder layout, so the toolkit
loads it through the very `from_pretrained` path it uses for real weights. Nothing here is imported
by the library proper.

- `models`  tiny SD inpainting pipeline, CLIP tokenizer, chat LM, LLaVA
- `sd`      tiny text-to-image SD pipeline (`reid invert`)
- `tryoff`  TryOffAnyone layout; `idmvton` IDM-VTON (SDXL) layout
- `posegen` SD-1.x base + CLIP vision encoder for `reid posegen`
"""
