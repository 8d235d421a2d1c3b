# Example app image for docker-compose.yml: the package plus examples/,
# started under opentelemetry-instrument. Another example: override the
# command, e.g. `command: [opentelemetry-instrument, uvicorn, examples.fastapi_app:app, ...]`.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Metadata first, so editing code does not bust the dependency layer's cache
# more than needed.
COPY pyproject.toml README.md ./
COPY otel_asgi_kit ./otel_asgi_kit
COPY examples ./examples
# The "examples" extra (pyproject.toml) brings starlette, fastapi,
# uvicorn[standard] and httpx.
ARG EXTRAS=examples
RUN pip install ".[${EXTRAS}]"

RUN useradd --system --uid 10001 app
USER app

# 8000: the app; 9464: admin port with /metrics for Prometheus.
EXPOSE 8000 9464
# Exec form: no shell in between, so SIGTERM from `docker stop` reaches the app.
CMD ["opentelemetry-instrument", "uvicorn", "examples.starlette_app:app", "--host", "0.0.0.0", "--port", "8000"]
