# The README's two commands: `make bench` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RESULTS ?= results

.PHONY: setup test bench lint support-table lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/lock.txt -e '.[all,dev]'
	touch $@

# Every framework must be exercised: a run where one was skipped entirely fails.
test: $(STAMP)
	SERBENCH_REQUIRE_FRAMEWORKS=numpy,torch,tensorflow,mxnet $(PY) -m pytest $(PYTEST_ARGS)

# --pause-page-reporting: on a VM whose balloon hands freed memory back to the host (re-touching
# it then runs 20x slower), pause that for the run, as root; a no-op elsewhere (see bench/timing/machine.py).
bench: $(STAMP)
	$(VENV)/bin/serbench run --quick --pause-page-reporting $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

support-table: $(STAMP)
	$(VENV)/bin/serbench support-table

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu//' > requirements/lock.txt.new && mv requirements/lock.txt.new requirements/lock.txt

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
