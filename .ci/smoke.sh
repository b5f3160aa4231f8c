#!/usr/bin/env bash
# Every command's main path once, on tiny data, with the `reid` and `python` found on PATH (.ci/run
# puts a fresh venv holding `pip install .` without extras first): a module that the code imports
# but pyproject.toml does not declare fails here, as it would for a user.
#
#   .ci/smoke.sh [WORKDIR]
#
# synth -> stats/show -> mask -> caption (template) -> tiny inpaint -> train tiny -> eval --rerank -> refine
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
W="${1:-$(mktemp -d)}"
mkdir -p "$W"
cd "$W"
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS" >&2; }
need() { for f in "$@"; do [ -s "$f" ] || { echo "smoke: $f missing or empty" >&2; exit 1; }; done; }

step "reid --version"
reid --version

step synth
reid synth -o data --ids 6 --outfits 2 --cams 2 --images-per 2 --size 64x32 --seed 0 -q
need data/train-000000.tar data/query-000000.tar data/gallery-000000.tar

step stats/show
reid stats data/ > stats.txt
need stats.txt
reid show data/train-000000.tar -o sheet.png --n 4 -q
need sheet.png

step mask
reid mask --engine labels data/train-000000.tar data/query-000000.tar -o masked -q
need masked/train-000000.tar masked/query-000000.tar

step "caption (template)"
reid caption --engine template masked/train-000000.tar -o captioned --bank bank.json -q
need captioned/train-000000.tar bank.json

step "tiny inpaint"
python "$HERE/scripts/tiny_models.py" inpaint models/inpaint
reid inpaint captioned/train-000000.tar -o generated --model models/inpaint --prompts bank:bank.json \
  -k 1 --steps 2 --size 64x32 --dtype fp32 --seed 0 -q
need generated/train-000000.tar
# query variants for refine: the same people repainted
reid inpaint masked/query-000000.tar -o qvariants --model models/inpaint --prompts "fixed:a person in a red coat" \
  -k 1 --steps 2 --size 64x32 --dtype fp32 --seed 0 -q
need qvariants/query-000000.tar

step "train tiny"
reid train data/train-000000.tar --generated 'generated/*.tar' -o run --backbone resnet-small --pretrained none \
  --epochs 1 --batch 3x2 --size 64x32 --milestones 1 --warmup-epochs 0 --seed 0 -q
need run/model.safetensors

step "eval --rerank"
reid eval data/query-000000.tar --gallery data/gallery-000000.tar --model run --protocol cc --rerank \
  --json eval.json -q
need eval.json
python - eval.json <<'EOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
assert all(math.isfinite(r[k]) and 0 <= r[k] <= 1 for k in ("mAP", "rank1")), r
EOF

step refine
reid refine data/query-000000.tar -g data/gallery-000000.tar --variants qvariants --model run -p cc \
  --json refined.json -q
need refined.json

step "smoke passed in $W"
