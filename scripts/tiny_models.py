"""Build tiny random-weight stand-in models for the demo and for trying recipes without weights.

    python scripts/tiny_models.py inpaint DIR      # a StableDiffusionInpaintPipeline folder

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
    args = ap.parse_args()
    from reidtools.testing.models import build_inpaint_pipeline

    tmp = args.folder.rstrip("/") + ".tmp"
    build_inpaint_pipeline(tmp, seed=args.seed)
    os.replace(tmp, args.folder)  # a killed build leaves no half model folder behind
    print(f"tiny random-weight {args.kind} pipeline written to {args.folder}")


if __name__ == "__main__":
    main()
