#!/usr/bin/env bash
# Every GPU figure the project promises, on one H100/H200-class GPU, in under 10 minutes, with random
# full-size weights (timings do not depend on the weights). Results: one JSON object or table per
# figure on stdout, and everything in $OUT_DIR/gpu.log.
#
#   bench/gpu.sh --prepare              # here, with PyPI: wheels of reidtools + what a torch-only
#                                       # machine lacks (diffusers, webdataset, braceexpand, ...) -> bench/wheels/
#   bench/gpu.sh [--device cuda]        # there (torch present, no network): installs bench/wheels/ with
#                                       # --no-index into a private site dir, then measures
#   bench/gpu.sh --device cpu --quick   # the script's own end-to-end check on a CPU (CI): tiny models, 1-2 steps
#
# Figures (BENCHMARKS.md "GPU figures"): inpainting img/s at 768x256 / 50 steps fp16 (batch 8) with and
# without --compile; query-variant inpainting (10 steps, 384x128, batch 16); DCAC step time and peak
# memory at batch 64 (fp16); ResNet-50 and CLIP ViT-B/16 training img/s (batch 64, 256x128, AMP);
# `reid eval` at MSMT17 scale (GPU feature extraction of 93,820 images + ranking 11,659 x 82,161);
# try-on s/image and peak memory; posegen sample img/s.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WHEELS="$HERE/wheels"
PY="${PYTHON:-python3}"
DEVICE=cuda
QUICK=0
PREPARE=0
OUT_DIR="${OUT_DIR:-${OUT:-/tmp/reid-gpu-bench}}"
# What a torch-only machine lacks (the H200 image has transformers, accelerate, peft, scipy, onnxruntime,
# tokenizers, safetensors, huggingface-hub, pillow, pyyaml, click, tqdm): pinned to this venv's versions.
DEPS=(diffusers==0.42.1 webdataset==1.0.2 braceexpand==0.1.7 importlib-metadata==8.7.0)

while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --device) DEVICE="$2"; shift ;;
    --quick) QUICK=1 ;;
    --python) PY="$2"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$PREPARE" = 1 ]; then
  rm -rf "$WHEELS"; mkdir -p "$WHEELS"
  "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WHEELS" "$ROOT"
  # pure-Python wheels: the same files serve any CPython 3 / any platform
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" "${DEPS[@]}"
  ls -l "$WHEELS"
  exit 0
fi

mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu.log"
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }

# Use the project where it imports already (CI, this machine's venv); else install the carried wheels.
if ! "$PY" -c "import reidtools.commands, diffusers, webdataset, braceexpand" 2>/dev/null; then
  [ -d "$WHEELS" ] || { echo "bench/gpu.sh: $WHEELS missing: run bench/gpu.sh --prepare where PyPI is reachable" >&2; exit 1; }
  SITE="$OUT_DIR/site"
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import reidtools.commands, diffusers, webdataset, braceexpand" || { echo "bench/gpu.sh: install from $WHEELS failed" >&2; exit 1; }
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

run() {  # run NAME CMD...: prints the figure's output, stops the script on failure
  local name="$1"; shift
  say "## $name"
  say "\$ $*"
  local t0=$SECONDS
  if ! "$@" 2>>"$LOG.stderr" | tee -a "$LOG"; then
    echo "bench/gpu.sh: $name failed; last lines of $LOG.stderr:" >&2; tail -20 "$LOG.stderr" >&2; exit 1
  fi
  say "# $name: $((SECONDS - t0)) s"
}

cd "$ROOT"
"$PY" - <<'EOF' | tee -a "$LOG"
import platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"# python {platform.python_version()}, torch {torch.__version__}, GPU {gpu}, CPU threads {torch.get_num_threads()}")
EOF
START=$SECONDS
if [ "$QUICK" = 1 ]; then
  # tiny models, 1-2 steps: checks that every figure's code path runs, not its speed
  run inpaint "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp32 --unets tiny --tiny-size 64x32 --steps 2 --batch-sizes 2 --repeats 1
  if [ "$DEVICE" = cpu ]; then say "## inpaint --compile: skipped (--quick on the CPU: torch.compile needs minutes there)"; else
  run inpaint-compile "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --unets tiny --tiny-size 64x32 --steps 2 --batch-sizes 2 --repeats 1 --compile; fi
  run query-variants "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp32 --unets tiny --tiny-size 32x16 --steps 2 --batch-sizes 4 --repeats 1
  run dcac "$PY" bench/dcac_step.py --arch tiny --device "$DEVICE" --batch 4 --steps 1 --warmup 1
  run train "$PY" bench/gpu_figures.py train --device "$DEVICE" --quick
  run eval-extract "$PY" bench/gpu_figures.py extract --device "$DEVICE" --quick
  run eval-rank "$PY" bench/gpu_figures.py rank --quick
  run tryon "$PY" bench/tryon.py --repeats 1 --steps 1 --size 64x32 --pairs 1
  run posegen "$PY" bench/posegen.py --repeats 1
else
  run inpaint "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --size 768x256 --steps 50 --batch-sizes 8 --unets sd15 --repeats 3
  run inpaint-compile "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --size 768x256 --steps 50 --batch-sizes 8 --unets sd15 --repeats 3 --compile
  run query-variants "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --size 384x128 --steps 10 --batch-sizes 16 --unets sd15 --repeats 3
  run dcac "$PY" bench/dcac_step.py --arch full --device "$DEVICE" --batch 64 --mixed-precision fp16 --steps 10 --warmup 3
  run train "$PY" bench/gpu_figures.py train --device "$DEVICE" --backbones resnet50,clip-b16
  run eval-extract "$PY" bench/gpu_figures.py extract --device "$DEVICE"
  run eval-rank "$PY" bench/gpu_figures.py rank
  # NOT full size yet: bench/tryon.py (tiny IDM-VTON) and bench/posegen.py (SD-1.5 layout at reduced widths)
  # run on the CPU; full-size SDXL try-on and Pose-dIVE builders are still to come (BENCHMARKS.md says so)
  run tryon-tiny-cpu "$PY" bench/tryon.py --repeats 1 --steps 5
  run posegen-reduced-cpu "$PY" bench/posegen.py --repeats 1
fi
say "# bench/gpu.sh done in $((SECONDS - START)) s; log: $LOG"
