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

# --resume: a finished run is kept as it is, an interrupted one continues. TeD-Loc's synthetic preset
# needs synthclip-v1 and its cam teacher synthcam-v1 (cached; one torch thread each). The demo's cam
# row is run with the teacher's settings (CPU, one thread, seed 0), side by side with synthclip, and
# then taken as the teacher (prepare synthcam --from): no network is trained twice.
demo: install
	$(BIN)/wsolbench prepare synthclip & clip=$$!; \
	$(BIN)/wsolbench run --method cam --dataset synthetic --device cpu --threads 1 \
	    --work-dir $(DEMO_DIR)/cam --resume; cam=$$?; wait $$clip && exit $$cam
	$(BIN)/wsolbench prepare synthcam --from $(DEMO_DIR)/cam
	$(BIN)/wsolbench run --method center --dataset synthetic --work-dir $(DEMO_DIR)/center --resume
	$(BIN)/wsolbench run --method tedloc --dataset synthetic --work-dir $(DEMO_DIR)/tedloc --resume
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
# wheel wsolbench needs beyond torch and torchvision, for Python $(PY), in wheelhouse-py$(PY)/.
wheelhouse: install
	$(BIN)/python benchmarks/wheelhouse.py --python-version $(PY) --out wheelhouse-py$(PY)

clean:
	rm -rf $(VENV) work_dirs build
