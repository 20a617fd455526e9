# Two commands on a fresh machine: `make demo` (set up, then the main job) and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test test-all benchmark
setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PY) experiments/demo.py

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m "slow or not slow"

benchmark: setup
	$(PY) experiments/benchmark_env.py
