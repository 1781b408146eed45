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

.PHONY: demo demo-train test install data clean test-jetpack test-jetpack-all jetpack-wheel plant-deps

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

# The servers the plant tests start (Debian, as root): mosquitto (+ clients) and PostgreSQL, installed only
# when missing; the packaged mosquitto service is disabled (the tests start their own brokers on free ports).
plant-deps:
	@missing=""; for p in mosquitto mosquitto-clients postgresql; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  systemctl disable --now mosquitto 2>/dev/null || true; \
	fi

# The runtime on a JetPack's Python with that JetPack's constraints (jetson/constraints-*.txt), without
# TensorFlow: `make test-jetpack JP=5` (Python 3.8), `JP=6` (6.0: 3.10, numpy 1.x, CUDA 12.2),
# `JP=6.1` (6.1/6.2: CUDA 12.6), `JP=7` (3.12, CUDA 13). Python comes from pyenv (PYENV_ROOT); the
# venv is .venv-jp$(JP) (gitignored). Tests that need Keras/TensorFlow or a GPU skip with the reason.
JP ?= 5
JP_PY_5 = 3.8
JP_PY_6 = 3.10
JP_PY_6.1 = 3.10
JP_PY_7 = 3.12
JP_CONSTRAINTS_5 = jetson/constraints-jp5.txt
JP_CONSTRAINTS_6 = jetson/constraints-jp6.0.txt
JP_CONSTRAINTS_6.1 = jetson/constraints-jp6.1.txt
JP_CONSTRAINTS_7 = jetson/constraints-jp7.txt
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
JP_VENV ?= .venv-jp$(JP)
JP_TESTS ?= tests/edge tests/convert/test_tensorrt_branches.py tests/convert/test_tensorrt_runtime_only.py \
	tests/test_doctor.py

# The package as a wheel, built once (setup.cfg changes rebuild it): the JetPack venvs install it with
# their constraints, so parallel runs never build in the source tree at the same time.
JP_WHEELS = build/jetpack-wheel
$(JP_WHEELS)/.stamp: setup.cfg pyproject.toml
	rm -rf $(JP_WHEELS) && mkdir -p $(JP_WHEELS)
	py=$$(ls -d $(PYENV_ROOT)/versions/3.12.* 2>/dev/null | sort -V | tail -1); \
	  $${py:-python3}/bin/python -m pip wheel -q --disable-pip-version-check --no-deps -w $(JP_WHEELS) .
	touch $@

jetpack-wheel: $(JP_WHEELS)/.stamp

test-jetpack: $(JP_WHEELS)/.stamp
	@test -n "$(JP_PY_$(JP))" || { echo "JP must be 5, 6, 6.1 or 7 (got $(JP))" >&2; exit 2; }
	@py=$$(ls -d $(PYENV_ROOT)/versions/$(JP_PY_$(JP)).* 2>/dev/null | sort -V | tail -1); \
	  test -x "$$py/bin/python" || { echo "no Python $(JP_PY_$(JP)) under $(PYENV_ROOT)/versions (pyenv install $(JP_PY_$(JP)))" >&2; exit 2; }; \
	  test -x $(JP_VENV)/bin/python || $$py/bin/python -m venv $(JP_VENV)
	$(JP_VENV)/bin/python -m pip install -q --disable-pip-version-check -c $(JP_CONSTRAINTS_$(JP)) \
	  "$$(ls $(JP_WHEELS)/steel_edge-*.whl)[dev]"
	$(JP_VENV)/bin/python -c "import sys, numpy; print('JetPack $(JP) matrix: Python', sys.version.split()[0], 'numpy', numpy.__version__)"
	@! $(JP_VENV)/bin/python -c "import tensorflow" 2>/dev/null || { echo "TensorFlow is in $(JP_VENV): the runtime install must not pull it in" >&2; exit 1; }
	PYTHONPATH=$(CURDIR) $(JP_VENV)/bin/python -m pytest -q -p no:cacheprovider $(JP_TESTS)

# JP 5, 6 and 7 at once (installs are mostly downloads); each log printed after, exit 1 if one failed.
test-jetpack-all: $(JP_WHEELS)/.stamp
	@mkdir -p runs; fail=0; pids=""; \
	for jp in 5 6 7; do $(MAKE) --no-print-directory test-jetpack JP=$$jp > runs/test-jetpack-$$jp.log 2>&1 & pids="$$pids $$!"; done; \
	for p in $$pids; do wait $$p || fail=1; done; \
	for jp in 5 6 7; do echo "=== make test-jetpack JP=$$jp"; grep -v "is ignored: it is neither" runs/test-jetpack-$$jp.log; done; \
	exit $$fail
