# The README's two commands: `make bench` and `make test`. Both build the environments if they are
# missing or out of date: .venv (core: numpy 2, torch, TensorFlow), .venv-mxnet (MXNet 1.9.1 on
# numpy 1.26) and .venv-corpus (transformers & co., layered on core, for the test corpus);
# frameworks/environments.py says what each holds and why.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ENVIRONMENTS := $(PYTHON) frameworks/environments.py
STAMPS := $(VENV)/.installed $(VENV)-mxnet/.installed $(VENV)-corpus/.installed
RESULTS ?= results

.PHONY: setup test bench lint support-table lock clean gpu gpu-dry-run

setup: $(STAMPS)

$(STAMPS): pyproject.toml requirements/core.lock.txt requirements/mxnet.lock.txt requirements/corpus.lock.txt \
		frameworks/environments.py
	$(ENVIRONMENTS) setup

# pytest in each environment on its frameworks; every framework must be exercised: a run where one
# was skipped entirely fails.
test: $(STAMPS)
	SERBENCH_REQUIRE_FRAMEWORKS=all $(ENVIRONMENTS) test $(PYTEST_ARGS)

# --pause-page-reporting: on a VM whose balloon hands freed memory back to the host (re-touching
# it then runs 20x slower), pause that for the run, as root; a no-op elsewhere (see bench/timing/machine.py).
bench: $(STAMPS)
	$(VENV)/bin/serbench run --quick --pause-page-reporting $(BENCH_ARGS)

# The prepared GPU run (bench/gpu, issue 32). On a GPU machine, in the copied tree, with its own python3 (3.12, no
# virtualenv): installs the carried .whl/ wheels it lacks, measures within GPU_BUDGET seconds (default 480), and
# writes results/reference-gpu-<gpu>-<date>/. Without a CUDA device it refuses in one line (exit 2).
# `make gpu-dry-run` (or `make gpu DRY_RUN=1`) plans it anywhere: fetches and checks the wheels, fails over budget.
GPU_BUDGET ?= 480
GPU_ARGS ?=
gpu: $(if $(filter 1,$(DRY_RUN)),$(STAMPS))
ifeq ($(DRY_RUN),1)
	$(PY) -m bench.gpu --dry-run --budget-s $(GPU_BUDGET) $(GPU_ARGS)
else
	PYTHONPATH=$(CURDIR) $(PYTHON) -m bench.gpu --budget-s $(GPU_BUDGET) $(GPU_ARGS)
endif

gpu-dry-run: $(STAMPS)
	$(PY) -m bench.gpu --dry-run --budget-s $(GPU_BUDGET) $(GPU_ARGS)

lint: $(STAMPS)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

support-table: $(STAMPS)
	$(VENV)/bin/serbench support-table

lock: $(STAMPS)
	$(ENVIRONMENTS) lock

clean:
	rm -rf $(VENV) $(VENV)-mxnet $(VENV)-corpus .pytest_cache .benchmarks
