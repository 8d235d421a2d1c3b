# Example app image for docker-compose.yml: the package plus examples/,
# started under opentelemetry-instrument. Another example: override the
# command, e.g. `command: [opentelemetry-instrument, uvicorn, examples.fastapi_app:app, ...]`.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The "examples" extra (pyproject.toml) brings starlette, fastapi,
# uvicorn[standard] and httpx.
ARG EXTRAS=examples
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only
# when pyproject.toml changes, not on an edit to the code. Build requirements
# (hatchling) come too, so the package below installs without downloading.
COPY pyproject.toml deploy/docker/pyproject_requirements.py /tmp/deps/
RUN python /tmp/deps/pyproject_requirements.py --extras "${EXTRAS}" --build /tmp/deps/pyproject.toml \
        > /tmp/deps/requirements.txt \
    && pip install -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps
# Then the package itself, its dependencies already there.
COPY pyproject.toml README.md ./
COPY otel_asgi_kit ./otel_asgi_kit
RUN pip install --no-deps --no-build-isolation .
COPY examples ./examples

RUN useradd --system --uid 10001 app
USER app

# 8000: the app; 9464: admin port with /metrics for Prometheus.
EXPOSE 8000 9464
# Exec form: no shell in between, so SIGTERM from `docker stop` reaches the app.
CMD ["opentelemetry-instrument", "uvicorn", "examples.starlette_app:app", "--host", "0.0.0.0", "--port", "8000"]
