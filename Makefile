# Two commands on a fresh machine: `make demo` and `make test`. Both install into .venv first
# (once: the stamp file records a finished install; a second run installs nothing).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip's config on these machines names extra index folders that may not exist: hide that noise.
QUIET  := { grep -v "^WARNING: Location" || true; }
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# One variable selects the torch build (README, "Production"); everything else is requirements.lock.
#   TORCH=cpu  (default) torch==2.13.0+cpu                                   constraints-cpu.txt
#   TORCH=cuda the package registry's Linux wheel of torch 2.13.0 (CUDA 13)  constraints-cuda.txt
#   TORCH=rocm torch 2.13.0 from TORCH_INDEX=<wheel index URL ending in the ROCm release, .../rocm7.1>,
#              asked for as torch==2.13.0+<that last part>                    constraints-rocm.txt
# TORCH_INDEX also works with cuda (e.g. an index ending in cu128). Each build has its own stamp; a
# venv holds one build (another one needs `make clean` or VENV=.venv-<build>).
TORCH         ?= cpu
TORCH_VERSION := 2.13.0
TORCH_INDEX   ?=
ifeq ($(TORCH),cpu)
  TORCH_REQ   := torch==$(TORCH_VERSION)+cpu
  TORCH_CHECK := not (torch.version.cuda or torch.version.hip)
else ifeq ($(TORCH),cuda)
  TORCH_REQ   := torch==$(TORCH_VERSION)$(if $(TORCH_INDEX),+$(notdir $(TORCH_INDEX)))
  TORCH_CHECK := bool(torch.version.cuda)
else ifeq ($(TORCH),rocm)
  ifeq ($(TORCH_INDEX),)
    $(error TORCH=rocm needs TORCH_INDEX=<URL of a ROCm wheel index, ending in the ROCm release, e.g. .../rocm7.1>)
  endif
  TORCH_REQ   := torch==$(TORCH_VERSION)+$(notdir $(TORCH_INDEX))
  TORCH_CHECK := bool(torch.version.hip)
else
  $(error TORCH must be cpu, cuda or rocm (got '$(TORCH)'))
endif
TORCH_CONSTRAINTS := constraints-$(TORCH).txt
TORCH_INDEX_ARGS  := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
STAMP  := $(VENV)/.installed-$(TORCH)
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c $(TORCH_CONSTRAINTS)
MONTH  ?= 2024-07
PREVIOUS_MONTH ?= 2024-06
CONFIG ?= configs/demo.yaml

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= INFO
export PYTHONUNBUFFERED := 1

.PHONY: install demo test clean stac-server-env browser bench
install: $(STAMP)

$(STAMP): requirements.lock $(TORCH_CONSTRAINTS) pyproject.toml
	@for s in $(VENV)/.installed-*; do [ ! -e "$$s" ] || [ "$$s" = "$(STAMP)" ] || { echo "$(VENV) holds the $${s##*-}" \
	  "torch build: run 'make clean' first, or install the $(TORCH) build beside it with VENV=.venv-$(TORCH)"; exit 2; }; done
	@echo "installing pinned environment ($(TORCH) torch) into $(VENV) (first time only, ~2 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) $(TORCH_INDEX_ARGS) "$(TORCH_REQ)" 2>&1 | $(QUIET)
	@$(PIP) $(TORCH_INDEX_ARGS) -r requirements.lock 2>&1 | $(QUIET)
	@$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . 2>&1 | $(QUIET)
	@$(BIN)/python -c "import sys, torch; sys.exit(0 if $(TORCH_CHECK) else 'TORCH=$(TORCH) installed torch ' + torch.__version__ + ' (cuda ' + str(torch.version.cuda) + ', hip ' + str(torch.version.hip) + '): not the $(TORCH) build; check the wheel sources in your pip configuration (find-links, extra indexes)')"
	@$(BIN)/python -c "import nyceo, nyceo.model, torch, terratorch, prefect, zarr, rasterio; print('environment ok: torch', torch.__version__)"
	@$(BIN)/pip freeze --disable-pip-version-check | grep -i -E '^(torch|triton|pytorch-triton|nvidia-|cuda-)' > $(VENV)/torch-build.txt
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

# Two worker processes, one test module each at a time (module fixtures are built once): on 2 cores
# 315 tests took 13 min vs ~16.5 min for ~270 serially, since much of a test waits on servers and disk.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: install stac-server-env browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Stage benchmarks + scaling -> docs/PERFORMANCE.md, docs/SCALING.md, docs/scaling.png (~15-30 min on
# 2 cores, longer under load). BENCH_ARGS=--skip-scaling leaves out the scaling run; logs in outputs/bench/logs.
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/make_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .prefect
