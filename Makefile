# sanitas top-level commands. The README shows two: `make demo` and `make test` (ruff, then the whole suite).
# Both create/refresh .venv, install the package (torch pinned to 2.13.0) and iverilog/yosys when missing.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.sanitas-installed
SHELL   := /bin/bash

.PHONY: setup demo lint test csim rtl notebooks clean tools

setup: $(STAMP) tools

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -e '.[dev,board,dist]'
	@touch $(STAMP)

# System tools: iverilog (cocotb simulator), yosys (area estimates), chromium (the report's headless-browser test).
tools:
	@missing=""; for t in iverilog yosys chromium; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "sanitas: please install$$missing (e.g. sudo apt-get install$$missing); RTL and browser tests will be skipped"; fi; \
	fi

demo: setup
	$(VENV)/bin/sanitas flow

# ruff first (a finding fails the run), then the suite on both cores: pytest-xdist, one file per worker
# (--dist loadfile keeps a file's module fixtures and fixed build/ folders in one process).
JOBS    ?= 2

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(VPY) -m pytest -q -ra -n $(JOBS) --dist loadfile tests rtl_tests --nbmake notebooks

# CONFIG=FILE (a sanitas Config, YAML/JSON): its `array` section is the ArrayConfig of csim and rtl.
CONFIG ?=

csim: setup
	$(MAKE) -C hls csim PYTHON=$(abspath $(VPY)) $(if $(CONFIG),CONFIG=$(abspath $(CONFIG)))

rtl: setup
	$(VENV)/bin/sanitas rtl --out build/rtl $(if $(CONFIG),--config $(CONFIG))

notebooks: setup
	$(VPY) -m pytest -q --nbmake notebooks

clean:
	rm -rf build
