# DCAC (seed 003): domain-generalisable ReID with diffusion-assisted training (`reid train --method dcac`).
# The paper's single-source and multi-source leave-one-out protocols, each as a choice of shard sets.
#
#   make -f recipes/dcac.mk ROOT_MA=/data/Market-1501-v15.09.15 ROOT_D=/data/DukeMTMC-reID \
#        ROOT_MS=/data/MSMT17_V2 ROOT_C3=/data/cuhk03-np [OUT=dcac-out] all
#   make -f recipes/dcac.mk ... single     # MA->MS, MS->MA, D->MA, C3->MA, MA->D, ... (SINGLE below)
#   make -f recipes/dcac.mk ... multi      # ma+d+c3->ms, d+ms+c3->ma, ma+ms+c3->d, ma+d+ms->c3
#
# Needs the weights in the local Hugging Face cache (or folders): openai/clip-vit-base-patch16 and
# stable-diffusion-v1-5/stable-diffusion-v1-5 (override with CLIP=DIR SD=DIR). One GPU per run;
# TRAIN = "accelerate launch -m reidtools train" for several.

REID   ?= reid
TRAIN  ?= $(REID) train
OUT    ?= dcac-out
CLIP   ?= openai/clip-vit-base-patch16
SD     ?= stable-diffusion-v1-5/stable-diffusion-v1-5
PREC   ?= fp16
EPOCHS ?= 60
EXTRA  ?=
ROOT_MA ?= Market-1501-v15.09.15
ROOT_D  ?= DukeMTMC-reID
ROOT_MS ?= MSMT17_V2
ROOT_C3 ?= cuhk03-np

# the paper's per-source settings (§5.2): tau_c and LoRA rank
TAU_ma := 0.6
TAU_d  := 0.6
TAU_ms := 1.0
TAU_c3 := 0.1
RANK_ma := 8
RANK_d  := 8
RANK_ms := 32
RANK_c3 := 8

FORMAT_ma := market1501
FORMAT_d  := dukemtmc
FORMAT_ms := msmt17
FORMAT_c3 := cuhk03np
ROOT_ma := $(ROOT_MA)
ROOT_d  := $(ROOT_D)
ROOT_ms := $(ROOT_MS)
ROOT_c3 := $(ROOT_C3)

SINGLE ?= ma_to_ms ms_to_ma d_to_ma c3_to_ma ma_to_d ma_to_c3
MULTI  ?= ma+d+c3_to_ms d+ms+c3_to_ma ma+ms+c3_to_d ma+d+ms_to_c3

COMMON = --method dcac --pretrained $(CLIP) --diffusion-model $(SD) --mixed-precision $(PREC) --epochs $(EPOCHS) -q $(EXTRA)

.PHONY: all single multi
.SECONDARY:   # keep packed shards and trained runs (make would delete them as intermediates)
all: single multi
single: $(foreach p,$(SINGLE),$(OUT)/results/$(p).json)
multi: $(foreach p,$(MULTI),$(OUT)/results/$(p).json)

# ---------------------------------------------------------------- shards
$(OUT)/shards/%/.done:
	$(REID) pack $(FORMAT_$*) $(ROOT_$*) -o $(OUT)/shards/$* -q
	touch $@

# ---------------------------------------------------------------- runs: one per training set
# single source: runs/<src>; multi-source: runs/<a+b+c> (tau_c 1.0, rank 32)
.SECONDEXPANSION:
plus = $(subst +, ,$(1))
$(OUT)/runs/%/model.safetensors: $$(foreach s,$$(call plus,$$*),$(OUT)/shards/$$(s)/.done)
	$(TRAIN) $(foreach s,$(call plus,$*),'$(OUT)/shards/$(s)/train-*.tar') -o $(OUT)/runs/$* $(COMMON) \
	  $(if $(findstring +,$*),--condition-tau 1.0 --lora-rank 32,--condition-tau $(TAU_$*) --lora-rank $(RANK_$*)) \
	  $(if $(wildcard $(OUT)/runs/$*/config.yaml),--resume)

# ---------------------------------------------------------------- evaluation: <train>_to_<target>
$(OUT)/results/%.json: $(OUT)/runs/$$(word 1,$$(subst _to_, ,$$*))/model.safetensors \
                       $(OUT)/shards/$$(word 2,$$(subst _to_, ,$$*))/.done
	@mkdir -p $(OUT)/results
	$(eval TGT := $(word 2,$(subst _to_, ,$*)))
	$(REID) eval '$(OUT)/shards/$(TGT)/query-*.tar' -g '$(OUT)/shards/$(TGT)/gallery-*.tar' \
	  --model $(OUT)/runs/$(word 1,$(subst _to_, ,$*)) --protocol market --json $@ -q
