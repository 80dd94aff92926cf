# trading-mcp — the two commands a user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The MCP Inspector CLI, an independent MCP client the tests drive (pinned; 0.15.0 is the last for Node 20).
INSPECTOR_VERSION := 0.15.0
INSPECTOR := .tools/inspector/node_modules/.bin/mcp-inspector

.PHONY: help run test test-fast typecheck lint fmt bench clean promtool

help:            ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

run: $(STAMP)    ## create .venv, install, start the whole system (embedded NATS, gateway, execsim, MCP server)
	$(BIN)/trading-mcp up

$(INSPECTOR):
	@command -v npm >/dev/null || { echo "npm is required for the MCP Inspector tests (install Node.js 20+)"; exit 1; }
	npm install --prefix .tools/inspector --no-audit --no-fund @modelcontextprotocol/inspector@$(INSPECTOR_VERSION)

# promtool checks the Prometheus config and unit-tests the alert rules (tests/ops fail, never skip, without it).
# No PyPI wheel ships it and only the package registries are reachable, so: Debian's prometheus package when
# root with apt-get, else stop at once with the command to run.
PROMTOOL_INSTALL := apt-get install -y --no-install-recommends prometheus

promtool:        ## install promtool (Debian's prometheus package) if it is missing
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "promtool is missing: installing Debian's prometheus package"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive $(PROMTOOL_INSTALL); \
	  else \
	    echo "make test needs promtool. Install it, then run make test again:"; \
	    echo "  Debian/Ubuntu: sudo apt-get update && sudo $(PROMTOOL_INSTALL)"; \
	    echo "  elsewhere: promtool from a Prometheus release (prometheus.io/download), on PATH"; \
	    exit 1; \
	  fi; }
	@promtool --version 2>&1 | head -1

test: promtool $(STAMP) $(INSPECTOR)  ## install promtool, the dev extras and the MCP Inspector; check layers, lint, type-check the core, run every test
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## the inner loop: check layers, lint, type-check the core, run the tests not marked slow (no processes)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow"

typecheck: $(STAMP)  ## mypy (strict) over the pure core: schemas/ strategies/ tools/ execsim/engine/
	$(BIN)/mypy

lint: $(STAMP)   ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)    ## ruff format
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## run the benchmarks under bench/ (prints numbers, asserts nothing)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:           ## remove the virtualenv and caches
	rm -rf $(VENV) .tools .pytest_cache .ruff_cache *.egg-info
