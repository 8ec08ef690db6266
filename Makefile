# Two commands on a fresh machine: `make demo` and `make test`. Both install into .venv first
# (once: the stamp file records a finished install; a second run installs nothing).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip's config on these machines names extra index folders that may not exist: hide that noise.
QUIET  := { grep -v "^WARNING: Location" || true; }
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
MONTH  ?= 2024-07
PREVIOUS_MONTH ?= 2024-06
CONFIG ?= configs/demo.yaml

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= INFO
export PYTHONUNBUFFERED := 1

.PHONY: install demo test clean stac-server-env browser
install: $(STAMP)

$(STAMP): requirements.lock constraints.txt pyproject.toml
	@echo "installing pinned environment into $(VENV) (first time only, ~2 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) torch==2.13.0 2>&1 | $(QUIET)
	@$(PIP) -r requirements.lock 2>&1 | $(QUIET)
	@$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . 2>&1 | $(QUIET)
	@$(BIN)/python -c "import nyceo, nyceo.model, torch, terratorch, prefect, zarr, rasterio; print('environment ok: torch', torch.__version__)"
	@touch $(STAMP)

# A real STAC API for the catalog tests (stac-fastapi-geoparquet 0.0.7 and its pins), kept in its
# own virtualenv; DuckDB extensions come from wheels into $$HOME/.duckdb (no download at run time).
STAC_VENV  := .venv-stac
STAC_STAMP := $(STAC_VENV)/.installed
stac-server-env: $(STAC_STAMP)

$(STAC_STAMP): Makefile
	@echo "installing the test STAC server into $(STAC_VENV) (first time only)"
	@test -x $(STAC_VENV)/bin/python || $(PYTHON) -m venv $(STAC_VENV)
	@$(STAC_VENV)/bin/pip install --disable-pip-version-check -q "stac-fastapi-geoparquet==0.0.7" \
	  "stac-fastapi-api<6" "stac-fastapi-types<6" "stac-fastapi-extensions<6" "fastapi<0.145" \
	  "starlette<0.51" "rustac==0.9.17" uvicorn "duckdb-extensions==1.5.5" \
	  "duckdb-extension-spatial==1.5.5" "duckdb-extension-icu==1.5.5" \
	  "duckdb-extension-parquet==1.5.5" 2>&1 | $(QUIET)
	@$(STAC_VENV)/bin/python -c "from duckdb_extensions import import_extension; [import_extension(e) for e in ('spatial', 'icu', 'parquet')]"
	@touch $(STAC_STAMP)

# Two consecutive months, so the change stage has a pair (the first month's change skips: no predecessor).
demo: install
	$(BIN)/nyceo run --month $(PREVIOUS_MONTH) -c $(CONFIG) --brief
	$(BIN)/nyceo run --month $(MONTH) -c $(CONFIG)
	$(BIN)/nyceo status -c $(CONFIG)

# The report test opens the HTML in a real headless browser: Debian's chromium package.
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (report test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install stac-server-env browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .prefect
