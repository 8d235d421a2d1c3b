"""What never leaves the process: credential values in query strings, headers and access-log URLs.

Header values are redacted by ``asgi.headers.HeaderCapture`` (names from
``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`` plus the kit's
list); query parameters here, by name. Names are kept, values become
``REDACTED``. Both lists are regular expressions matched case-insensitively
against the whole name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

REDACTED = "REDACTED"
AIOHTTP_REQUEST_LINE = "first_request_line"  # aiohttp's access-log atom %r, e.g. "GET /a?b=c HTTP/1.1"

DEFAULT_QUERY_PARAMS = (
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "sig",
    "signature",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "session",
    "sessionid",
    "x-amz-.*",
    "x-goog-signature",
    "auth",
    "authorization",
    ".*token.*",
    ".*secret.*",
    ".*password.*",
)


class QueryRedactor:
    def __init__(self, names: Sequence[str]) -> None:
        self._name = re.compile("|".join(f"(?:{n})" for n in names), re.IGNORECASE)
        # name=value pairs; the value runs to the next separator (or a space/quote in a log line).
        self._pair = re.compile(r"([^&=?\s\"]+)=([^&\s\"#]*)")

    def redact(self, query: str) -> str:
        """``query`` with the values of sensitive parameters replaced; unchanged text is returned as is."""
        if "=" not in query:
            return query
        return self._pair.sub(self._replace, query)

    def redact_url(self, url: str) -> str:
        path, sep, query = url.partition("?")
        return f"{path}{sep}{self.redact(query)}" if sep else url

    def _replace(self, match: re.Match[str]) -> str:
        name = match.group(1)
        if self._name.fullmatch(name) is None:
            return match.group(0)
        return f"{name}={REDACTED}"


class AccessLogRedaction(logging.Filter):
    """Redacts the request URL in server access-log records before any handler sees them."""

    def __init__(self, redactor: QueryRedactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            # uvicorn: (client, method, full_path, http_version, status)
            record.args = (args[0], args[1], self._redactor.redact_url(args[2]), args[3], args[4])
        elif isinstance(args, dict):
            # hypercorn: a mapping of access-log atoms, several of which hold the URL; granian's has the query apart
            redact, redact_url = self._redactor.redact, self._redactor.redact_url
            record.args = {
                k: (redact(v) if k == "query_string" else redact_url(v)) if isinstance(v, str) else v
                for k, v in args.items()
            }
        elif isinstance(record.msg, str) and "?" in record.msg and not args:
            # aiohttp: the line comes formatted, its atoms ride along as record attributes
            record.msg = self._redactor.redact_url(record.msg)
            line = getattr(record, AIOHTTP_REQUEST_LINE, None)
            if isinstance(line, str):
                setattr(record, AIOHTTP_REQUEST_LINE, self._redactor.redact_url(line))
        return True


ACCESS_LOGGERS = (
    "uvicorn.access",
    "hypercorn.access",
    "gunicorn.access",
    "granian.access",
    "daphne.access",
    "aiohttp.access",
)


def install_access_log_redaction(redactor: QueryRedactor) -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, AccessLogRedaction)]:
            logger.removeFilter(existing)
        logger.addFilter(AccessLogRedaction(redactor))
