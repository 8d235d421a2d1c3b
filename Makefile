# The two set-up commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint services

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py

lint: $(BIN)/.installed
	$(BIN)/ruff check otel_asgi_kit tests examples benchmarks scripts deploy
	$(BIN)/ruff format --check otel_asgi_kit tests examples benchmarks scripts deploy
	$(BIN)/mypy

# The real parts the tests start: Debian's Prometheus, Chromium, wrk and nginx, our collector
# (built once with the Collector Builder, cached), tools/k8scheck (Go, cached) and Elasticsearch (downloaded
# once from Maven Central, cached) under ~/.cache/otel-asgi-kit.
services: $(BIN)/.installed
	command -v prometheus >/dev/null && command -v nginx >/dev/null && command -v chromium >/dev/null && command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium fonts-dejavu-core wrk nginx; }
	bash collector/build.sh
	bash tools/k8scheck/build.sh
	$(BIN)/python -c "from tests.infra.services import ensure_elasticsearch; print(ensure_elasticsearch())"

test: lint services
	$(BIN)/python -m pytest -p no:cacheprovider
