# Set-up and the two commands of the README's first screen: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test quick lint bench clean

install: $(STAMP)

# torch first and pinned: the local CPU wheel. An unpinned torch pulls gigabytes of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# The whole workflow in miniature on the embedded default (SMAX, map 3m, a short budget):
# a dataset, OVMSE and its main baseline over 2 seeds (in parallel), the run list, a report.
demo: install
	$(BIN)/bench maps
	$(BIN)/bench collect --map 3m --behaviour heuristic --episodes 200 --seed 0
	$(BIN)/bench run ovmse ft-qmix --map 3m --dataset heuristic --seeds 2 --steps 20000 \
		--pretrain-steps 1000
	$(BIN)/bench runs list
	$(BIN)/bench report

# The whole suite (CI runs this), after the linter. One pytest worker per core (pytest-xdist):
# most of the suite's time is single-threaded tracing and simulation in many short processes,
# so on 2 cores it takes 0.68x the wall time of one worker (984 s against 1,438 s, side by
# side with the same experiment beside them).
test: install lint
	$(BIN)/python -m pytest -q -n auto

# The fast specification tests only (no multi-minute kill/resume or learning runs): the loop
# while editing. `make test` before committing.
quick: install lint
	$(BIN)/python -m pytest -q -n auto -m "not slow"

lint: install
	$(BIN)/ruff check o2omarl tests benchmarks

bench: install
	$(BIN)/bench perf --map 2s3z

clean:
	rm -rf $(VENV) .pytest_cache
