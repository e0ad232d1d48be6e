# make build-dataset   set up .venv, generate the bundled sample (when INPUT is not given), run the pipeline
# make test            set up .venv and run the test suite
# make bench           run the benchmarks and write benchmarks/results.md
# make train           codec, feature shards and the `tiny` SpatialV2A model on OUT's shards (builds them if missing)
#
# On your own data:  make build-dataset INPUT=vggsound.csv MEDIA_ROOT=/data/vggsound OUT=runs/vgg \
#                        CONFIG=configs/binauralvggsound.yaml RAY_ADDRESS=auto
SHELL := /bin/bash
PYTHON_BIN := .venv/bin/python
CONFIG ?= configs/sample.yaml
SAMPLE_DIR ?= sample
OUT ?= runs/sample
INPUT ?=
MEDIA_ROOT ?=
EXECUTOR ?=
ARGS ?=
export RAY_ADDRESS

TRAIN_OUT ?= $(OUT)/trainer
TRAIN_CONFIG ?= tiny
TRAIN_ARGS ?=

.PHONY: env build-dataset sample test bench train clean

env:
	@scripts/setup_env.sh

sample: env
	$(PYTHON_BIN) -m pipeline sample --out $(SAMPLE_DIR)

build-dataset: env
ifeq ($(strip $(INPUT)),)
	@test -f $(SAMPLE_DIR)/manifest.csv || $(PYTHON_BIN) -m pipeline sample --out $(SAMPLE_DIR)
	$(PYTHON_BIN) -m pipeline build --config $(CONFIG) --input $(SAMPLE_DIR)/manifest.csv \
		--media-root $(SAMPLE_DIR) --out $(OUT) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(ARGS)
else
	$(PYTHON_BIN) -m pipeline build --config $(CONFIG) --input $(INPUT) \
		--media-root $(if $(MEDIA_ROOT),$(MEDIA_ROOT),$(dir $(INPUT))) --out $(OUT) \
		$(if $(EXECUTOR),--executor $(EXECUTOR)) $(ARGS)
endif

test:
	@scripts/setup_env.sh --test
	$(PYTHON_BIN) -m pytest -q --durations=40

bench: env
	$(PYTHON_BIN) -m benchmarks

train: env
	@test -f $(OUT)/shards/sizes.json || $(MAKE) build-dataset OUT=$(OUT)
	$(PYTHON_BIN) -m trainer codec --shards $(OUT)/shards --out $(TRAIN_OUT)/codec.pt --eval-clips 2
	$(PYTHON_BIN) -m trainer featurize --shards $(OUT)/shards --codec $(TRAIN_OUT)/codec.pt --out $(OUT)/features
	$(PYTHON_BIN) -m trainer train --data $(OUT)/features --config $(TRAIN_CONFIG) --out $(TRAIN_OUT)/$(TRAIN_CONFIG) $(TRAIN_ARGS)

clean:
	rm -rf runs $(SAMPLE_DIR)
