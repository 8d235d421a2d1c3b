"""The fields of a server's access-log record, for the stdout JSON line and the OTLP log record alike."""

from __future__ import annotations

import logging
from typing import Any

_UVICORN = "uvicorn.access"
# Loggers whose records carry a request in their args (checked by name first: a set lookup per record).
ACCESS_LOGGERS = frozenset({_UVICORN})


def access_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """ECS/semconv fields of an access-log record (method, URL, status, client), or None for other records."""
    args = record.args
    if record.name == _UVICORN and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _version, status = args
        return {
            "client.address": str(client).rsplit(":", 1)[0],
            "http.request.method": method,
            "url.original": path,
            "http.response.status_code": status,
        }
    return None
