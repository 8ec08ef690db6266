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
CONFIG ?= configs/demo.yaml

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= INFO
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench clean
install: $(STAMP)

$(STAMP): requirements.lock constraints.txt pyproject.toml
	@echo "installing pinned environment into $(VENV) (first time only, ~2 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) torch==2.13.0 2>&1 | $(QUIET)
	@$(PIP) -r requirements.lock 2>&1 | $(QUIET)
	@$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . 2>&1 | $(QUIET)
	@$(BIN)/python -c "import nyceo, nyceo.model, torch, terratorch, prefect, zarr, rasterio; print('environment ok: torch', torch.__version__)"
	@touch $(STAMP)

demo: install
	$(BIN)/nyceo run --month $(MONTH) -c $(CONFIG)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .prefect
