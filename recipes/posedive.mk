# Pose-dIVE (seed 004): each identity re-rendered in new poses and viewpoints by a reference U-Net +
# pose-guided denoising U-Net, then pose-confidence filtering (supp. §E, eqs. 3-6). Reproduces the
# main paper's Table 1 (Market-1501 / MSMT17 with a BoT-style baseline; the seed is the
# supplementary, sections A-I). Expected with the real data and weights: that table's baseline vs
# +Pose-dIVE rows.
# Synthetic data (what tests/test_recipes.py runs): SYNTH=1 SYNTH_ARGS=... POSE=none keeps synth's
# ground-truth keypoints for the real images; generated images have no keypoints until a pose
# estimator (MediaPipe, `reid pose`) has looked at them, which eq. 5 needs.
#
#   make -f recipes/posedive.mk DATA=/data/Market-1501-v15.09.15 FORMAT=market1501 [GPUS=8]
PAPER    := posedive
include $(dir $(lastword $(MAKEFILE_LIST)))common.mk

DATA     ?= data/Market-1501-v15.09.15
FORMAT   ?= market1501
BASE     ?= stable-diffusion-v1-5/stable-diffusion-v1-5
ENCODER  ?= openai/clip-vit-large-patch14
# ~15 images per identity is the paper's best (§D, Fig. 2); thresholds 0.6 (§F, Fig. 4)
PER_ID   ?= 15
TAU      ?= 0.6
# eq. 5's eps_gen is "a small value" (§E): no number in the paper; 0.1 is reidtools' (docs/filter.md)
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
	$(call pack_cmd,$(FORMAT),$(DATA),$(OUT)/real)
	touch $@

$(OUT)/posed/%.tar: $(OUT)/real/%.tar
	$(call pose_cmd,$<,$@)
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
# the report records each rule's thresholds (eps_gen, tau_gen) beside what it removed
$(OUT)/kept/%.tar: $(OUT)/generated-posed/%.tar
	@mkdir -p $(OUT)/reports
	$(REID) filter $< --rule pose-gen --tau-gen $(TAU) --eps-gen $(EPS_GEN) -o $(@D) --report $(OUT)/reports/kept-$*.json
generate: $(addprefix $(OUT)/kept/,$(TRAIN))

$(OUT)/runs/base/model.safetensors: $(OUT)/real/.done
	$(LAUNCH) train '$(OUT)/real/train-*.tar' -o $(@D) --seed $(SEED) $(TRAIN_ARGS)
$(OUT)/runs/posedive/model.safetensors: $(addprefix $(OUT)/kept/,$(TRAIN))
	$(LAUNCH) train '$(OUT)/real/train-*.tar' --generated '$(OUT)/kept/*.tar' --mix concat -o $(@D) --seed $(SEED) $(TRAIN_ARGS)
train: $(OUT)/runs/base/model.safetensors $(OUT)/runs/posedive/model.safetensors

$(OUT)/results/%.json: $(OUT)/runs/%/model.safetensors
	@mkdir -p $(@D)
	$(REID) eval '$(OUT)/real/query-*.tar' -g '$(OUT)/real/gallery-*.tar' --model $(OUT)/runs/$* -p market --json $@ $(EVAL_ARGS)
eval: $(OUT)/results/base.json $(OUT)/results/posedive.json

clean:
	rm -rf $(OUT)
