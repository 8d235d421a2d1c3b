"""The current span's ids, and a request's span attached, in one step on OpenTelemetry's context variable.

``trace.get_current_span().get_span_context()`` is five Python calls
(``get_current_span`` → ``get_value`` → ``get_current`` → the runtime
context → the span's method), and every id after it is a property. A log
line asks three times (stdout JSON, OTLP, trace pages), a request twice.
With the API's default runtime context (``ContextVarsRuntimeContext``) the
current context is the value of one ``ContextVar``, a mapping holding the
span under the API's ``_SPAN_KEY``:

* ``span_context()`` reads that mapping (and an SDK span's ``_context``
  field) and answers the valid ``SpanContext`` or ``None``;
* ``attach_span(span, parent)`` is
  ``context.attach(trace.set_span_in_context(span, parent))`` and
  ``detach(token)`` is ``context.detach(token)``, each as one
  ``ContextVar.set``/``reset``.

At import the shortcut checks itself both ways against the public API: a
span attached through it must be the public ``get_current_span()``, and a
span attached through the public API must be what ``span_context()``
reads; the context must be back as before after ``detach``. With another
runtime context (``OTEL_PYTHON_CONTEXT``) or an API that changed, the
public functions run and ``FAST`` is False (``doctor`` lists it with the
other shortcuts in ``sdk.shortcuts``).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext

_SPAN_KEY: Any = getattr(getattr(trace, "propagation", None), "_SPAN_KEY", None)
_VAR: Any = getattr(getattr(context_api, "_RUNTIME_CONTEXT", None), "_current_context", None)
# Span classes whose get_span_context() is theirs (it returns the _context field): read the field.
_FIELD_METHODS = (SdkSpan.get_span_context, NonRecordingSpan.get_span_context)
_field_types: dict[type, bool] = {}
_MAX_TYPES = 64


def _public_span_context() -> SpanContext | None:
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


def _public_attach(span: trace.Span, parent: Context | None) -> object:
    return context_api.attach(trace.set_span_in_context(span, parent))


def _public_detach(token: Any) -> None:
    context_api.detach(token)


def _fast_span_context() -> SpanContext | None:
    span = _VAR.get().get(_SPAN_KEY)
    if span is None:
        return None
    field = _field_types.get(type(span))
    if field is None:
        field = _learn(type(span))
    ctx = span._context if field else span.get_span_context()
    return ctx if ctx[5] else None  # SpanContext is a tuple: (trace_id, span_id, remote, flags, state, valid)


def _learn(kind: type) -> bool:
    field = getattr(kind, "get_span_context", None) in _FIELD_METHODS
    if len(_field_types) < _MAX_TYPES:
        _field_types[kind] = field
    return field


def _fast_attach(span: trace.Span, parent: Context | None) -> Token[Any]:
    values = dict(_VAR.get() if parent is None else parent)
    values[_SPAN_KEY] = span
    token: Token[Any] = _VAR.set(Context(values))
    return token


def _fast_detach(token: Any) -> None:
    try:
        _VAR.reset(token)
    except Exception:  # as the API's detach: a token of another context is logged, never raised
        _public_detach(token)


def _works() -> bool:
    """Both ways against the public API, on throwaway spans; the caller's context is left as it was."""
    if _SPAN_KEY is None or not isinstance(_VAR, ContextVar) or not isinstance(_VAR.get(), Context):
        return False
    if SpanContext(1, 2, is_remote=False)[5] is not True or SpanContext(0, 0, is_remote=False)[5] is not False:
        return False
    before = context_api.get_current()
    one = NonRecordingSpan(SpanContext(0x1F, 0x2F, is_remote=False))
    two = NonRecordingSpan(SpanContext(0x3F, 0x4F, is_remote=True))
    token = _fast_attach(one, None)
    try:
        seen = trace.get_current_span() is one and _fast_span_context() is one.get_span_context()
    finally:
        _fast_detach(token)
    if not seen or context_api.get_current() is not before:
        return False
    public = _public_attach(two, None)
    try:
        seen = _fast_span_context() is two.get_span_context()
        inner = _fast_attach(one, None)  # a child on top of the public one keeps the rest of its context
        try:
            seen = seen and trace.get_current_span() is one
        finally:
            _fast_detach(inner)
        seen = seen and trace.get_current_span() is two
    finally:
        _public_detach(public)
    return seen and context_api.get_current() is before and _fast_span_context() is None


try:
    FAST = _works()
except Exception:  # an API that differs from the one this was written for: its own functions
    FAST = False

span_context = _fast_span_context if FAST else _public_span_context
attach_span = _fast_attach if FAST else _public_attach
detach = _fast_detach if FAST else _public_detach


def compiled_parts() -> tuple[Any, Any, Any, Any, Any] | None:
    """What ``otel_asgi_kit_accel._core.fast_context`` takes to do ``attach_span`` and ``detach`` in C (the same
    steps on the same context variable), or ``None`` when they are the public API's."""
    if not FAST:
        return None
    return _fast_attach, _fast_detach, _VAR, _SPAN_KEY, Context
