# `make demo` and `make test` do their own set-up: a virtualenv in .venv with torch first,
# then lrsearch and its test tools. Re-running them reuses the environment.
#
# torch: TORCH_SPEC is installed before anything else, so lrsearch's own `torch>=2.2` is already
# met and pip pulls no other build. Elsewhere, pick the build you want, e.g.
#   make test TORCH_SPEC=torch TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Everything after it installs under a constraint pinning that very build (TORCH_PIN), so a
# package wanting another torch (lightning, transformers, ...) fails the install instead of
# replacing a CPU build with a CUDA one and its nvidia-* wheels.

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
DEMO_ARGS   ?=

BIN       := $(VENV)/bin
STAMP     := $(VENV)/.lrsearch-installed
PIP       := $(BIN)/python -m pip
TORCH_PIN := $(VENV)/torch-constraint.txt

.PHONY: help setup demo test lint typecheck docs pytest browser bench-range-test bench-unseen clean

help:
	@echo "make demo   set up .venv if needed, then run the default study: lrsearch run --study digits"
	@echo "make test   set up .venv if needed, then lint, type-check, build the docs and run the test suite"
	@echo "make setup  only set up .venv (torch, lrsearch in editable mode, test and docs tools)"
	@echo "make docs   build the docs site strictly into build/docs (a dead link or stale API name fails)"
	@echo "make bench-range-test  the range-test suite and its held-out table (an hour once, cached; by hand, not in CI)"
	@echo "make bench-unseen  whole studies on 14 unseen problems against a grid oracle (half an hour; by hand, not in CI)"
	@echo "make clean  remove .venv and caches"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lrsearch needs Python >= 3.11; got " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/python -c 'from importlib.metadata import version; print("torch==" + version("torch"))' > $(TORCH_PIN)
	$(PIP) install --quiet -c $(TORCH_PIN) -e ".[test,docs]"
	@touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/lrsearch run --study digits $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The docs site: --strict turns every warning (a dead link or anchor, a page missing from the
# nav, an API name mkdocstrings cannot find) into a failure. NO_MKDOCS_2_WARNING silences
# mkdocs-material's banner about MkDocs 2.0, which is no warning about these docs.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/docs

# The browser tests drive a real Chromium through Playwright, which downloads no browser here:
# on Debian/Ubuntu `make test` installs the distribution's chromium package (root or sudo);
# elsewhere point CHROMIUM at a Chromium or Chrome binary: make test CHROMIUM=/path/to/chrome
CHROMIUM ?=
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

browser:
	@if [ -n "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "the browser tests need Chromium: install it, or make test CHROMIUM=/path/to/chrome" >&2; \
	  exit 1; \
	fi; \
	echo "installing Debian's chromium for the browser tests"; \
	$(SUDO) apt-get install -y -q chromium >/dev/null \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }

pytest: $(STAMP) browser
	LRSEARCH_CHROMIUM="$(or $(CHROMIUM),$$(command -v chromium))" $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck docs pytest

BENCH_STAMP := $(VENV)/.lrsearch-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -c $(TORCH_PIN) -e ".[test,docs,bench]"
	@touch $@

bench-range-test: $(BENCH_STAMP)
	$(BIN)/python benchmarks/range_test/heldout.py $(BENCH_ARGS)

# Needs nothing beyond lrsearch itself (kaleido, if installed, adds a PNG of the figure).
bench-unseen: $(STAMP)
	$(BIN)/python benchmarks/unseen/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
