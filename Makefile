# Two commands on a fresh machine: `make demo` (set up, then the main job) and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test test-all benchmark
setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PY) experiments/demo.py

# Test files run in parallel, one file per worker (a file's module fixtures are built once).
test: setup
	$(PY) -m pytest -n auto --dist loadfile

test-all: setup
	$(PY) -m pytest -n auto --dist loadfile -m "slow or not slow"

benchmark: setup
	$(PY) experiments/benchmark_env.py
