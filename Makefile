# The two set-up commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py

lint: $(BIN)/.installed
	$(BIN)/ruff check otel_asgi_kit tests examples benchmarks scripts
	$(BIN)/ruff format --check otel_asgi_kit tests examples benchmarks scripts
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -p no:cacheprovider
