VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench clean

# Idempotent: re-installs only when the dependency files change.
setup: $(STAMP)

$(STAMP): pyproject.toml requirements-presets.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps -r requirements-presets.txt
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/tunelab train recipes/quickstart.yaml

test: setup
	$(PY) -m pytest -q -rs tests

bench: setup
	$(PY) benchmarks/target_only_loss.py

clean:
	rm -rf runs .pytest_cache
