# The two commands of the README: `make demo` (install, run the main job, print the leaderboard)
# and `make test` (install, run the test suite). Everything else here serves those two.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/wsolbench-has
EXAMPLE_STAMP := $(VENV)/.example-installed
DEMO_DIR ?= work_dirs/demo
export HF_HUB_OFFLINE = 1

# The wheels tests/test_wheelhouse.py installs offline: what a typical GPU box (its own torch,
# torchvision, timm, numpy, scipy, OpenCV, numba) lacks, for this Python; downloaded with the rest
# of the install, so the tests themselves need no network.
TEST_WHEELHOUSE := build/wheelhouse-test
GPU_BOX_HAS := timm numpy scipy opencv-python numba
PY ?= 3.12

.PHONY: install demo test lint bench reports clean wheelhouse

install: $(STAMP) $(EXAMPLE_STAMP)

# constraints.txt pins every package (torch to its CPU build), so no pip call can pull CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The worked plugin example (docs/writing-a-method.md), installed as a user installs a plugin: the
# suite runs `wsolbench check has` and a tiny training run on it (tests/test_example_plugin.py).
$(EXAMPLE_STAMP): $(STAMP) $(EXAMPLE)/pyproject.toml
	$(BIN)/python -m pip install -q -c constraints.txt -e $(EXAMPLE)
	touch $(EXAMPLE_STAMP)

# The demo's quick schedule: the synthetic presets over half their epochs, and synthclip-quick-v1
# for TeD-Loc's text targets, so that it fits 9 minutes on 2 cores (README: the demo). Its rows say
# so: a table names a run by what its -o overrides changed. TeD-Loc learns from the demo's own cam
# run (teacher=run:), so no network is trained twice. synthclip-quick and center run beside cam,
# one torch thread each (a background job ignores Ctrl-C: the trap stops it with the rest);
# --resume keeps a finished run and continues an interrupted one.
QUICK := -o train.max_epochs=14
demo: install
	{ $(BIN)/wsolbench prepare synthclip-quick && \
	  $(BIN)/wsolbench run --method center --dataset synthetic --threads 1 \
	    --work-dir $(DEMO_DIR)/center --resume; } & side=$$!; \
	trap 'pkill -P $$side; kill $$side; exit 130' INT TERM; \
	$(BIN)/wsolbench run --method cam --dataset synthetic $(QUICK) --threads 1 \
	    --work-dir $(DEMO_DIR)/cam --resume; cam=$$?; wait $$side && exit $$cam
	$(BIN)/wsolbench run --method tedloc --dataset synthetic $(QUICK) \
	    -o teacher=run:$(DEMO_DIR)/cam -o text.checkpoint=synthclip-quick-v1 \
	    --work-dir $(DEMO_DIR)/tedloc --resume
	$(BIN)/wsolbench compare $(DEMO_DIR)

$(TEST_WHEELHOUSE)/requirements.txt: $(STAMP) benchmarks/wheelhouse.py
	$(BIN)/python benchmarks/wheelhouse.py --have $(GPU_BOX_HAS) --out $(TEST_WHEELHOUSE) \
	    --python-version $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

test: install $(TEST_WHEELHOUSE)/requirements.txt
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q $(EXAMPLE)/tests

lint: install
	$(BIN)/ruff check wsolbench methods tests benchmarks examples

bench: install
	$(BIN)/python benchmarks/bench_evaluator.py --reference-sample 100

# Regenerate reports/ (see reports/README.md): runs (5 seeds, resumed), leaderboards, cost, figures.
reports: install
	$(BIN)/python reports/make_reports.py

# An offline install for a GPU machine that has its own torch (README: air-gapped clusters): every
# wheel wsolbench needs beyond torch and torchvision and what HAVE names (the machine's own
# packages, e.g. HAVE="timm numpy scipy opencv-python-headless numba"), for Python $(PY), in
# wheelhouse-py$(PY)/.
HAVE ?=
wheelhouse: install
	$(BIN)/python benchmarks/wheelhouse.py --python-version $(PY) --out wheelhouse-py$(PY) \
		$(if $(HAVE),--have $(HAVE))

clean:
	rm -rf $(VENV) work_dirs build
