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

# The benchmarks, then the report (docs/bench/*.png and the generated regions of
# docs/benchmarks.md) drawn from their JSON results. Installs what they need: the `bench`
# extra, and wrk from Debian's packages (as .ci/run installs its services). Without wrk
# (no apt, not root) bench/relay.py refuses to print a figure rather than measure its
# own Python client. One benchmark: make bench BENCH="dispatch"; redraw only:
# $(BIN)/python -m bench report.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "make bench: apt-get install wrk"; \
	    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || echo "make bench: apt-get install wrk failed; bench/relay.py will refuse to measure"; \
	  else \
	    echo "make bench: wrk is missing and apt-get (as root) is unavailable; bench/relay.py will refuse to measure"; \
	  fi; }
	$(BIN)/python -m bench $(BENCH); status=$$?; $(BIN)/python -m bench report; exit $$status

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache
