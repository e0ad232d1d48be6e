# make build-dataset   set up .venv, generate the bundled sample (when INPUT is not given), run the pipeline
# make test            set up .venv and run the test suite
# make bench           run the benchmarks and write benchmarks/results.md
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

.PHONY: env build-dataset sample test bench clean

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
	$(PYTHON_BIN) -m pytest -q --durations=15

bench: env
	$(PYTHON_BIN) -m benchmarks

clean:
	rm -rf runs $(SAMPLE_DIR)
