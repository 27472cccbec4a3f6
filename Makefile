# Two entry points: `make demo` and `make test`. Each creates .venv and installs the project
# (editable, with dev extras) when pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench evidence clean

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

# The evidence studies at full budget (each under 2 h on one core; about 5 h together on 2 CPU cores; cached and resumable under runs/bench).
evidence: $(STAMP)
	$(PY) benchmarks/bench_e1_channel.py --out docs/results/e1_channel.md
	$(PY) benchmarks/bench_e3_auroc.py --out docs/results/e3_auroc.md
	$(PY) benchmarks/bench_e2_space.py --out docs/results/e2_space.md
	$(PY) benchmarks/bench_ablations.py --out docs/results/ablations.md
	$(PY) benchmarks/bench_e4_shortcut.py --out docs/results/e4_shortcut.md
	$(PY) benchmarks/bench_e4_shortcut.py --study scratch --out docs/results/e4_scratch.md
	$(PY) benchmarks/bench_e4_newdecoys.py --out docs/results/e4_newdecoys.md
	$(PY) benchmarks/bench_e5_inbox.py --out docs/results/e5_inbox.md
	$(PY) benchmarks/reliance_vs_truth.py docs/results/e5_inbox.json --out docs/results/reliance_vs_truth.md
	$(PY) benchmarks/bench_counterfactual.py --out docs/results/counterfactual_cost.md
	$(PY) benchmarks/collect_performance.py --out docs/results/performance.md
	$(PY) -m model_doctor reproduce cpu-small
	cp runs/reproduce/cpu-small/table.md docs/results/reproduce_cpu_small.md  # it carries its own command, machine, date

clean:
	rm -rf runs build *.egg-info src/*.egg-info
