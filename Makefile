# Two-command quick start: `make demo`, `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ROWS ?= 1000000
REPEAT ?= 3

AZURITE := .tools/node_modules/.bin/azurite-blob

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/hub demo demo-hub

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Azurite (npm package) is the real Azure Blob server the storage tests start on 127.0.0.1.
$(AZURITE):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error azurite@3

# Debian's chromium renders the HTML report in its test (installed with apt-get when missing).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium

test: lint $(AZURITE) $(CHROMIUM)
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/run.py --rows $(ROWS) --repeat $(REPEAT)
	$(PY) bench/run.py --rows $(ROWS) --repeat $(REPEAT) --shape independent
	$(PY) bench/providers.py --rows $(ROWS) --repeat $(REPEAT)
	$(PY) bench/allocation.py --rows $(ROWS) --repeat $(REPEAT)
	$(PY) bench/inspection.py

clean:
	rm -rf $(VENV) .tools demo-hub .pytest_cache .ruff_cache
