"""Build tiny random-weight stand-in models for the demo and for trying recipes without weights.

    python scripts/tiny_models.py inpaint DIR [--words synth]   # a StableDiffusionInpaintPipeline folder

`--words synth` gives the synthetic dataset's garment words (colours, patterns, garment names) one
token each in the character-level tokenizer, so a tiny text encoder can learn them quickly.

They go through `save_pretrained` and are loaded by `reid ... --model DIR` exactly as real weights
would be. They are untrained: what they show is the pipeline, not the papers' image quality.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["inpaint"])
    ap.add_argument("folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--words", choices=["none", "synth"], default="none")
    args = ap.parse_args()
    from reidtools.testing.models import build_inpaint_pipeline

    tmp = args.folder.rstrip("/") + ".tmp"
    from reidtools.data.synth import PROMPT_WORDS

    build_inpaint_pipeline(tmp, seed=args.seed, words=PROMPT_WORDS if args.words == "synth" else ())
    os.replace(tmp, args.folder)  # a killed build leaves no half model folder behind
    print(f"tiny random-weight {args.kind} pipeline written to {args.folder}")


if __name__ == "__main__":
    main()
