"""The compiled OTLP writers (``accel/``, ``otel_asgi_kit_accel``) against the Python ones, on shared vectors.

Every span and log record must come out as the same bytes whichever writer
ran: the compiled one either writes exactly the Python writer's bytes or
answers None (then Python writes). The extension is built from source by
``make`` in every test venv; in CI its absence fails this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_asgi_kit.sdk import accel, wire, wire_logs
from otel_asgi_kit.sdk.server_span import ServerSpanStarter
from tests.test_otlp_wire import _spans

_wire = pytest.importorskip("otel_asgi_kit_accel._wire", reason="the compiled encoder is not built: make")


@pytest.fixture(autouse=True)
def compiled() -> Iterator[None]:
    assert accel.use(True).startswith("compiled"), accel.status()
    yield
    accel.use(True)


def _server_span(attributes: dict[str, Any], **extra: Any) -> Any:
    provider = TracerProvider()
    span = ServerSpanStarter(provider.get_tracer("t")).start("GET", None, attributes)
    span.set_kit_attributes({"http.route": "/items/{item_id}", "http.response.status_code": 200}, "GET /items/{id}")
    if extra.get("error"):
        span.set_status(Status(StatusCode.ERROR, "ValueError: boom"))
    span.end()
    return span


def test_every_shared_vector_gives_the_python_bytes() -> None:
    """Trace state, events, links, remote parents, odd values, every kind: compiled or not, the same bytes."""
    spans = [*_spans(), *accel._reference_spans(), _server_span({"url.path": "/items/1"}, error=True)]
    handled = 0
    for span in spans:
        python = wire.encode_span(span)
        compiled = _wire.encode_span(span)
        assert compiled is None or compiled == python, span.name
        handled += compiled is not None
        assert accel.encode_span(span) == python
    assert handled >= len(accel._reference_spans()) + 1  # the common ones are taken by the compiled writer


def test_the_kit_server_span_is_written_by_the_compiled_writer() -> None:
    span = _server_span({"http.request.method": "GET", "url.path": "/items/1", "user_agent.original": "wrk"})
    assert _wire.encode_span(span) == wire.encode_span(span)


_TEXT = st.text(max_size=40)
_VALUE = st.one_of(
    _TEXT,
    st.booleans(),
    st.integers(min_value=-(1 << 64), max_value=1 << 64),  # beyond int64: Python leaves the attribute out
    st.floats(allow_nan=False),
    st.binary(max_size=8),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
)
_ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=12), _VALUE, max_size=8)


@settings(max_examples=300, deadline=None)
@given(name=_TEXT, attributes=_ATTRIBUTES, kind=st.sampled_from(list(SpanKind)), error=st.booleans())
def test_generated_spans_give_the_python_bytes(name: str, attributes: dict[str, Any], kind: Any, error: bool) -> None:
    span = TracerProvider().get_tracer("t").start_span(name, kind=kind, attributes=attributes)
    if error:
        span.set_status(Status(StatusCode.ERROR, name))
    span.end()
    compiled = _wire.encode_span(span)
    assert compiled is None or compiled == wire.encode_span(span)


_IDS = st.integers(min_value=0, max_value=(1 << 128) - 1)


@settings(max_examples=300, deadline=None)
@given(
    timestamp=st.one_of(st.none(), st.integers(min_value=0, max_value=(1 << 64) - 1)),
    severity=st.one_of(st.none(), st.integers(min_value=0, max_value=24)),
    severity_text=st.one_of(st.none(), _TEXT),
    body=st.one_of(_TEXT, st.integers(), st.none()),
    attributes=st.one_of(st.none(), st.dictionaries(st.text(max_size=12), _VALUE, max_size=6)),
    dropped=st.integers(min_value=0, max_value=3),
    flags=st.integers(min_value=0, max_value=3),
    trace_id=_IDS,
    span_id=st.integers(min_value=0, max_value=(1 << 64) - 1),
    observed=st.one_of(st.none(), st.integers(min_value=0, max_value=(1 << 64) - 1)),
    event_name=st.one_of(st.none(), _TEXT),
)
def test_generated_log_records_give_the_python_bytes(**fields: Any) -> None:
    args = tuple(fields[k] for k in ("timestamp", "severity", "severity_text", "body", "attributes", "dropped"))
    args += tuple(fields[k] for k in ("flags", "trace_id", "span_id", "observed", "event_name"))
    python = wire_logs.encode_log_fields(*args)
    compiled = _wire.encode_log_fields(*args)
    assert compiled is None or compiled == python
    assert accel.encode_log_fields(*args) == python


def test_switched_off_the_python_writers_run() -> None:
    assert accel.use(False) == "pure Python (OTEL_ASGI_KIT_ACCELERATOR=false)"
    assert accel.encode_span is wire.encode_span and accel.encode_log_fields is wire_logs.encode_log_fields


def test_a_compiled_writer_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "encode_span", lambda span: b"\x12\x00")
    status = accel.use(True)
    assert status.startswith("pure Python (the compiled encoder") and "other bytes" in status
    assert accel.encode_span is wire.encode_span
