"""The fields of a server's access-log record, for the stdout JSON line and the OTLP log record alike."""

from __future__ import annotations

import logging
from typing import Any

from otel_asgi_kit.redaction import AIOHTTP_REQUEST_LINE

_UVICORN = "uvicorn.access"
# Loggers whose records carry a request (checked by name first: a set lookup per record). aiohttp
# logs on aiohttp.access, or on gunicorn.access under its gunicorn worker.
ACCESS_LOGGERS = frozenset({_UVICORN, "aiohttp.access", "gunicorn.access"})


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
    line = record.__dict__.get(AIOHTTP_REQUEST_LINE)
    if isinstance(line, str):
        return _aiohttp_access_fields(record.__dict__, line)
    return None


def _aiohttp_access_fields(fields: dict[str, Any], line: str) -> dict[str, Any]:
    """aiohttp's access log (on ``aiohttp.access``, or ``gunicorn.access`` under its worker) passes its
    atoms as record attributes: ``first_request_line`` "GET /a?b=1 HTTP/1.1", ``response_status``,
    ``remote_address``, each present when the log format has it."""
    doc: dict[str, Any] = {}
    parts = line.split(" ")
    if len(parts) == 3:
        doc["http.request.method"] = parts[0]
        doc["url.original"] = parts[1]
    status = fields.get("response_status")
    if isinstance(status, int):
        doc["http.response.status_code"] = status
    remote = fields.get("remote_address")
    if isinstance(remote, str) and remote != "-":
        doc["client.address"] = remote
    return doc
