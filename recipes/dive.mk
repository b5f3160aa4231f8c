# DiVE (seed 002): textual inversion of identities + a camera-code LoRA on SD 1.5, then infrared
# images of identities that exist only in a visible-light dataset. Reproduces DiVE Table 4 (SYSU-MM01
# expanded with Market-1501 identities rendered as infrared; Table 2 = the same with other ReID
# models). Expected with the real data and weights (Table 4, "+Market1501" row): SYSU R1 79.07 /
# mAP 74.96 (baseline 74.70 / 71.80).
# Synthetic data (SYNTH=1, what tests/test_recipes.py runs): VIS = `reid synth --dataset synth_vis`
# (rgb, seed SEED+1), SYSU = `reid synth --dataset synth_sysu --modalities rgb,ir` (seed SEED), both
# with SYNTH_ARGS: two datasets whose identities stay apart (`<id_synth_vis_N>` tokens), as Market's
# and SYSU's do.
#
PAPER    := dive
, := ,
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

VIS      ?= data/Market-1501-v15.09.15
SYSU     ?= data/SYSU-MM01
BASE     ?= stable-diffusion-v1-5/stable-diffusion-v1-5
# Implementation Details (main and supplement): LoRA rank 128, lr 5e-5, 8-character codes (released
# code: 4), 400,000 steps; supplement Ablation Studies: identities with more than 11 images
RANK     ?= 128
LR       ?= 5e-5
CODE_LEN ?= 8
MIN_IMGS ?= 12
FIT_STEPS ?= 400000
# Implementation Details: DPM-Solver++ 25 steps (released code: 50), 18 images per modality
# identifier; guidance: paper silent, 7.5 = diffusers' default
GUIDANCE ?= 7.5
# extra flags per stage (tiny models: FIT_ARGS='--size 32x16', SAMPLE_ARGS='--dtype fp32')
FIT_ARGS ?=
SAMPLE_ARGS ?=
STEPS    ?= 25
PER_ID   ?= 18
# SYSU-MM01 all-search (IR queries from cameras 3 and 6); synthetic rgb,ir data has no SYSU camera
# layout, so its test uses llcm-i2v (IR queries, visible gallery, by `modality`)
PROTOCOL ?= sysu-all

.PHONY: all pack fit sample train eval clean
all: eval

$(OUT)/vis/.done:
	$(call pack_cmd,market1501,$(VIS),$(OUT)/vis) $(if $(SYNTH),--dataset synth_vis --seed $$(($(SEED)+1)))
	touch $@
$(OUT)/sysu/.done:
	$(call pack_cmd,sysu,$(SYSU),$(OUT)/sysu) $(if $(SYNTH),--dataset synth_sysu --modalities rgb$(,)ir)
	touch $@
pack: $(OUT)/vis/.done $(OUT)/sysu/.done

$(OUT)/ckpt/manifest.json: $(OUT)/vis/.done $(OUT)/sysu/.done
	$(LAUNCH) invert fit '$(OUT)/vis/train-*.tar' '$(OUT)/sysu/train-*.tar' -o $(OUT)/ckpt --base $(BASE) \
	  --rank $(RANK) --lr $(LR) --code-length $(CODE_LEN) --min-images-per-id $(MIN_IMGS) --steps $(FIT_STEPS) --seed $(SEED) $(FIT_ARGS)
fit: $(OUT)/ckpt/manifest.json

# every fitted identity under the infrared camera codes
$(OUT)/generated/.done: $(OUT)/ckpt/manifest.json
	$(LAUNCH) invert sample $(OUT)/ckpt -o $(OUT)/generated --cameras ir --per-id $(PER_ID) --steps $(STEPS) \
	  --scheduler dpm++ --guidance $(GUIDANCE) --seed $(SEED) $(SAMPLE_ARGS)
	touch $@
sample: $(OUT)/generated/.done

$(OUT)/runs/base/model.safetensors: $(OUT)/sysu/.done
	$(LAUNCH) train '$(OUT)/sysu/train-*.tar' -o $(@D) --seed $(SEED) $(TRAIN_ARGS)
$(OUT)/runs/dive/model.safetensors: $(OUT)/generated/.done
	$(LAUNCH) train '$(OUT)/sysu/train-*.tar' '$(OUT)/vis/train-*.tar' --generated '$(OUT)/generated/*.tar' \
	  --mix concat -o $(@D) --seed $(SEED) $(TRAIN_ARGS)
train: $(OUT)/runs/base/model.safetensors $(OUT)/runs/dive/model.safetensors

$(OUT)/results/%.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval '$(OUT)/sysu/query-*.tar' -g '$(OUT)/sysu/gallery-*.tar' --model $(OUT)/runs/$* -p $(PROTOCOL) --json $@ $(EVAL_ARGS)
eval: $(OUT)/results/base.json $(OUT)/results/dive.json

clean:
	rm -rf $(OUT)
