# Pose-dIVE (seed 004): each identity re-rendered in new poses and viewpoints by a reference U-Net +
# pose-guided denoising U-Net, then pose-confidence filtering (eqs. 3-6). Reproduces Pose-dIVE
# Table 1 (Market-1501 / MSMT17 with a BoT-style baseline). Expected with the real data and
# weights: the paper's baseline vs +Pose-dIVE rows.
#
#   make -f recipes/posedive.mk DATA=/data/Market-1501-v15.09.15 FORMAT=market1501 [GPUS=8]
PAPER    := posedive
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

DATA     ?= data/Market-1501-v15.09.15
FORMAT   ?= market1501
BASE     ?= stable-diffusion-v1-5/stable-diffusion-v1-5
ENCODER  ?= openai/clip-vit-large-patch14
# ~15 images per identity is the paper's best (Fig. 2, §D); thresholds 0.6 (Fig. 4)
PER_ID   ?= 15
TAU      ?= 0.6
# eq. 5's eps_gen is "a small value" (§E): no number in the paper
EPS_GEN  ?= 0.1
FIT_STEPS ?= 30000
# target viewpoints: uniform over 360 deg, the point of Pose-dIVE (§B); `dataset` re-samples the bias
VIEWPOINTS ?= uniform
# skeleton, depth and normal maps (§B), rendered by `reid posegen poses`' parametric body
CONDITIONS ?= skeleton,depth,normal
# extra flags per stage, e.g. FIT_ARGS='--size 256x128' POSES_ARGS='--size 256x128'
FIT_ARGS ?=
POSES_ARGS ?=
SAMPLE_ARGS ?=

TRAIN    = $(call shards,$(OUT)/real,train)

.PHONY: all pack fit targets generate train eval clean
all: pack
	$(RECIPE) fit
	$(RECIPE) generate
	$(RECIPE) train eval

pack: $(OUT)/real/.done
$(OUT)/real/.done:
	$(REID) pack $(FORMAT) $(DATA) -o $(OUT)/real
	touch $@

$(OUT)/posed/%.tar: $(OUT)/real/%.tar
	$(LAUNCH) pose $< -o $(@D)
$(OUT)/ckpt/manifest.json: $(addprefix $(OUT)/posed/,$(TRAIN))
	$(LAUNCH) posegen fit '$(OUT)/posed/train-*.tar' -o $(OUT)/ckpt --base $(BASE) --image-encoder $(ENCODER) \
	  --conditions $(CONDITIONS) --render-conditions --tau-ref $(TAU) --tau-tar $(TAU) --steps $(FIT_STEPS) --seed $(SEED) $(FIT_ARGS)
fit: $(OUT)/ckpt/manifest.json

# per identity, PER_ID sampled viewpoints x poses (the shard's poses lifted to 3D), rendered
$(OUT)/targets/%.tar: $(OUT)/posed/%.tar
	$(REID) posegen poses $< -o $(@D) --viewpoints $(VIEWPOINTS) --poses dataset --per-id $(PER_ID) \
	  --conditions $(CONDITIONS) --tau-tar $(TAU) --seed $(SEED) $(POSES_ARGS)
targets: $(addprefix $(OUT)/targets/,$(TRAIN))

# generated -> keypoints of what was generated -> eqs. 5-6 against the recorded target pose
$(OUT)/generated/%.tar: $(OUT)/posed/%.tar $(OUT)/targets/%.tar $(OUT)/ckpt/manifest.json
	$(LAUNCH) posegen sample $(OUT)/ckpt $< -o $(@D) --targets $(OUT)/targets/$*.tar --tau-ref $(TAU) \
	  --seed $(SEED) $(SAMPLE_ARGS)
$(OUT)/generated-posed/%.tar: $(OUT)/generated/%.tar
	$(LAUNCH) pose $< -o $(@D)
$(OUT)/kept/%.tar: $(OUT)/generated-posed/%.tar
	$(REID) filter $< --rule pose-gen --tau-gen $(TAU) --eps-gen $(EPS_GEN) -o $(@D)
generate: $(addprefix $(OUT)/kept/,$(TRAIN))

$(OUT)/runs/base/model.safetensors: $(OUT)/real/.done
	$(LAUNCH) train '$(OUT)/real/train-*.tar' -o $(@D) --seed $(SEED)
$(OUT)/runs/posedive/model.safetensors: $(addprefix $(OUT)/kept/,$(TRAIN))
	$(LAUNCH) train '$(OUT)/real/train-*.tar' --generated '$(OUT)/kept/*.tar' --mix concat -o $(@D) --seed $(SEED)
train: $(OUT)/runs/base/model.safetensors $(OUT)/runs/posedive/model.safetensors

$(OUT)/results/%.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval '$(OUT)/real/query-*.tar' -g '$(OUT)/real/gallery-*.tar' --model $(OUT)/runs/$* -p market --json $@
eval: $(OUT)/results/base.json $(OUT)/results/posedive.json

clean:
	rm -rf $(OUT)
