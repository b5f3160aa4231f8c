#!/usr/bin/env python
"""Camera- or pose-biased train/test splits (Pose-dIVE §A: MSMT17-S (Cam) / MSMT17-S (Pose)).

Reads packed shards (e.g. from `reid pack msmt17`; pose splits need `pose`, from `reid pose`) and
writes OUT/{train,query,gallery}-NNNNNN.tar in which training images come only from the training
cameras/orientations and test images only from the others. See docs/posegen.md.

    .venv/bin/python scripts/bias_split.py msmt/*.tar -o msmt-s-cam --by camera --train 1,2,3,4,5,6,7
    .venv/bin/python scripts/bias_split.py msmt-posed/*.tar -o msmt-s-pose --by pose --train front
"""

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="shards (paths, globs, brace patterns)")
    ap.add_argument("-o", "--output", required=True, help="output folder")
    ap.add_argument("--by", choices=["camera", "pose"], required=True)
    ap.add_argument("--train", default=None,
                    help="comma-separated training camids or orientations (front, back, side) "
                         "[default: lower half of the camids / front]")
    ap.add_argument("--side-ratio", type=float, default=0.35,
                    help="pose: shoulder width / torso length below which a view is 'side'")
    args = ap.parse_args(argv)

    from reidtools.data.bias_splits import ORIENTATIONS, write_split
    from reidtools.errors import ReidError
    from reidtools.shards import expand_inputs

    train = None
    if args.train:
        items = [t.strip() for t in args.train.split(",") if t.strip()]
        if args.by == "camera":
            try:
                train = {int(t) for t in items}
            except ValueError:
                ap.error(f"--train {args.train!r}: camera ids are integers")
        else:
            bad = [t for t in items if t not in ORIENTATIONS]
            if bad:
                ap.error(f"--train: {', '.join(bad)} not in {', '.join(ORIENTATIONS)}")
            train = set(items)
    kw = {"side_ratio": args.side_ratio} if args.by == "pose" else {}
    try:
        report = write_split(expand_inputs(args.inputs), args.output, args.by, train, **kw)
    except ReidError as exc:
        print(f"bias_split: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
