"""The ASGI adapter's compiled request path (``otel_asgi_kit_accel._core``), when it can take over.

``core_for(inst)`` decides once per ``Instrumentation`` whether requests go
through the compiled ``Core``: the compiled writers are switched on
(``sdk.accel.use``: installed, wanted, agreeing with Python), the extension
has its request path, and no request or response headers are captured.
The compiled path does what ``middleware._start``, ``ServerRequest`` and
``_Responder`` do, calling the same Python pieces (span start, context,
active table, metrics, redaction), and finishes the common request itself,
ending its span with ``sdk.span_end``'s compiled ender when that applies;
every other request ends in ``RequestLogic`` on the same fields. ``doctor``
reports which path runs (``sdk.accel.status``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from otel_asgi_kit.asgi.keys import SPAN_KEY
from otel_asgi_kit.core import active
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.core.propagation import RAW_GETTER
from otel_asgi_kit.core.request import _METHODS, BACKGROUND_MIN_S, RequestLogic
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.sdk import accel, current, span_end
from otel_asgi_kit.sdk.server_span import ServerSpan
from otel_asgi_kit.types import Message

try:
    from otel_asgi_kit_accel import _core
except ImportError:  # not installed, or an older build without the request path
    _core = None  # type: ignore[assignment]


if _core is not None:

    class FastRequest(_core.RequestBase, RequestLogic):
        """The compiled request (fields, ``send``, ``finish_common``) with the kit's Python ending."""

        __slots__ = ()

    FAST_REQUEST: type = FastRequest
else:
    FAST_REQUEST = type(None)  # isinstance() of a request with it: never (there is no compiled request)


async def _send_last(request: Any, message: Message) -> None:
    """The response's last message: its duration ends once the server took it."""
    await request.server_send(message)
    request.response_complete()


def core_for(inst: Instrumentation, *, switched_on: bool | None = None, current_task: Any = None) -> Any:
    """The compiled ``Core`` for ``inst``, or ``None`` (the Python path); decided once, kept on ``inst``.

    ``switched_on``: whether the compiled path is wanted (default: the compiled writers run, see
    ``sdk.accel``); ``current_task``: another ``asyncio.current_task`` (tests of failure containment)."""
    if switched_on is None:
        switched_on = accel.compiled()
    core = None
    http = inst.http
    if (
        _core is not None
        and hasattr(_core, "Ender")  # a build older than 0.3 (the span end, aiohttp's start_request): Python
        and switched_on
        and not inst.request_headers.enabled
        and not inst.response_headers.enabled
        and (http is None or type(http) is HttpServerMetrics)  # recorded in C as its methods do
    ):
        if inst.end_span is None:
            inst.end_span = span_end.compiled_ender(inst.server_spans)
        try:
            propagator = inst.propagator
            core = _core.Core(
                request_type=FastRequest,
                inst=inst,
                methods=dict(_METHODS),
                fields=frozenset(inst.propagation_fields),
                extract=lambda headers: propagator.extract(headers, getter=RAW_GETTER),
                redact=inst.query.redact,
                start_span=inst.server_spans.start,
                attach=current.attach_span,
                detach=current.detach,
                current_task=current_task or asyncio.current_task,
                active=active._spans,
                metrics=http,
                perf_counter=time.perf_counter,
                time_ns=time.time_ns,
                trace_header=inst.trace_header,
                send_last=_send_last,
                span_key=SPAN_KEY,
                span_type=ServerSpan,
                make_root=inst.server_spans.root_maker(),
                end_span=inst.end_span,
                decisions=inst.tail_decisions,
                background_min=BACKGROUND_MIN_S,
            )
        except Exception as exc:  # a build that does not fit this kit: the Python path
            report_once("setting up the compiled request path", exc)
            core = None
        if core is not None and hasattr(_core, "fast_span_context"):  # since 0.6: two methods done in C
            if inst.server_spans.context_is_field:
                _core.fast_span_context(ServerSpan)  # its context read from its field, not asked twice
            # and the route, status and client set on its fields while its type has this very method
            _core.fast_kit_attributes(ServerSpan.set_kit_attributes)
            parts = current.compiled_parts()
            if parts is not None and hasattr(_core, "fast_context"):  # the context attached and detached in C
                _core.fast_context(*parts)
    inst.asgi_core = core
    return core
