# Two entry points: `make demo` and `make test`. Each creates .venv and installs the project
# (editable, with dev extras) when pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MODEL_DOCTOR_PROGRESS=1 $(PY) -m model_doctor demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/bench_diagnose.py

clean:
	rm -rf runs build *.egg-info src/*.egg-info
