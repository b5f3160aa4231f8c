# Shared by the paper recipes. Stages are per shard: an output shard is made from the input shard of
# the same name, so `make -j N` runs N shards at once and re-running `make` redoes only what changed.
# Stages whose input list comes from an earlier stage are run in a second make pass (`$(MAKE) stage`)
# because make expands wildcards when it reads the file.
REID    ?= reid
OUT     ?= out/$(PAPER)
GPUS    ?= 1
SEED    ?= 0
THIS    := $(firstword $(MAKEFILE_LIST))
RECIPE  := $(MAKE) --no-print-directory -f $(THIS)

# shard names of a stage folder, e.g. $(call shards,$(OUT)/real,train)
shards = $(notdir $(sort $(wildcard $(1)/$(2)-*.tar)))
# launch a model-bearing step on $(GPUS) GPUs: accelerate gives each process its RANK/WORLD_SIZE,
# which every `reid` command turns into its shard split
ifeq ($(GPUS),1)
LAUNCH = $(REID)
else
LAUNCH = accelerate launch --num_processes $(GPUS) -m reidtools
endif

# ---- knobs every recipe shares, so a recipe also runs on the built-in synthetic data (the recipe
# tests do exactly that, with tiny models):
# SYNTH=1 replaces `reid pack` by `reid synth $(SYNTH_ARGS)` (people with ground-truth parse maps
# and poses); MASK_ARGS picks the parsing engine (SCHP by default, `--engine labels` for synthetic
# parse maps); POSE=none keeps the keypoints the data already has (the synthetic ground truth)
# instead of running MediaPipe; TRAIN_ARGS go to every `reid train` (e.g. a small backbone).
SYNTH      ?=
SYNTH_ARGS ?=
SCHP       ?= parsing_lip.onnx
MASK_ARGS  ?= --engine schp-onnx --model $(SCHP)
POSE       ?= mediapipe
TRAIN_ARGS ?=
EVAL_ARGS  ?=
# pack DATASET FOLDER OUTDIR
ifeq ($(SYNTH),1)
pack_cmd = $(REID) synth -o $(3) --seed $(SEED) $(SYNTH_ARGS)
else
pack_cmd = $(REID) pack $(1) $(2) -o $(3)
endif
ifeq ($(POSE),none)
pose_cmd = mkdir -p $(dir $(2)) && cp $(1) $(2)
else
pose_cmd = $(LAUNCH) pose $(1) -o $(dir $(2))
endif
