# Two entry points: `make demo` and `make test`. Each creates .venv and installs the project
# (editable, with dev extras) when pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MODEL_DOCTOR_PROGRESS=1 $(PY) -m model_doctor demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check src benchmarks tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy src

test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadgroup -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks.bench_diagnose

clean:
	rm -rf runs build *.egg-info src/*.egg-info
