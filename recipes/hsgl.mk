# HSGL "Try Harder" (seed 001): frontal + quality selection, try-off catalogue, try-on with shared
# garments (hard negatives), coarse inpainting (hard positives), hard-sample adaptive learning.
# Reproduces HSGL Table 1 (PRCC / LTCC with CAL + HSGL). Expected with the real data and weights
# (HSGL Table 1): see the paper's PRCC CC rows for CAL vs CAL+HSGL.
#
#   make -f recipes/hsgl.mk DATA=/data/ltcc FORMAT=ltcc PROTOCOL=cc SCHP=parsing_lip.onnx
PAPER    := hsgl
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

DATA     ?= data/ltcc
FORMAT   ?= ltcc
PROTOCOL ?= cc
SCHP     ?= parsing_lip.onnx
# HSGL picks the 5 best images of the dataset for the catalogue (paper)
TOP_N    ?= 5
# eq. 3: n images per identity x m garments
PER_ID   ?= 2
GARMENTS ?= 5
# paper's prompt (released code: "change the outfit of the person")
PROMPT   ?= generate a new cloth for the person
# HSGL used SD-2 inpainting
INPAINT  ?= stabilityai/stable-diffusion-2-inpainting
TRYOFF   ?= stable-diffusion-v1-5/stable-diffusion-inpainting
TRYON    ?= yisol/IDM-VTON
# the released code ships the frontal filter switched off; the paper uses it (FRONTAL=--rule frontal)
FRONTAL  ?= --rule frontal
METHOD   ?= cal+hsal

TRAIN    = $(call shards,$(OUT)/real,train)

.PHONY: all pack generate train eval clean
all: pack
	$(RECIPE) $(OUT)/picked/.done
	$(RECIPE) generate
	$(RECIPE) train eval

pack: $(OUT)/real/.done
$(OUT)/real/.done:
	$(REID) pack $(FORMAT) $(DATA) -o $(OUT)/real
	touch $@

$(OUT)/posed/%.tar: $(OUT)/real/%.tar
	$(LAUNCH) pose $< -o $(@D)
$(OUT)/masked/%.tar: $(OUT)/posed/%.tar
	$(LAUNCH) mask --engine schp-onnx --model $(SCHP) $< -o $(@D)
# the catalogue source: frontal poses, then the TOP_N sharpest images of the whole training set
$(OUT)/picked/.done: $(addprefix $(OUT)/masked/,$(TRAIN))
	$(REID) filter '$(OUT)/masked/train-*.tar' $(FRONTAL) --rule quality --top-n $(TOP_N) \
	  -o $(OUT)/picked --report $(OUT)/picked-report.json
	touch $@
$(OUT)/catalogue/.done: $(OUT)/picked/.done
	$(REID) tryoff '$(OUT)/picked/*.tar' -o $(OUT)/catalogue --model $(TRYOFF)
	touch $@
# hard negatives: n images per id x m catalogue garments, clothes = the shared garment id
$(OUT)/tryon/.done: $(OUT)/catalogue/.done
	$(LAUNCH) tryon '$(OUT)/masked/train-*.tar' --garments '$(OUT)/catalogue/*.tar' --per-id $(PER_ID) \
	  --garments-per $(GARMENTS) --model $(TRYON) -o $(OUT)/tryon --seed $(SEED)
	touch $@
# hard positives: coarse inpainting with one fixed prompt
$(OUT)/coarse/%.tar: $(OUT)/masked/%.tar
	$(LAUNCH) inpaint $< -o $(@D) --model $(INPAINT) --prompts 'fixed:$(PROMPT)' --seed $(SEED)
generate: $(OUT)/tryon/.done $(addprefix $(OUT)/coarse/,$(TRAIN))

$(OUT)/runs/base/model.safetensors: $(OUT)/real/.done
	$(LAUNCH) train '$(OUT)/real/train-*.tar' -o $(@D) --method cal --seed $(SEED)
$(OUT)/runs/hsgl/model.safetensors: $(OUT)/tryon/.done $(addprefix $(OUT)/coarse/,$(TRAIN))
	$(LAUNCH) train '$(OUT)/real/train-*.tar' --generated '$(OUT)/tryon/*.tar' --generated '$(OUT)/coarse/*.tar' \
	  --mix concat -o $(@D) --method $(METHOD) --seed $(SEED)
train: $(OUT)/runs/base/model.safetensors $(OUT)/runs/hsgl/model.safetensors

$(OUT)/results/%.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval '$(OUT)/real/query-*.tar' -g '$(OUT)/real/gallery-*.tar' --model $(OUT)/runs/$* \
	  -p $(PROTOCOL) --json $@
eval: $(OUT)/results/base.json $(OUT)/results/hsgl.json

clean:
	rm -rf $(OUT)
