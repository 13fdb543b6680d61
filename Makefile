# Every target bootstraps its own virtual environment in .venv; the install step is
# re-run only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-long lint bench clean fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xpevents demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools examples
	$(BIN)/ruff format --check src tests bench tools examples
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest -q -m "not long"

test-long: $(STAMP)
	$(BIN)/pytest -q -m long

# tests/fuzz with many more hypothesis examples, then atheris (coverage-guided, installed
# on demand with pip: it has wheels for CPython 3.11 on Linux x86-64).
FUZZ_EXAMPLES ?= 20000
FUZZ_RUNS ?= 500000
fuzz: $(STAMP)
	XPEVENTS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/fuzz
	$(BIN)/python -m pip install --quiet atheris
	$(BIN)/python tests/fuzz/atheris_spool_urls.py -runs=$(FUZZ_RUNS) -artifact_prefix=$(VENV)/

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache
