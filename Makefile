# The two set-up commands of the README: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_BIN := .venv-demo/bin

.PHONY: demo test unit lint services check-prereqs

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The optional compiled OTLP encoder (accel/), built from source into each test venv; the kit runs
# its Python writers without it (`doctor` says which run).
ACCEL_SRC := accel/pyproject.toml accel/setup.py $(wildcard accel/src/otel_asgi_kit_accel/*)

$(BIN)/.accel: $(BIN)/.installed $(ACCEL_SRC)
	$(BIN)/pip install --quiet --force-reinstall --no-deps ./accel
	touch $@

# The demo's own small venv: the kit and the `demo` extra only (one Starlette app, uvicorn, httpx).
$(DEMO_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-demo
	$(DEMO_BIN)/pip install --quiet --upgrade pip
	$(DEMO_BIN)/pip install --quiet -e '.[demo]'
	touch $@

demo: $(DEMO_BIN)/.installed
	$(DEMO_BIN)/python scripts/demo.py

# What `make test` needs beyond Python, one line each when missing.
check-prereqs:
	PYTHON=$(PYTHON) bash scripts/check_prereqs.sh

lint: $(BIN)/.accel
	$(BIN)/ruff check otel_asgi_kit tests examples benchmarks scripts deploy accel
	$(BIN)/ruff format --check otel_asgi_kit tests examples benchmarks scripts deploy accel
	$(BIN)/mypy

# The real parts the tests start: Debian's Prometheus, Chromium, wrk and nginx, our collector
# (built once with the Collector Builder, cached), tools/k8scheck (Go, cached) and Elasticsearch (downloaded
# once from Maven Central, cached) under ~/.cache/otel-asgi-kit.
services: check-prereqs $(BIN)/.installed
	command -v prometheus >/dev/null && command -v nginx >/dev/null && command -v chromium >/dev/null && command -v wrk >/dev/null && command -v callgrind_control >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium fonts-dejavu-core wrk nginx valgrind; }
	bash collector/build.sh
	bash collector/build.sh collector/cloudwatch/builder-config.yaml
	bash tools/k8scheck/build.sh
	$(BIN)/python -c "from tests.infra.services import ensure_elasticsearch; print(ensure_elasticsearch())"

test: lint services $(BIN)/.accel
	$(BIN)/python -m pytest -p no:cacheprovider

# The fast loop while developing: no server processes, no downloads, no real backends.
unit: $(BIN)/.accel
	$(BIN)/python -m pytest -p no:cacheprovider -q -m "not server and not e2e"

# The oldest and newest supported Pythons beside 3.11: `make test-3.10`, `make test-3.13` run the
# unit tests and the real-server tests in a venv of their own (.venv-3.10, .venv-3.13).
PYTHON_3.10 ?= /root/.pyenv/versions/3.10.13/bin/python3
PYTHON_3.12 ?= /root/.pyenv/versions/3.12.1/bin/python3
PYTHON_3.13 ?= /root/.pyenv/versions/3.13.0/bin/python3

.venv-%/.installed: pyproject.toml
	$(PYTHON_$*) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet -e '.[test]'
	touch $@

.venv-%/.accel: .venv-%/.installed $(ACCEL_SRC)
	.venv-$*/bin/pip install --quiet --force-reinstall --no-deps ./accel
	touch $@

test-%: .venv-%/.accel services
	.venv-$*/bin/python -m pytest -p no:cacheprovider -q -m "not e2e and not server"
	.venv-$*/bin/python -m pytest -p no:cacheprovider -q tests/test_servers.py tests/test_shutdown.py
