# DCAC (seed 003): diffusion-assisted training of a CLIP ViT-B/16 ReID model for domain
# generalisation. Reproduces DCAC Tables 2-3 (single-source: train on SOURCE, test on TARGET; Table 2
# for Market/Duke sources, Table 3 for MSMT17/CUHK03-NP) and Table 4 (multi-source leave-one-out:
# MULTI=1 trains on every dataset but TARGET). Expected with the real data and weights (mAP / R1):
# Market -> MSMT17 23.4 / 52.1 (Table 2, DCAC row), MSMT17 -> Market 52.1 / 77.9 (Table 3); Table 1 is
# the datasets' statistics.
# Synthetic data (SYNTH=1, what tests/test_recipes.py runs): every pack is `reid synth $(SYNTH_ARGS)
# --dataset NAME` with the dataset's name, so tau_c and the rank follow §5.2 from the names as they
# would for the real data, and multi-source sets keep their keys and identities apart.
#
#   make -f recipes/dcac.mk SOURCE=market1501 SOURCE_ROOT=/data/Market TARGET=msmt17 TARGET_ROOT=/data/MSMT17_V2
#   make -f recipes/dcac.mk MULTI=1 TARGET=msmt17 ROOTS="market1501=/data/Market cuhk03np=/data/cuhk03-np dukemtmc=/data/Duke msmt17=/data/MSMT17_V2"
PAPER    := dcac
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

SOURCE      ?= market1501
SOURCE_ROOT ?= data/Market-1501-v15.09.15
TARGET      ?= msmt17
TARGET_ROOT ?= data/MSMT17_V2
MULTI       ?=
ROOTS       ?=
SD          ?= stable-diffusion-v1-5/stable-diffusion-v1-5
# tau_c of eq. 12 and the LoRA rank: empty = what §5.2 gives for the training sources, which
# `reid train` reads from the shards' `dataset` field (tau 0.1 CUHK03, 0.6 Market/Duke, 1.0 MSMT17 and
# multi-source; rank 8, 32 for MSMT17 and multi-source) and records in config.yaml; set to override
TAU         ?=
LORA_RANK   ?=
CONDITION   ?= correlation
# mixed precision: paper silent; fp16 halves the SD U-Net's memory on a GPU (tiny CPU runs: PRECISION=no)
PRECISION   ?= fp16

.PHONY: all train eval clean
all: eval

ifeq ($(MULTI),)
TRAIN_SETS  = '$(OUT)/$(SOURCE)/train-*.tar'
PACKED      = $(OUT)/$(SOURCE)/.done $(OUT)/$(TARGET)/.done
$(OUT)/$(SOURCE)/.done:
	$(call pack_cmd,$(SOURCE),$(SOURCE_ROOT),$(@D)) $(if $(SYNTH),--dataset $(SOURCE))
	touch $@
$(OUT)/$(TARGET)/.done:
	$(call pack_cmd,$(TARGET),$(TARGET_ROOT),$(@D)) $(if $(SYNTH),--dataset $(TARGET))
	touch $@
else
# leave-one-out: every dataset in ROOTS but TARGET is a training source
SOURCES     = $(filter-out $(TARGET),$(foreach r,$(ROOTS),$(firstword $(subst =, ,$(r)))))
TRAIN_SETS  = $(foreach s,$(SOURCES),'$(OUT)/$(s)/train-*.tar')
PACKED      = $(foreach r,$(ROOTS),$(OUT)/$(firstword $(subst =, ,$(r)))/.done)
$(OUT)/%/.done:
	$(call pack_cmd,$*,$(lastword $(subst =, ,$(filter $*=%,$(ROOTS)))),$(@D)) $(if $(SYNTH),--dataset $*)
	touch $@
endif

$(OUT)/runs/dcac/model.safetensors: $(PACKED)
	$(LAUNCH) train $(TRAIN_SETS) -o $(@D) --method dcac --diffusion-model $(SD) --condition $(CONDITION) \
	  $(if $(TAU),--condition-tau $(TAU)) $(if $(LORA_RANK),--lora-rank $(LORA_RANK)) --mixed-precision $(PRECISION) --seed $(SEED) $(TRAIN_ARGS)
train: $(OUT)/runs/dcac/model.safetensors

$(OUT)/results/dcac-$(TARGET).json: $(OUT)/runs/dcac/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval '$(OUT)/$(TARGET)/query-*.tar' -g '$(OUT)/$(TARGET)/gallery-*.tar' --model $(OUT)/runs/dcac \
	  -p market --json $@ $(EVAL_ARGS)
eval: $(OUT)/results/dcac-$(TARGET).json

clean:
	rm -rf $(OUT)
