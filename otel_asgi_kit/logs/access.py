"""The fields of a server's access-log record, for the stdout JSON line and the OTLP log record alike."""

from __future__ import annotations

import logging
from typing import Any

from otel_asgi_kit.redaction import AIOHTTP_REQUEST_LINE

_UVICORN = "uvicorn.access"
# Loggers whose records carry a request (checked by name first: a set lookup per record). aiohttp
# logs on aiohttp.access, or on gunicorn.access under its gunicorn worker.
_GRANIAN = "granian.access"
_DAPHNE = "daphne.access"
ACCESS_LOGGERS = frozenset({_UVICORN, "aiohttp.access", "gunicorn.access", _GRANIAN, _DAPHNE})


def _request_fields(client: Any, method: Any, path: Any, status: Any) -> dict[str, Any]:
    """The fields of a ``host:port``, method, URL, status access line."""
    return {
        "client.address": str(client).rsplit(":", 1)[0],
        "http.request.method": method,
        "url.original": path,
        "http.response.status_code": status,
    }


def access_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """ECS/semconv fields of an access-log record (method, URL, status, client), or None for other records."""
    args = record.args
    if record.name == _UVICORN and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _version, status = args
        return _request_fields(client, method, path, status)
    if record.name == _GRANIAN and isinstance(args, dict):
        return _granian_access_fields(args)
    if record.name == _DAPHNE and isinstance(args, tuple) and len(args) == 5:
        # The kit's own record for Daphne (asgi/daphne.py): client, method, URL, status, size.
        client, method, path, status, _size = args
        return _request_fields(client, method, path, status)
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


def _granian_access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """Granian passes a mapping of its access-log atoms; the query string (already redacted) is apart."""
    doc: dict[str, Any] = {"http.request.method": atoms.get("method"), "http.response.status_code": atoms.get("status")}
    path = atoms.get("path")
    if isinstance(path, str):
        query = atoms.get("query_string")
        doc["url.original"] = f"{path}?{query}" if query else path
    addr = atoms.get("addr")
    if isinstance(addr, str):
        doc["client.address"] = addr
    return doc
