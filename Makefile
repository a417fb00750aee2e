# Two-command quick start: `make demo`, `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ROWS ?= 1000000
REPEAT ?= 3

AZURITE := .tools/node_modules/.bin/azurite-blob

.PHONY: demo test lint bench clean java

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

# Spark (the `--engine spark` tests) needs a Java 17+ runtime: Debian's headless JRE is installed when none is found.
java:
	@command -v java >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q openjdk-17-jre-headless; }

test: lint $(AZURITE) $(CHROMIUM) java
	$(PY) -m pytest -q

bench: $(VENV)/.installed java
	$(PY) bench/run.py --rows $(ROWS) --repeat $(REPEAT)
	$(PY) bench/run.py --rows $(ROWS) --repeat $(REPEAT) --shape independent
	$(PY) bench/providers.py --rows $(ROWS) --repeat $(REPEAT)
	$(PY) bench/allocation.py --rows $(ROWS) --repeat $(REPEAT)
	$(PY) bench/inspection.py
	$(PY) bench/spark.py

clean:
	rm -rf $(VENV) .tools demo-hub .pytest_cache .ruff_cache spark-warehouse metastore_db
