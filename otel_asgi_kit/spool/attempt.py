"""One POST of an encoded OTLP body through the stock exporter's HTTP client, without its backoff.

The stock ``_OTLPHTTPClient.export`` retries for up to the whole export
timeout (1, 2, 4 s... apart) while the batch processor's queue fills and
drops. With a spool there is no need to wait: a failed body is kept and
sent again later. This uses the client's compression, headers, TLS setup
and transport, through three private members (``_compress``, ``_submit``,
``_transport``) and its ``_timeout``; ``supports`` checks them at start-up and
without them the spool is not used (``tests/test_spool_store.py`` lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_NEEDED = ("_compress", "_submit", "_transport", "_timeout")


@dataclass(frozen=True)
class Attempt:
    ok: bool
    retryable: bool  # the collector may take it later: keep it
    status_code: int | None = None
    error: BaseException | None = None

    def describe(self) -> str:
        if self.status_code is not None:
            return f"HTTP {self.status_code}"
        text = " ".join(str(self.error or "no answer").split())
        # requests nests the OS error three exceptions deep; the operator needs only that.
        found = _OS_ERROR.search(text)
        return found.group(1) if found else text[:300]


def supports(client: object) -> bool:
    transport = getattr(client, "_transport", None)
    return all(hasattr(client, name) for name in _NEEDED) and callable(getattr(transport, "is_connection_error", None))


def post_once(client: Any, body: bytes) -> Attempt:
    """What the stock client's first try does (including its one immediate reconnect).

    Instrumentation is suppressed, as the SDK does on its export thread: the spool's own replay thread
    must not make CLIENT spans (requests, urllib3) of the kit's POSTs to the collector."""
    try:
        with suppress_instrumentation():
            result = client._submit(client._compress(body), client._timeout)
    except Exception as exc:
        return Attempt(False, False, None, exc)
    status = result.status_code
    if status is not None and 200 <= status < 400:
        return Attempt(True, False, status)
    if status:
        return Attempt(False, status in _RETRYABLE_STATUS, status, result.error)
    error = result.error
    return Attempt(False, bool(client._transport.is_connection_error(error)), None, error)
