# Two commands set up a fresh machine: `make demo` (the pipeline on the embedded NEU sample,
# or on data/NEU-CLS when it is there) and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-stamp
SHARED_NEU = ../shared/data/NEU-CLS
# The demo runs on the committed 60-image sample (a few minutes); `make demo DATA=data/NEU-CLS`
# runs the same pipeline on the full set (edge-train's own 40 epochs: about 27-31 minutes on 2 CPU cores).
DATA   ?= data/neu-sample
# The sample gets 15 epochs; the full set gets edge-train's own default (empty: no --epochs flag).
DEMO_EPOCHS ?= $(if $(filter data/neu-sample,$(DATA)),15,)
DEMO_CALIB ?= $(if $(filter data/neu-sample,$(DATA)),40,500)
OUT    ?= runs/demo

.PHONY: demo test install data clean

$(STAMP): setup.cfg pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

# Link the full NEU-CLS set into data/ when the shared copy is beside this checkout.
data:
	@if [ ! -e data/NEU-CLS ] && [ -d $(SHARED_NEU) ]; then ln -s ../$(SHARED_NEU) data/NEU-CLS && echo "linked data/NEU-CLS -> $(SHARED_NEU)"; fi

demo: $(STAMP) data
	rm -rf $(OUT)
	$(VENV)/bin/edge-train --data $(DATA) --model compact $(if $(DEMO_EPOCHS),--epochs $(DEMO_EPOCHS),) --out $(OUT)/train
	$(VENV)/bin/edge-convert $(OUT)/train/model.keras --fp16 --int8 --calib-data $(DATA) \
		--split-file $(OUT)/train/split.csv --calib-size $(DEMO_CALIB) $(if $(filter data/neu-sample,$(DATA)),--max-drift 5 --min-agreement 95,--max-drift 0.5) -o $(OUT)/convert
	$(VENV)/bin/edge-bench $(OUT)/convert/model.onnx $(OUT)/convert/model.fp16.onnx $(OUT)/convert/model.int8.onnx \
		--reference $(OUT)/train/model.keras --data $(DATA) --split-file $(OUT)/train/split.csv \
		--batch 1,8 --iterations 50 --md $(OUT)/bench.md --json $(OUT)/bench.json
	@cat $(OUT)/bench.md

test: $(STAMP) data
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
