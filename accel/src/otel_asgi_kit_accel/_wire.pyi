from typing import Any

def configure(
    span_context: type, default_trace_state: Any, kinds: tuple[Any, ...], status_codes: tuple[Any, ...]
) -> None: ...
def encode_span(span: Any) -> bytes | None: ...
def encode_log_fields(
    timestamp: int | None,
    severity: int | None,
    severity_text: str | None,
    body: Any,
    attrs: dict[str, Any] | None,
    dropped: int,
    flags: int,
    trace_id: int,
    span_id: int,
    observed_timestamp: int | None,
    event_name: str | None,
) -> bytes | None: ...
