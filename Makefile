# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each creates the virtual environment (.venv) on first use and reinstalls when pyproject changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench mutation clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "subjects needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	@echo "The edge server for examples/device_health.py on http://127.0.0.1:8000 (store: subjects.db). Try:"
	@echo "  curl -X PATCH localhost:8000/subjects/device:prod-01/properties -H 'content-type: application/json' -d '{\"cpu\": 95}'"
	@echo "  curl localhost:8000/subjects/device:prod-01"
	@echo "  $(PY) -m websockets ws://localhost:8000/ws    then type: {\"op\": \"watch\", \"pattern\": \"device:*\"}"
	$(PY) -m runtime.cli serve examples.device_health:rt --store sqlite:///subjects.db

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check actors runtime storage tests examples bench mutation
	$(PY) -m mypy --strict actors runtime

# Mutation testing of the core (minutes; not part of `make test`): every module of
# mutation/config.toml against its own tests, or one: `make mutation MODULE=actors/_state.py`.
mutation: $(VENV)/.installed
	$(PY) mutation/run.py $(if $(MODULE),--module $(MODULE))

bench: $(VENV)/.installed
	$(PY) bench/core.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
