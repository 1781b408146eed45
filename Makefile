# Two commands set up a fresh machine: `make demo` (the committed model converted, benched and run
# on a line recording, about 1-2 minutes on 2 cores) and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-stamp
SHARED_NEU = ../shared/data/NEU-CLS
# `make demo`: models/neu-compact -> FP32/FP16/INT8 Q/DQ/CPU int8 -> edge-bench -> edge-capture on a line
# recording -> runs/demo/report.{md,html} (scripts/demo.py; test-split images from data/neu-sample,
# calibration/gate images from data/neu-calib). Line-capacity example: LINE_SPEED m/s, STRIP_WIDTH mm, MM_PER_PX.
OUT    ?= runs/demo
LINE_SPEED  ?= 10
STRIP_WIDTH ?= 1500
MM_PER_PX   ?= 0.5
# `make demo-train`: the training demo (edge-train -> edge-convert -> edge-bench) on the full set when
# data/NEU-CLS is there (edge-train's own 40 epochs: about 27-31 minutes on 2 CPU cores), else a smoke run
# on the 60-image sample (15 epochs, a few minutes; not a measurement).
DATA   ?= $(if $(wildcard data/NEU-CLS/Cr_1.bmp),data/NEU-CLS,data/neu-sample)
TRAIN_OUT ?= runs/demo-train
# The sample gets 15 epochs; the full set gets edge-train's own default (empty: no --epochs flag).
DEMO_EPOCHS ?= $(if $(filter data/neu-sample,$(DATA)),15,)
DEMO_CALIB ?= $(if $(filter data/neu-sample,$(DATA)),40,500)

.PHONY: demo demo-train test install data clean

$(STAMP): setup.cfg pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

# Link the full NEU-CLS set into data/ when the shared copy is beside this checkout.
data:
	@if [ ! -e data/NEU-CLS ] && [ -d $(SHARED_NEU) ]; then ln -s ../$(SHARED_NEU) data/NEU-CLS && echo "linked data/NEU-CLS -> $(SHARED_NEU)"; fi

demo: $(STAMP)
	$(PY) scripts/demo.py --out $(OUT) --line-speed $(LINE_SPEED) --strip-width $(STRIP_WIDTH) --mm-per-px $(MM_PER_PX)

demo-train: $(STAMP) data
	rm -rf $(TRAIN_OUT)
	$(VENV)/bin/edge-train --data $(DATA) --model compact $(if $(DEMO_EPOCHS),--epochs $(DEMO_EPOCHS),) --out $(TRAIN_OUT)/train
	$(VENV)/bin/edge-convert $(TRAIN_OUT)/train/model.keras --fp16 --int8 --calib-data $(DATA) \
		--split-file $(TRAIN_OUT)/train/split.csv --calib-size $(DEMO_CALIB) $(if $(filter data/neu-sample,$(DATA)),--max-drift 5 --min-agreement 95,--max-drift 0.5) -o $(TRAIN_OUT)/convert
	$(VENV)/bin/edge-bench $(TRAIN_OUT)/convert/model.onnx $(TRAIN_OUT)/convert/model.fp16.onnx $(TRAIN_OUT)/convert/model.int8.onnx \
		--reference $(TRAIN_OUT)/train/model.keras --data $(DATA) --split-file $(TRAIN_OUT)/train/split.csv \
		--batch 1,8 --iterations 50 --md $(TRAIN_OUT)/bench.md --json $(TRAIN_OUT)/bench.json --html $(TRAIN_OUT)/bench.html
	@cat $(TRAIN_OUT)/bench.md

test: $(STAMP) data
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
