# defectgate: the single entry point. `make demo` and `make test` set themselves up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DG := $(VENV)/bin/defectgate
ARCH := $(shell uname -m)
EXTRAS ?= train,qa,openvino,station,dev
# torch and torchvision come from the machine's local wheel cache on x86_64 (CUDA build, runs on CPU)
TORCH_PINS := $(if $(filter x86_64,$(ARCH)),torch==2.14.1 torchvision==0.29.1,)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

# Offline: ultralytics must never try to download fonts, weights or datasets.
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.venv/ultralytics-settings
export MPLBACKEND := Agg

# --- demo settings (small enough for a 2-core CPU in a few minutes) ---
DEMO_DIR ?= runs/demo
DEMO_IMAGES ?= 800
DEMO_EPOCHS ?= 14
DEMO_IMGSZ ?= 192
DEMO_PARTS ?= 240
# A from-scratch model gets ~14 short epochs here, so the demo trains the way that converged fastest in
# our measurements on the synthetic parts: ultralytics' built-in augmentation only (the photometric
# `inspection` preset slowed early learning: 10 % vs 63 % of NG parts caught after 12 epochs), one
# warm-up epoch, mosaic off for the last 3, validation only at the end. Thresholds are calibrated on
# the val split to a 10 % part-level escape rate: a 6-minute model cannot reach 2 % without rejecting
# most good parts.
DEMO_TRAIN_ARGS ?= --augment none --set hyp.warmup_epochs=1 --set hyp.close_mosaic=3 --set hyp.val=false
DEMO_TARGET_ESCAPE ?= 0.10

.PHONY: help setup demo demo-shadow demo-plc test test-fast bench qa engine data train evaluate export promote retrain clean

help:
	@echo "make setup    create .venv and install defectgate with all extras (idempotent)"
	@echo "make demo     synthetic parts -> train -> export bundle -> run station -> line report"
	@echo "make demo-shadow  the demo line with a recalibrated candidate judging in shadow mode (never fires)"
	@echo "make demo-plc the demo line with a simulated PLC owning the ejector; reconciles its rejects"
	@echo "make test     the whole test suite (what CI runs)"
	@echo "make data train evaluate export promote | make retrain   the gated retraining chain"
	@echo "make bench    runtime benchmark -> docs/performance.md figures"
	@echo "make qa       QA review and labeling app on the demo archive"
	@echo "make engine   TensorRT engine from the current bundle (needs an NVIDIA GPU)"

setup: $(STAMP)

# torch's CUDA build brings ~3 GB of NVIDIA wheels: .venv ends at ~7 GB and pip needs ~3 GB more while
# it unpacks. No pip cache (it would hold a second copy of every wheel); a short disk is named up front,
# before pip stops half-way with "No space left on device".
SETUP_NEED_GIB ?= 11
$(STAMP): pyproject.toml
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	 if [ "$$free" -lt $(SETUP_NEED_GIB) ]; then \
	   echo "make setup: warning: $$free GiB free on the disk of $(CURDIR); a fresh install needs about $(SETUP_NEED_GIB) GiB" >&2; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir $(TORCH_PINS) -e ".[$(EXTRAS)]"
	@mkdir -p $(YOLO_CONFIG_DIR)
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(DG) data synth --out $(DEMO_DIR)/data --images $(DEMO_IMAGES) --seed 0
	$(DG) train --data $(DEMO_DIR)/data/data.yaml --epochs $(DEMO_EPOCHS) --imgsz $(DEMO_IMGSZ) --out $(DEMO_DIR)/train --seed 0 $(DEMO_TRAIN_ARGS)
	$(DG) export --weights $(DEMO_DIR)/train/weights/best.pt --data $(DEMO_DIR)/data/data.yaml --out $(DEMO_DIR)/bundle --target-escape $(DEMO_TARGET_ESCAPE)
	$(DG) run --config configs/demo-station.yaml --set model.bundle=$(DEMO_DIR)/bundle --set source.uri="synthetic://conveyor?parts=$(DEMO_PARTS)&seed=1" --set station.run_dir=$(DEMO_DIR)/station

# demo-plc: the demo line in plc_tracks mode (docs/line-integration.md). `defectgate plc-sim` is the PLC:
# belt, photo-eye, shift register, ejector; it starts the belt once the station says Ready and runs
# DEMO_PLC_PARTS parts. The station (configs/plc-station.yaml) takes one frame per PLC trigger and
# writes each result into the PLC's result block; it fires nothing. Then the PLC's ejected parts are
# reconciled part by part with the station's archive. Uses the demo bundle (builds it if missing).
DEMO_PLC_DIR ?= runs/demo-plc
DEMO_PLC_BUNDLE ?= $(DEMO_DIR)/bundle
DEMO_PLC_PARTS ?= 240
DEMO_PLC_PORT ?= 5020
demo-plc: setup
	@test -f $(DEMO_PLC_BUNDLE)/model.json || $(MAKE) demo
	rm -rf $(DEMO_PLC_DIR) && mkdir -p $(DEMO_PLC_DIR)
	@d=$(DEMO_PLC_DIR); \
	$(DG) plc-sim --port $(DEMO_PLC_PORT) --belt-speed 600 --camera-to-ejector 300 --pitch 120 \
		--parts $(DEMO_PLC_PARTS) --wait-for-station --duration 1800 --json $$d/plc.json > $$d/plc-sim.log 2>&1 & sim=$$!; \
	$(DG) run --config configs/plc-station.yaml --set model.bundle=$(DEMO_PLC_BUNDLE) --set station.run_dir=$$d/station \
		--set line.result_block.modbus.port=$(DEMO_PLC_PORT) $(DEMO_PLC_ARGS) & station=$$!; \
	while [ ! -f $$d/plc.json ]; do \
		if ! kill -0 $$station 2>/dev/null; then kill $$sim; cat $$d/plc-sim.log; echo "demo-plc: the station stopped early" >&2; exit 1; fi; \
		if ! kill -0 $$sim 2>/dev/null; then kill $$station; cat $$d/plc-sim.log; echo "demo-plc: plc-sim stopped early" >&2; exit 1; fi; \
		sleep 0.5; done; \
	kill -TERM $$station; wait $$station || exit 1; kill -TERM $$sim; wait $$sim; \
	$(PY) -m defectgate.line.reconcile --plc $$d/plc.json --archive $$d/station/archive --json $$d/reconcile.json

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

# QA app on the demo archive; exports land in $(DEMO_DIR)/qa-exports/qa-vNNNN (what retraining merges).
# Binds 127.0.0.1; QA_HOST=0.0.0.0 needs QA_ARGS="--auth-file FILE" or DEFECTGATE_QA_USERS.
QA_HOST ?= 127.0.0.1
QA_PORT ?= 7860
QA_LABEL_DIR ?= datasets
# bench: our station vs ultralytics (ONNX, OpenVINO FP32, OpenVINO INT8) on the same frames, each
# engine in its own process, alternating rounds, at the bundle's size and at 640 px (exported from the
# same trained weights), one table of ratios; the CPU model and flags go into the JSON. Uses the demo
# bundle and weights (builds them if missing); our INT8 bundles and the 640 px ones are exported into
# runs/bench once. BENCH_ARGS="--isa AVX2" runs every engine as on a CPU without AVX-512/VNNI (oneDNN
# cap), BENCH_ARGS="--soak-minutes 30" adds the soak (RSS slope over its second half).
BENCH_MODEL ?= $(DEMO_DIR)/bundle
BENCH_WEIGHTS ?= $(DEMO_DIR)/train/weights/best.pt
BENCH_DATA ?= $(DEMO_DIR)/data/data.yaml
BENCH_OURS ?= onnxruntime,openvino,openvino:bf16,openvino-int8,openvino-int8:bf16,openvino-int8@2
BENCH_SIZES ?= bundle,640
BENCH_FRAMES ?= 200
BENCH_ROUNDS ?= 3
BENCH_JSON ?= runs/bench/bench.json
bench: setup
	@test -f $(BENCH_MODEL)/model.json || $(MAKE) demo
	$(DG) bench --model $(BENCH_MODEL) --frames $(BENCH_FRAMES) --rounds $(BENCH_ROUNDS) --ours $(BENCH_OURS) \
		--sizes $(BENCH_SIZES) $(if $(wildcard $(BENCH_WEIGHTS)),--weights $(BENCH_WEIGHTS) --data $(BENCH_DATA),) \
		--out runs/bench --json $(BENCH_JSON) $(BENCH_ARGS)

QA_ARCHIVE ?= $(DEMO_DIR)/station/archive
qa: setup
	@mkdir -p $(QA_LABEL_DIR)
	$(DG) qa --archive $(QA_ARCHIVE) --bundle $(DEMO_DIR)/bundle --exports $(DEMO_DIR)/qa-exports \
		--label-dir $(QA_LABEL_DIR) --host $(QA_HOST) --port $(QA_PORT) $(QA_ARGS)

# Shadow mode on the demo line (docs/rollout.md): the demo model live from a registry; a second export of
# the same weights calibrated to a 3 % escape target (so it rejects more) staged as the candidate, which
# judges every part in shadow and never fires. The line report ends with what the candidate would have done.
SHADOW_DIR ?= $(DEMO_DIR)/shadow
SHADOW_TARGET_ESCAPE ?= 0.03
demo-shadow: setup
	@test -f $(DEMO_DIR)/bundle/model.json -a -f $(DEMO_DIR)/train/weights/best.pt || $(MAKE) demo
	rm -rf $(SHADOW_DIR)
	$(DG) promote $(DEMO_DIR)/bundle --registry $(SHADOW_DIR)/registry --data $(DEMO_DIR)/data/data.yaml
	$(DG) export --weights $(DEMO_DIR)/train/weights/best.pt --data $(DEMO_DIR)/data/data.yaml --out $(SHADOW_DIR)/candidate --target-escape $(SHADOW_TARGET_ESCAPE)
	$(DG) promote $(SHADOW_DIR)/candidate --registry $(SHADOW_DIR)/registry --stage
	$(DG) run --config configs/demo-station.yaml --set model.bundle=$(SHADOW_DIR)/registry --set shadow.bundle=$(SHADOW_DIR)/registry/candidate --set source.uri="synthetic://conveyor?parts=$(DEMO_PARTS)&seed=1" --set station.run_dir=$(SHADOW_DIR)/station
	@echo "next: review the disagreements (make qa QA_ARCHIVE=$(SHADOW_DIR)/station/archive, queue 'Disagreements'), then"
	@echo "      $(DG) promote --registry $(SHADOW_DIR)/registry --evidence shadow --archive $(SHADOW_DIR)/station/archive --data $(DEMO_DIR)/data/data.yaml"

# --- gated retraining chain: make data train evaluate export promote, or make retrain for all ---
# DATA: a YOLO dataset yaml (default: the synthetic parts, made by `make data` when missing).
RETRAIN_DIR ?= runs/retrain
DATA ?= $(RETRAIN_DIR)/data/data.yaml
EPOCHS ?= 12
IMGSZ ?= 192
SEED ?= 0
TRAIN_CONFIG ?= configs/train-default.yaml
SYNTH_IMAGES ?= 600
REGISTRY ?= runs/registry
TARGET_ESCAPE ?= 0.02
ESCAPE_TOL ?= 0.0
OVERKILL_TOL ?= 0.01
# HEAD: which head a YOLO26 model ships (auto = NMS-free, nms = one-to-many + NMS; docs/accuracy.md).
HEAD ?= auto
# TTA: views the shipped bundle judges each frame as (none; hflip, hvflip = 2, 4 mirror images; hvflip-ms =
# those 4 at 3 scales, 12 inferences per frame; docs/accuracy.md "Test-time augmentation"); evaluate and
# export both use it, and export calibrates the thresholds with it on.
TTA ?= none
# BACKGROUND: the share of the training images that are OK crops (empty labels, ultralytics' background
# images) cut from the train split's defect images, e.g. 0.2 (`defectgate train --background`;
# docs/accuracy.md "OK parts in training"). Empty = off: the train split as it is.
BACKGROUND ?=
# PART_SCORE: set (e.g. PART_SCORE=1) to ship a bundle that decides each part by a part score fitted on
# the calibration half (the best score of each class, the runner-up, box count and size; `defectgate
# export --part-score`, docs/accuracy.md "A part score instead of any box") instead of any box above its
# class threshold; evaluate reports both. Empty = any box.
PART_SCORE ?=

# Dataset increments exported by the QA app (make qa) are merged into DATA before training, so
# reviewed rejects and missed defects flow back into the model; the merged set is what is trained,
# evaluated and gated. QA_EXPORTS= (empty) trains on DATA alone.
QA_EXPORTS ?= $(wildcard $(DEMO_DIR)/qa-exports/qa-v*)
TRAIN_DATA = $(if $(strip $(QA_EXPORTS)),$(RETRAIN_DIR)/merged/data.yaml,$(DATA))
# The val split in two disjoint, stratified halves (`defectgate data halves`): thresholds are calibrated
# on calib.yaml, the reported rates and the promotion gate come from gate.yaml, parts the thresholds
# were not fitted on (docs/accuracy.md, "How the splits are made").
HALVES = $(RETRAIN_DIR)/halves

data: setup
	@test -f $(DATA) || $(DG) data synth --out $(patsubst %/,%,$(dir $(DATA))) --images $(SYNTH_IMAGES) --seed $(SEED)
	$(DG) data validate $(DATA)
	$(if $(strip $(QA_EXPORTS)),$(DG) data merge $(patsubst %/,%,$(dir $(DATA))) $(QA_EXPORTS) --out $(RETRAIN_DIR)/merged --overwrite && $(DG) data validate $(TRAIN_DATA),@echo "no QA exports to merge")
	$(DG) data halves $(TRAIN_DATA) --split val --out $(HALVES) --seed $(SEED)

train: setup
	$(DG) train --config $(TRAIN_CONFIG) --data $(TRAIN_DATA) --epochs $(EPOCHS) --imgsz $(IMGSZ) --seed $(SEED) --out $(RETRAIN_DIR)/train \
		$(if $(strip $(BACKGROUND)),--background $(BACKGROUND))

evaluate: setup
	$(DG) evaluate --model $(RETRAIN_DIR)/train/weights/best.pt --data $(HALVES)/gate.yaml --split val \
		--calib-data $(HALVES)/calib.yaml --target-escape $(TARGET_ESCAPE) \
		--head $(HEAD) --tta $(TTA) --json $(RETRAIN_DIR)/eval-pt.json --plots $(RETRAIN_DIR)/plots \
		$(if $(strip $(PART_SCORE)),--part-score)

export: setup
	$(DG) export --weights $(RETRAIN_DIR)/train/weights/best.pt --data $(HALVES)/calib.yaml --out $(RETRAIN_DIR)/bundle --target-escape $(TARGET_ESCAPE) --head $(HEAD) --tta $(TTA) \
		$(if $(strip $(PART_SCORE)),--part-score)

promote: setup
	$(DG) promote $(RETRAIN_DIR)/bundle --registry $(REGISTRY) --data $(HALVES)/gate.yaml --split val \
		--escape-tolerance $(ESCAPE_TOL) --overkill-tolerance $(OVERKILL_TOL)
	$(DG) promote --registry $(REGISTRY) --status

retrain: data train evaluate export promote

# TensorRT engine for the GPU this runs on (a Jetson, or any NVIDIA GPU with TensorRT 10; needs the
# [gpu] extra, or JetPack's TensorRT via deploy/jetson/setup.sh). Engines are tied to GPU and TensorRT
# version, so build on the target. Default bundle: the registry's current model, else the demo's.
ENGINE_BUNDLE ?= $(if $(wildcard $(REGISTRY)/current/model.json),$(REGISTRY)/current,$(DEMO_DIR)/bundle)
PRECISION ?= fp16
CALIB ?= $(DEMO_DIR)/data/images/train
engine: setup
	$(DG) engine build --bundle $(ENGINE_BUNDLE) --precision $(PRECISION) $(if $(filter int8,$(PRECISION)),--calib $(CALIB),)

clean:
	rm -rf runs .pytest_cache
