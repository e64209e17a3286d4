# Everything a fresh machine needs. `make demo` opens the demo notebook, `make test` runs every test.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: setup system-deps demo test test-fast lint docs screenshots bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@# an editable install leaves out data files: the server extension's switch (a wheel installs it itself)
	$(PY) -m inv_widgets_server
	touch $@

setup: $(VENV)/.installed

# Debian's Chromium drives the browser tests (Playwright's own browser download does not work offline);
# Node.js checks that the widgets' ES modules parse and run (tests/widgets/test_front_end.py);
# Debian's PostgreSQL server programs run the label store's tests against a throwaway server (tests/pg_server.py
# starts and stops it; nothing is left running).
system-deps:
	@MISSING=""; \
	command -v chromium >/dev/null 2>&1 || MISSING="$$MISSING chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || MISSING="$$MISSING postgresql"; \
	command -v node >/dev/null 2>&1 || MISSING="$$MISSING nodejs"; \
	if [ -n "$$MISSING" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$MISSING; \
	  else echo "install$$MISSING for the browser, front-end and PostgreSQL tests (or set INV_CHROMIUM / INV_PG_BINDIR)"; fi; \
	fi

demo: setup
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 $(ROOT_FLAG) notebooks/01_explore.ipynb

test: setup system-deps
	$(PY) -m pytest

# The unit tier: engine, labels and widget-state tests without the browser, PostgreSQL or anything slow (about a
# minute on a 2-core machine); `make test` stays the whole suite.
FAST_TESTS := tests/engine tests/labels tests/widgets/test_explorer_state.py tests/widgets/test_pacing.py tests/test_layout.py

test-fast: setup
	$(PY) -m pytest -q -m "not browser and not slow and not postgres" $(FAST_TESTS)

# ruff (its settings are in pyproject.toml): the lint rules, then the formatting, of the package and the tests.
lint: setup
	$(VENV)/bin/ruff check inv_widgets inv_widgets_server tests
	$(VENV)/bin/ruff format --check inv_widgets inv_widgets_server tests

# The documentation site in site/ (open site/index.html), from docs/ and the docstrings, with warnings as errors
# and no network; then a check that no built page loads a script or a stylesheet from another site.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@if grep -rlE '<(script|link)[^>]*(src|href)="(https?:)?//' site --include='*.html'; then \
	  echo "error: the pages above load a script or a stylesheet from the network; the site must work offline"; \
	  exit 1; fi

# Re-take the README's screenshots (docs/screenshots) with the browser tests; commit the result.
screenshots: setup system-deps
	INV_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -m browser

# The rows of issue 24 print ratios against baselines measured in the same run; the Explorer's against the code of
# BENCH_BASELINE (before that issue), alternating. docs/benchmarks.md has the figures.
BENCH_BASELINE ?= 16db34a

bench: setup
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_explain.py
	$(PY) benchmarks/bench_widget.py --baseline $(BENCH_BASELINE)
	$(PY) benchmarks/bench_hops.py
	$(PY) benchmarks/bench_labels.py --pairs
	$(PY) benchmarks/bench_labels.py --aggregation-only --all-distinct --labels 50000 --repeat 1
	$(PY) benchmarks/bench_batch.py
	$(PY) benchmarks/bench_batch.py --memory
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_global.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache site .cache
