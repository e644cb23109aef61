# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each creates the virtual environment (.venv) on first use and reinstalls when pyproject changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench mutation clean compiled pure test-compiled

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
	$(PY) -m ruff check actors runtime storage tests examples bench setup.py mutation
	$(PY) -m mypy --strict actors runtime

# The optional compiled build (mypyc, C compiler needed): the modules in actors/_compiled.py are
# compiled in place, beside their sources, which they then shadow; `make pure` removes them.
# An edited source of a compiled module makes `import actors` warn until `make compiled` again.
compiled: $(VENV)/.installed
	SUBJECTS_COMPILE=1 $(PY) setup.py --quiet build_ext --inplace --parallel 2

pure:
	rm -rf build
	find actors runtime -maxdepth 1 \( -name '*.so' -o -name '*.pyd' \) -delete
	rm -f actors/_compiled_manifest.json *__mypyc*.so

# The whole suite on the compiled build, then back to pure Python.
test-compiled: compiled
	$(PY) -c 'from actors._compiled import compiled_modules as c; m = c(); assert m, "nothing compiled"; print("compiled:", len(m), "modules")'
	$(PY) -m pytest -q; status=$$?; $(MAKE) --no-print-directory pure; exit $$status

# Mutation testing of the core (minutes; not part of `make test`): every module of
# mutation/config.toml against its own tests, or one: `make mutation MODULE=actors/_state.py`.
mutation: $(VENV)/.installed
	$(PY) mutation/run.py $(if $(MODULE),--module $(MODULE))

bench: $(VENV)/.installed
	$(PY) bench/core.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
