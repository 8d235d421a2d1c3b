"""The stock OTLP/HTTP span and log exporters, sending bytes from ``wire``.

Only the encoding step is replaced (with ``outbox=``, also the send: see
``otel_asgi_kit.spool``). The exporters keep their stock transport, retries,
compression, headers, TLS options, request-size limit and self-metrics.
That means using four attributes of the stock classes that are not part of
their public API (``_client``, ``_metrics``, ``_max_request_size``, ``_shutdown``)
and two names of the private ``_common`` module, imported under a guard. If
a later release changes any of them, ``direct`` is False and the stock
``export`` runs unchanged. ``tests/test_sdk_fence.py`` fails then, so we notice.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_asgi_kit.sdk import accel, encoded, http_transport, wire, wire_logs

COMMON_MODULE = "opentelemetry.exporter.otlp.proto.http._common"


def _private(name: str) -> Any:
    """A name of the exporter package's private ``_common`` module, or None: then the stock ``export`` runs."""
    try:
        module = importlib.import_module(COMMON_MODULE)
    except ImportError:
        return None
    return getattr(module, name, None)


_is_request_too_large: Any = _private("_is_request_too_large")
RequestPayloadTooLargeError: Any = _private("RequestPayloadTooLargeError")

if TYPE_CHECKING:
    from otel_asgi_kit.spool import OutboxFactory
    from otel_asgi_kit.spool.outbox import Outbox

_logger = logging.getLogger(__name__)
_NEEDED = ("_client", "_metrics", "_max_request_size", "_shutdown")
_Result = TypeVar("_Result", SpanExportResult, LogRecordExportResult)


def _has_direct_path(exporter: object) -> bool:
    if _is_request_too_large is None or RequestPayloadTooLargeError is None:
        return False
    client = getattr(exporter, "_client", None)
    return all(hasattr(exporter, name) for name in _NEEDED) and callable(getattr(client, "export", None))


def _encode(exporter: Any, batch: Sequence[Any], encode: Callable[[Sequence[Any]], bytes], what: str) -> bytes | None:
    """The request body, or ``None`` when it cannot be sent (counted as a failed export)."""
    error: Exception
    try:
        data = encode(batch)
    except Exception as exc:  # a bug here must cost this batch only
        _logger.error("Failed to encode %s batch: %s", what, exc)
        error = exc
    else:
        limit = exporter._max_request_size
        if not _is_request_too_large(data, limit):
            return data
        _logger.warning(
            "Dropping %s batch: serialized size %d bytes exceeds max_request_size %d bytes.", what, len(data), limit
        )
        error = RequestPayloadTooLargeError(
            f"Serialized {what} request size {len(data)} bytes exceeds max_request_size {limit} bytes."
        )
    with exporter._metrics.export_operation(len(batch)) as result:
        result.error = error
    return None


def _post(exporter: Any, data: bytes, count: int) -> bool:
    """The stock client's send, retries included."""
    with exporter._metrics.export_operation(count) as result:
        sent = exporter._client.export(data)
        if not sent.success:
            result.error = sent.error
            result.error_attrs = (
                {"http.response.status_code": sent.status_code} if sent.status_code is not None else None
            )
            return False
    return True


def _send(
    exporter: Any,
    batch: Sequence[Any],
    encode: Callable[[Sequence[Any]], bytes],
    what: str,
    success: _Result,
    failure: _Result,
) -> _Result:
    """What the stock ``export`` does, with the kit's bytes; the spool's outbox sends them when there is one."""
    data = _encode(exporter, batch, encode, what)
    if data is None:
        return failure
    outbox = exporter.outbox
    sent = outbox.send(data, len(batch)) if outbox is not None else _post(exporter, data, len(batch))
    return success if sent else failure


def _outbox(exporter: Any, factory: OutboxFactory | None) -> Outbox | None:
    if factory is None or not exporter.direct:
        return None
    return factory(exporter._client, exporter._metrics, lambda data, count: _post(exporter, data, count))


def _read_environment_once(exporter: Any) -> bool:
    """Read the proxy, CA-bundle and netrc settings for the collector's URL once, not on every POST.

    The stock transport's ``requests.Session`` (``trust_env``) scans the whole environment twice and
    looks for a netrc file on every request: about 0.4 ms of a 1.1 ms POST here, paid once per batch
    on the export thread. The endpoint is fixed, so the answer is too: it is read now, by ``requests``
    itself (``merge_environment_settings``, ``get_netrc_auth``), stored on the session, and
    ``trust_env`` is switched off. Needs the client's private ``_transport._session`` and
    ``_endpoint``; without them (or another transport) every POST reads the environment as before.
    """
    client = getattr(exporter, "_client", None)
    session = getattr(getattr(client, "_transport", None), "_session", None)
    url = getattr(client, "_endpoint", None)
    try:
        import requests
        from requests.utils import get_netrc_auth

        if not isinstance(session, requests.Session) or not isinstance(url, str) or not session.trust_env:
            return False
        found = session.merge_environment_settings(url, {}, False, None, None)
        auth = session.auth if session.auth is not None else get_netrc_auth(url)
    except Exception:  # a requests that differs from the one this was written for: as before
        return False
    session.proxies = found["proxies"]
    session.verify = found["verify"]
    session.cert = found["cert"]
    session.auth = auth
    session.trust_env = False
    return True


class _Direct:
    """What both direct exporters add to the stock ones: the direct path's check and the spool's outbox."""

    def __init__(self, *, outbox: OutboxFactory | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct = _has_direct_path(self)
        self.outbox = _outbox(self, outbox)
        self.environment_read_once = _read_environment_once(self)
        # After it: the http.client transport needs the settings read once (sdk.http_transport).
        self.http_client_transport = self.environment_read_once and http_transport.replace_transport(
            getattr(self, "_client", None)
        )

    def shutdown(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        super().shutdown()  # type: ignore[misc]


def _span(span: Any) -> bytes:
    return accel.encode_span(span)  # looked up per call: ``accel.use`` may switch the writer


def _log_record(readable: Any) -> bytes:
    return wire_logs.encode_log_record(readable, accel.encode_log_fields)


def encode_trace_request(batch: Sequence[Any]) -> bytes:
    """The request for SDK spans, items of ``encoded.EncodingSpanProcessor``, or both."""
    return wire.request(encoded.grouped(batch, _span, wire.span_owner))


def encode_logs_request(batch: Sequence[Any]) -> bytes:
    """The request for SDK log records, items of ``encoded.EncodingLogRecordProcessor``, or both."""
    return wire.request(encoded.grouped(batch, _log_record, wire_logs.log_owner))


class DirectSpanExporter(_Direct, OTLPSpanExporter):
    """``OTLPSpanExporter`` encoding with ``wire``; it also takes spans encoded when they ended.

    Encoded items come only from the kit's processor, which is used only while
    ``direct`` holds; after shutdown the stock ``export`` refuses every batch.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.direct or self._shutdown:
            return super().export(spans)
        return _send(self, spans, encode_trace_request, "span", SpanExportResult.SUCCESS, SpanExportResult.FAILURE)


class DirectLogExporter(_Direct, OTLPLogExporter):
    """``OTLPLogExporter`` encoding with ``wire``; it also takes records encoded when emitted."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not self.direct or self._shutdown:
            return super().export(batch)
        return _send(
            self,
            batch,
            encode_logs_request,
            "logs",
            LogRecordExportResult.SUCCESS,
            LogRecordExportResult.FAILURE,
        )
