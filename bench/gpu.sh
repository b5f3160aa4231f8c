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
#   bench/gpu.sh --device cpu --check --figures posegen   # the GPU run's full-size code path on a CPU:
#                                       # published-size models, 1 step at a tiny resolution (minutes, GiBs)
#   --figures LIST                      # only these (comma-separated): inpaint, inpaint-compile,
#                                       # query-variants, dcac, train, eval-extract, eval-rank, tryon, posegen;
#                                       # tryon-offload (reid tryon --offload) runs only when named
#
# Figures (BENCHMARKS.md "GPU figures"): inpainting img/s at 768x256 / 50 steps fp16 (batch 8) with and
# without --compile; query-variant inpainting (10 steps, 384x128, batch 16); DCAC step time and peak
# memory at batch 64 (fp16); ResNet-50 and CLIP ViT-B/16 training img/s (batch 64, 256x128, AMP);
# `reid eval` at MSMT17 scale (GPU feature extraction of 93,820 images + ranking 11,659 x 82,161);
# try-on s/image and peak memory (IDM-VTON at published size, 1024x768, 30 steps, guidance 2, fp16);
# posegen sample img/s (Pose-dIVE: two SD-1.5 U-Nets + CLIP ViT-L/14, 512x256, 25 DDIM steps,
# guidance 3.5, batch 8, fp16).
#
# Time on one H200 (estimates: never run on a GPU yet). The other figures were sized by their authors
# to fit 10 minutes. Try-on adds ~2.5 min: random weights made on the GPU in fp16 in seconds (the CPU's
# serial RNG needs minutes for 7.1 B parameters), 14 GB saved and loaded ~1 min, a 2-step warm-up and
# 2 images of ~6 s. Posegen adds ~1.5 min: SD-1.5 + CLIP-L made on the GPU, the 3.4 GB checkpoint
# written and hashed twice, a warm-up and 3 batches of 8 at ~1.5 s. The CPU-side tiny try-on/posegen
# benches they replace took ~1 min there. Models go to a temporary folder outside --out, each deleted
# after its figure: ~15 GB of disk at most.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WHEELS="$HERE/wheels"
PY="${PYTHON:-python3}"
DEVICE=cuda
QUICK=0
CHECK=0
PREPARE=0
FIGURES=all
OUT_DIR="${OUT_DIR:-${OUT:-/tmp/reid-gpu-bench}}"
# What a torch-only machine lacks (the H200 image has transformers, accelerate, peft, scipy, onnxruntime,
# tokenizers, safetensors, huggingface-hub, pillow, pyyaml, click, tqdm): pinned to this venv's versions.
DEPS=(diffusers==0.42.1 webdataset==1.0.2 braceexpand==0.1.7 importlib-metadata==8.7.0)
# The full-size builders' real CLIP BPE tokenizer needs one data file of open-clip-torch's wheel, not the
# package (its import needs torchvision): --prepare carries the file, the run points REID_CLIP_BPE at it.
BPE=bpe_simple_vocab_16e6.txt.gz
OPEN_CLIP=open-clip-torch==3.3.0

while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --device) DEVICE="$2"; shift ;;
    --quick) QUICK=1 ;;
    --check) CHECK=1 ;;
    --figures) FIGURES="$2"; shift ;;
    --python) PY="$2"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$PREPARE" = 1 ]; then
  rm -rf "$WHEELS"; mkdir -p "$WHEELS"
  "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WHEELS" "$ROOT"
  # pure-Python wheels: the same files serve any CPython 3 / any platform
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" "${DEPS[@]}"
  tmp="$(mktemp -d)"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$OPEN_CLIP"
  "$PY" - "$tmp"/open_clip_torch-*.whl "$WHEELS/$BPE" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("open_clip/" + sys.argv[2].rsplit("/", 1)[-1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  rm -rf "$tmp"
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
[ -z "${REID_CLIP_BPE:-}" ] && [ -f "$WHEELS/$BPE" ] && export REID_CLIP_BPE="$WHEELS/$BPE"

KNOWN=",inpaint,inpaint-compile,query-variants,dcac,train,eval-extract,eval-rank,tryon,tryon-offload,posegen,"
for f in ${FIGURES//,/ }; do
  [ "$f" = all ] || [[ "$KNOWN" == *",$f,"* ]] || { echo "bench/gpu.sh: --figures: unknown figure $f" >&2; exit 2; }
done
[ "$QUICK" = 1 ] && [ "$CHECK" = 1 ] && { echo "bench/gpu.sh: --quick (tiny models) and --check (full size) exclude each other" >&2; exit 2; }
if [ "$CHECK" = 1 ]; then   # it shrinks only these: the other figures would run their GPU settings
  for f in ${FIGURES//,/ }; do
    case "$f" in tryon|tryon-offload|posegen) ;; *) echo "bench/gpu.sh: --check runs tryon/posegen only: pass --figures tryon,posegen" >&2; exit 2 ;; esac
  done
fi
wanted() {  # wanted NAME: whether --figures selects it (tryon-offload only when named)
  [[ ",$FIGURES," == *",$1,"* ]] || { [ "$FIGURES" = all ] && [ "$1" != tryon-offload ]; }
}
# the full-size models (~20 GB) go here, not under --out (on the device tool $OUT comes back)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/reid-gpu-work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export TMPDIR="$WORK"   # the benches' temporary folders (tempfile) and torch.compile's cache

run() {  # run NAME CMD...: prints the figure's output, stops the script on failure
  local name="$1"; shift
  wanted "$name" || return 0
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
if [ "$QUICK" = 0 ] && { wanted tryon || wanted tryon-offload || wanted posegen; }; then   # fail now, not after the other figures
  "$PY" -c "import sys; from reidtools.testing.clip_bpe import bpe_path; sys.exit(bpe_path() is None)" || {
    echo "bench/gpu.sh: the full-size builders need $BPE (CLIP's BPE): run bench/gpu.sh --prepare, or set REID_CLIP_BPE" >&2; exit 1; }
fi
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
  run posegen "$PY" bench/posegen_sample.py --arch tiny --device "$DEVICE" --dtype fp32 --size 64x32 --steps 2 --batch 2 --repeats 1
else
  run inpaint "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --size 768x256 --steps 50 --batch-sizes 8 --unets sd15 --repeats 3
  run inpaint-compile "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --size 768x256 --steps 50 --batch-sizes 8 --unets sd15 --repeats 3 --compile
  run query-variants "$PY" bench/inpaint_speed.py --device "$DEVICE" --dtype fp16 --size 384x128 --steps 10 --batch-sizes 16 --unets sd15 --repeats 3
  run dcac "$PY" bench/dcac_step.py --arch full --device "$DEVICE" --batch 64 --mixed-precision fp16 --steps 10 --warmup 3
  run train "$PY" bench/gpu_figures.py train --device "$DEVICE" --backbones resnet50,clip-b16
  run eval-extract "$PY" bench/gpu_figures.py extract --device "$DEVICE"
  run eval-rank "$PY" bench/gpu_figures.py rank
  # published size, random weights made on $DEVICE (reidtools.testing.fullsize); --check: the same
  # code path at 1 step and the smallest sizes the models take (SDXL: multiples of 32), one repeat
  TRYON=(--size 1024x768 --steps 30 --repeats 2)
  POSEGEN=(--size 512x256 --steps 25 --batch 8 --repeats 3)
  [ "$CHECK" = 1 ] && { TRYON=(--size 64x32 --steps 1 --repeats 1); POSEGEN=(--size 64x32 --steps 1 --batch 1 --repeats 1); }
  # a GPU user's fp16 (the SDXL VAE upcasts itself); a CPU runs fp16 as fp32, which IDM-VTON (28 GB) cannot fit
  TRYON_DTYPE=fp16; [ "$DEVICE" = cpu ] && TRYON_DTYPE=bf16
  run tryon "$PY" bench/tryon.py --arch full --device "$DEVICE" --dtype "$TRYON_DTYPE" "${TRYON[@]}" --cases default
  run tryon-offload "$PY" bench/tryon.py --arch full --device "$DEVICE" --dtype "$TRYON_DTYPE" "${TRYON[@]}" --repeats 1 --cases offload
  run posegen "$PY" bench/posegen_sample.py --arch full --device "$DEVICE" --dtype fp16 "${POSEGEN[@]}"
fi
say "# bench/gpu.sh done in $((SECONDS - START)) s; log: $LOG"
