# mi-screen: PTB-XL -> Parquet -> MI criteria model (or a Keras network) -> ONNX -> nightly scorer.
# Every target sets itself up (creates .venv and installs) on a fresh machine.
#
#   make demo                       whole pipeline on the shipped sample, then score it
#   make demo-beats                 the ECG5000 beat system end to end (a demonstration)
#   make test                       the test suite (what CI runs)
#   make ingest train export PTBXL_DIR=/path/to/ptb-xl     the full corpus
#   variables: RATE=100|500  ARCH=criteria|cnnlstm|resnet1d|seed  EPOCHS=N  OUT=out  SCORE_INPUT=DIR
#              BANDS='--min-sensitivity S --min-specificity S --confidence C' (train fit's); a change retrains
#              RESULTS=FILE  BEAT_ARCH=beatcnn|seed003
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

SAMPLE_DIR := data/ptbxl-sample
PTBXL_DIR ?= $(SAMPLE_DIR)
RATE ?= 100
OUT ?= out
ARCH ?= criteria
EPOCHS ?=
N_JOBS ?= -1
# the shipped sample and a full corpus get their own folders, so neither stands in for the other
DATASET := $(if $(filter $(PTBXL_DIR),$(SAMPLE_DIR)),sample,ptbxl)
DATA := $(OUT)/$(DATASET)-$(RATE)
RUN := $(OUT)/run-$(DATASET)-$(ARCH)-$(RATE)
MODEL := $(OUT)/model.onnx
SCORE_INPUT ?= $(SAMPLE_DIR)/records$(RATE)
RESULTS ?= $(OUT)/results.parquet

# Folds: PTB-XL's recommendation on the full corpus. The shipped sample holds folds 1-8 only,
# so it validates on 7 and tests on 8 (folds are patient-disjoint by construction).
# Bands: on the full corpus, train fit's default (sensitivity and specificity 0.95, proven as
# 95 % lower confidence bounds). The sample's 41 out-of-fold MI records cannot prove 0.95
# (about 59 are needed), and bands that must prove it put 80 % of the records in borderline;
# so the sample's model takes the best trade-off its records show, as plain estimates: MI in
# "normal" at most 10 %, non-MI in "MI" at most 5 % (README, "How far the bands decide").
ifeq ($(PTBXL_DIR),$(SAMPLE_DIR))
FOLDS ?= --train-folds 1-6 --val-folds 7 --test-folds 8
BANDS ?= --min-sensitivity 0.90 --min-specificity 0.95 --confidence 0
else
FOLDS ?= --train-folds 1-8 --val-folds 9 --test-folds 10
BANDS ?=
endif

# the beat system (ECG5000)
BEAT_ARCH ?= beatcnn
ECG5000 := data/ecg5000/ECG5000_TRAIN.txt
BEATS_DATA := $(OUT)/ecg5000
BEATS_RUN := $(OUT)/run-beats-$(BEAT_ARCH)
BEATS_MODEL := $(OUT)/beats.onnx

.PHONY: FORCE help setup ingest train export score demo demo-beats browser test bench lint clean download-ptbxl

help:
	@sed -n '1,10p' Makefile

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,signals,formats,plots,app,cluster,cloud,dev]'
	touch $@

setup: $(VENV)/.installed

ingest: $(DATA)/manifest.json
$(DATA)/manifest.json: | setup
	$(BIN)/ingest ptbxl --root $(PTBXL_DIR) --out $(DATA) --rate $(RATE) --n-jobs $(N_JOBS)

# a criteria model is trained on one version of signals.criteria's measurements, and the scorer
# refuses it under another: a change there retrains it (about 20 s on the sample)
MEASURES := signals/criteria.py
# the folds and bands every run here is trained with, as a file rewritten only when they change:
# `make train FOLDS=... BANDS=...` then retrains instead of keeping a run made with others
SETTINGS := $(OUT)/.settings-$(DATASET)
$(SETTINGS): FORCE
	@mkdir -p $(OUT)
	@echo '$(FOLDS) $(BANDS)' | cmp -s - $@ 2>/dev/null || echo '$(FOLDS) $(BANDS)' > $@
FORCE:

train: $(RUN)/run.json
$(RUN)/run.json: $(DATA)/manifest.json $(SETTINGS) $(if $(filter criteria,$(ARCH)),$(MEASURES)) | setup
	$(BIN)/train fit --data $(DATA) --out $(RUN) --arch $(ARCH) $(if $(EPOCHS),--epochs $(EPOCHS)) $(FOLDS) $(BANDS) --overwrite

export: $(MODEL)
$(MODEL): $(RUN)/run.json | setup
	$(BIN)/train export --run $(RUN) --out $(MODEL) --overwrite

score: $(MODEL) | setup
	$(BIN)/infer score --input $(SCORE_INPUT) --model $(MODEL) --out $(RESULTS) --overwrite
	$(BIN)/infer report $(RESULTS) --out $(basename $(RESULTS)).html --overwrite

demo: score
	@echo "Report: $(RUN)/report.md   Model card: $(OUT)/model_card.md   Results: $(RESULTS), $(basename $(RESULTS)).html"

# the network model `make bench` compares the default criteria model with
NET_ARCH := cnnlstm
NET_RUN := $(OUT)/run-$(DATASET)-$(NET_ARCH)-$(RATE)
NET_MODEL := $(OUT)/model-$(NET_ARCH).onnx
ifneq ($(ARCH),$(NET_ARCH))
$(NET_RUN)/run.json: $(DATA)/manifest.json $(SETTINGS) | setup
	$(BIN)/train fit --data $(DATA) --out $(NET_RUN) --arch $(NET_ARCH) $(FOLDS) $(BANDS) --overwrite
endif

$(NET_MODEL): $(NET_RUN)/run.json | setup
	$(BIN)/train export --run $(NET_RUN) --out $(NET_MODEL) --overwrite

# the criteria model's other learners, which `make bench` measures beside the default
ADD_RUN := $(OUT)/run-$(DATASET)-criteria-additive-$(RATE)
ADD_MODEL := $(OUT)/model-additive.onnx
$(ADD_RUN)/run.json: $(DATA)/manifest.json $(SETTINGS) $(MEASURES) | setup
	$(BIN)/train fit --data $(DATA) --out $(ADD_RUN) --arch criteria --learner additive $(FOLDS) $(BANDS) --overwrite

$(ADD_MODEL): $(ADD_RUN)/run.json | setup
	$(BIN)/train export --run $(ADD_RUN) --out $(ADD_MODEL) --overwrite

TREES_RUN := $(OUT)/run-$(DATASET)-criteria-trees-$(RATE)
TREES_MODEL := $(OUT)/model-trees.onnx
$(TREES_RUN)/run.json: $(DATA)/manifest.json $(SETTINGS) $(MEASURES) | setup
	$(BIN)/train fit --data $(DATA) --out $(TREES_RUN) --arch criteria --learner trees $(FOLDS) $(BANDS) --overwrite

$(TREES_MODEL): $(TREES_RUN)/run.json | setup
	$(BIN)/train export --run $(TREES_RUN) --out $(TREES_MODEL) --overwrite

$(BEATS_DATA)/manifest.json: $(ECG5000) | setup
	$(BIN)/ingest ecg5000 --input $(ECG5000) --out $(BEATS_DATA) --overwrite

$(BEATS_RUN)/model.keras: $(BEATS_DATA)/manifest.json | setup
	$(BIN)/train fit --task beats --data $(BEATS_DATA) --out $(BEATS_RUN) --arch $(BEAT_ARCH) --overwrite

$(BEATS_MODEL): $(BEATS_RUN)/model.keras | setup
	$(BIN)/train export --run $(BEATS_RUN) --out $(BEATS_MODEL) --overwrite

demo-beats: $(BEATS_MODEL) | setup
	$(BIN)/infer score --model $(BEATS_MODEL) --input data/ecg5000 --out $(OUT)/beats-results.parquet --overwrite
	$(BIN)/infer score --model $(BEATS_MODEL) --input $(SAMPLE_DIR)/records500 --beats --out $(OUT)/beats-per-record.parquet --overwrite
	@echo "Report: $(BEATS_RUN)/report.md   Model card: $(OUT)/beats_card.md   Results: $(OUT)/beats-results.parquet, $(OUT)/beats-per-record.parquet"

download-ptbxl: | setup
	$(BIN)/ingest download --dest $(if $(filter $(PTBXL_DIR),$(SAMPLE_DIR)),data/ptb-xl,$(PTBXL_DIR))

# pytest exits 5 when it collects no test; say so loudly rather than pass silently or crash CI.
# the report's browser tests need Debian's Chromium and ChromeDriver; installed when missing
# (as root, as on CI), otherwise the tests say what to install
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "Chromium is missing: apt-get install chromium chromium-driver (browser tests need it)"

test: setup browser
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

bench: $(MODEL) $(NET_MODEL) $(ADD_MODEL) $(TREES_MODEL) | setup
	$(BIN)/python benchmarks/run.py --out benchmarks/RESULTS.md --network-model $(NET_MODEL) --additive-model $(ADD_MODEL) --trees-model $(TREES_MODEL)

lint: setup
	$(BIN)/ruff check schemas common signals ingest train infer tests benchmarks

clean:
	rm -rf $(OUT)
