# Two entry points (README): `make reproduce` runs the whole pipeline, `make test` the tests.
# Both create .venv on first use. torch is pinned here, not in pyproject.toml, because a bare
# `torch` requirement pulls a multi-GB CUDA build; pass TORCH_INDEX to pick a wheel index.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# the suite runs on this many processes (pytest-xdist; the end-to-end tests are single-threaded subprocesses),
# each test file on one of them: a module's built workspace is made once, and the Snakemake dry-runs in the
# repository itself (tests/test_orchestrators.py) never run side by side
TEST_WORKERS ?= 2

.PHONY: install reproduce snakemake pipeline cluster-deps test test-fast bench clean-venv

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

reproduce: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# after editing the stage table (src/ltm/pipeline.py) or a stage's imports: regenerate dvc.yaml
pipeline: install
	$(BIN)/ltm pipeline --write

snakemake: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 2

# Debian's SLURM and munge for the one-node cluster of tests/test_cluster_slurm.py: a no-op when present,
# and without root or apt-get it says so (those tests then skip)
cluster-deps:
	workflow/slurm/install.sh

test: install cluster-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# every bench runs to its end even when an earlier one fails; the failures are named at the end
bench: install
	@failed=""; for b in bench/bench_*.py; do echo "== $$b"; \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || failed="$$failed $$b"; done; \
	  if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

clean-venv:
	rm -rf $(VENV)
