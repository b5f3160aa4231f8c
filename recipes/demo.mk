# The README's first command (`make demo`): the whole DLCR chain and HSAL training on the built-in
# synthetic dataset, with TINY UNTRAINED STAND-IN MODELS built on the fly. What it shows is the
# pipeline working end to end, not the papers' image quality or accuracy.
#
#   make -f recipes/demo.mk [OUT=demo-out] [IDS=24] [EPOCHS=8] ...
#
# synth -> mask -> caption (template) -> inpaint (tiny SD) -> train baseline / +generated (DLCR
# progressive) / HSAL -> eval CC and SC -> results table + contact sheet.

REID    ?= reid
PYTHON  ?= python3
OUT     ?= demo-out
IDS     ?= 24
OUTFITS ?= 3
CAMS    ?= 3
IMGS    ?= 2
SIZE    ?= 64x32
K       ?= 2
STEPS   ?= 4
EPOCHS  ?= 8
BATCH   ?= 8x4
BACKBONE ?= resnet-small
SEED    ?= 0
HERE    := $(dir $(lastword $(MAKEFILE_LIST)))
SCRIPTS := $(HERE)../scripts

TRAIN_OPTS = --backbone $(BACKBONE) --pretrained none --epochs $(EPOCHS) --batch $(BATCH) --size $(SIZE) \
             --milestones $(EPOCHS) --warmup-epochs 0 --seed $(SEED) -q
EVAL_SETS  = $(OUT)/data/query-*.tar --gallery '$(OUT)/data/gallery-*.tar'

.PHONY: all clean
all: $(OUT)/results.md $(OUT)/sheet.png
	@echo
	@echo "Demo finished: $(OUT)/results.md and $(OUT)/sheet.png"
	@echo "NOTE: tiny untrained stand-in models; the figures show the pipeline, not the papers' accuracy."

$(OUT)/data/synth.json:
	$(REID) synth -o $(OUT)/data --ids $(IDS) --outfits $(OUTFITS) --cams $(CAMS) --images-per $(IMGS) \
	  --size $(SIZE) --seed $(SEED) -q

$(OUT)/masked/.done: $(OUT)/data/synth.json
	$(REID) mask --engine labels $(OUT)/data/train-*.tar -o $(OUT)/masked -q
	touch $@

$(OUT)/bank.json: $(OUT)/masked/.done
	$(REID) caption --engine template $(OUT)/masked/train-*.tar -o $(OUT)/captioned --bank $@ -q

$(OUT)/models/inpaint/model_index.json:
	$(PYTHON) $(SCRIPTS)/tiny_models.py inpaint $(OUT)/models/inpaint

$(OUT)/generated/.done: $(OUT)/bank.json $(OUT)/models/inpaint/model_index.json
	$(REID) inpaint $(OUT)/captioned/train-*.tar -o $(OUT)/generated --model $(OUT)/models/inpaint \
	  --prompts bank:$(OUT)/bank.json -k $(K) --steps $(STEPS) --size $(SIZE) --dtype fp32 --seed $(SEED) -q
	touch $@

$(OUT)/runs/baseline/model.safetensors: $(OUT)/data/synth.json
	$(REID) train $(OUT)/data/train-*.tar -o $(@D) $(TRAIN_OPTS)

$(OUT)/runs/dlcr/model.safetensors: $(OUT)/generated/.done
	$(REID) train $(OUT)/data/train-*.tar --generated '$(OUT)/generated/*.tar' -o $(@D) $(TRAIN_OPTS)

$(OUT)/runs/hsal/model.safetensors: $(OUT)/generated/.done
	$(REID) train $(OUT)/data/train-*.tar --generated '$(OUT)/generated/*.tar' --method hsal -o $(@D) $(TRAIN_OPTS)

$(OUT)/results/%-cc.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval $(EVAL_SETS) --model $(OUT)/runs/$* --protocol cc --json $@ -q

$(OUT)/results/%-sc.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval $(EVAL_SETS) --model $(OUT)/runs/$* --protocol sc --json $@ -q

RUNS = baseline dlcr hsal
$(OUT)/results.md: $(foreach r,$(RUNS),$(OUT)/results/$(r)-cc.json $(OUT)/results/$(r)-sc.json)
	@echo
	$(PYTHON) $(SCRIPTS)/results_table.py $@ \
	  "baseline (real only)=$(OUT)/results/baseline-cc.json,$(OUT)/results/baseline-sc.json" \
	  "+ generated (DLCR progressive)=$(OUT)/results/dlcr-cc.json,$(OUT)/results/dlcr-sc.json" \
	  "+ generated, HSAL=$(OUT)/results/hsal-cc.json,$(OUT)/results/hsal-sc.json"

$(OUT)/sheet.png: $(OUT)/generated/.done
	$(REID) show $(OUT)/masked/train-*.tar $(OUT)/generated/*.tar -o $@ --n 8 --overlay mask -q

clean:
	rm -rf $(OUT)
