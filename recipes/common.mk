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
