"""Generation: one sub-package per method, one pipeline per module (the diffusers layout).

- `caption/`   DLCR's clothing captions (LLaVA, `vlm`) and per-clothes-id item lists (LLaMA, `summarize`)
- `inpaint/`   Stable Diffusion inpainting of the clothing region (DLCR, HSGL coarse) and DLCR's
               discriminator guidance
- `tryoff/`    TryOffAnyone garment extraction (HSGL)
- `tryon/`     IDM-VTON try-on (HSGL SHSG): pipeline, repaint inputs, pair choice, IP-Adapter
- `inversion/` DiVE: identity tokens + camera/modality LoRA, fitting and sampling
- `posegen/`   Pose-dIVE: reference + denoising U-Nets with pose guiders, fitting and sampling

Shared pieces: `prompts` (DLCR's bank and the prompt policies), `attention` (reference-attention
plumbing between two U-Nets), `options` (the settings the generator commands share). Random-weight
builders for tests, the demo and benchmarks live in `reidtools.testing`, outside the library proper.
"""
