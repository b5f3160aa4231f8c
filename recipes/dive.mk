# DiVE (seed 002): textual inversion of identities + a camera-code LoRA on SD 1.5, then infrared
# images of identities that exist only in a visible-light dataset. Reproduces DiVE Table 1 (SYSU-MM01
# all-search with Market-1501 identities rendered as infrared). Expected with the real data and
# weights: the paper's SYSU all-search gains over its baseline (DiVE Table 1).
#
#   make -f recipes/dive.mk VIS=/data/Market-1501-v15.09.15 SYSU=/data/SYSU-MM01 [GPUS=8]
PAPER    := dive
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

VIS      ?= data/Market-1501-v15.09.15
SYSU     ?= data/SYSU-MM01
BASE     ?= stable-diffusion-v1-5/stable-diffusion-v1-5
# paper: LoRA rank 128, lr 5e-5, 8-character camera codes (released code: 4), >= 12 images per id
RANK     ?= 128
LR       ?= 5e-5
CODE_LEN ?= 8
MIN_IMGS ?= 12
FIT_STEPS ?= 400000
# paper: DPM-Solver++ 25 steps (released code: 50), guidance 7.5, 18 images per id
STEPS    ?= 25
PER_ID   ?= 18

.PHONY: all pack fit sample train eval clean
all: eval

$(OUT)/vis/.done:
	$(REID) pack market1501 $(VIS) -o $(OUT)/vis
	touch $@
$(OUT)/sysu/.done:
	$(REID) pack sysu $(SYSU) -o $(OUT)/sysu
	touch $@
pack: $(OUT)/vis/.done $(OUT)/sysu/.done

$(OUT)/ckpt/manifest.json: $(OUT)/vis/.done $(OUT)/sysu/.done
	$(LAUNCH) invert fit '$(OUT)/vis/train-*.tar' '$(OUT)/sysu/train-*.tar' -o $(OUT)/ckpt --base $(BASE) \
	  --rank $(RANK) --lr $(LR) --code-length $(CODE_LEN) --min-images-per-id $(MIN_IMGS) --steps $(FIT_STEPS) --seed $(SEED)
fit: $(OUT)/ckpt/manifest.json

# every fitted identity under the infrared camera codes
$(OUT)/generated/.done: $(OUT)/ckpt/manifest.json
	$(LAUNCH) invert sample $(OUT)/ckpt -o $(OUT)/generated --cameras ir --per-id $(PER_ID) --steps $(STEPS) \
	  --scheduler dpm++ --guidance 7.5 --seed $(SEED)
	touch $@
sample: $(OUT)/generated/.done

$(OUT)/runs/base/model.safetensors: $(OUT)/sysu/.done
	$(LAUNCH) train '$(OUT)/sysu/train-*.tar' -o $(@D) --seed $(SEED)
$(OUT)/runs/dive/model.safetensors: $(OUT)/generated/.done
	$(LAUNCH) train '$(OUT)/sysu/train-*.tar' '$(OUT)/vis/train-*.tar' --generated '$(OUT)/generated/*.tar' \
	  --mix concat -o $(@D) --seed $(SEED)
train: $(OUT)/runs/base/model.safetensors $(OUT)/runs/dive/model.safetensors

$(OUT)/results/%.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval '$(OUT)/sysu/query-*.tar' -g '$(OUT)/sysu/gallery-*.tar' --model $(OUT)/runs/$* -p sysu-all --json $@
eval: $(OUT)/results/base.json $(OUT)/results/dive.json

clean:
	rm -rf $(OUT)
