# dataprotection — the two front-door commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: venv test lint demo up down status lock clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	@touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

# Tests run in parallel workers (pytest-xdist), each with its own moto server, PostgreSQL and Airflow home.
# Three workers on two cores: part of every DAG run is waiting (retries' backoff, restore polls), and
# work stealing keeps the long end-to-end tests from piling up on one worker at the end.
PYTEST_WORKERS ?= 3
test: venv lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal

up: venv
	$(PY) -m devstack up

down:
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi

status: venv
	$(PY) -m devstack status

demo: venv
	$(PY) -m devstack.demo

# Re-resolve the pinned environment from requirements-dev.txt and rewrite constraints.txt.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip
	.lockenv/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Resolved environment for requirements-dev.txt on Python 3.11 (pip freeze). Regenerate: make lock"; \
	  .lockenv/bin/pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lockenv

clean: down
	rm -rf $(VENV) .devstack .devstack.env .pytest_cache
