from collections.abc import Awaitable, Callable
from typing import Any

class RequestBase:
    inst: Any
    span: Any
    token: Any
    task: Any
    method: str
    scheme: str
    request_bytes: int | None
    server_send: Callable[[Any], Awaitable[None]]
    peer: str | None
    response_headers: Any
    status: int
    response_bytes: int
    done_ns: int
    start: float
    done_at: float
    def __call__(self, message: Any) -> Awaitable[None]: ...
    def trace_header(self) -> bytes: ...
    def response_started(self, status: int) -> None: ...
    def response_complete(self) -> None: ...
    def finish_common(self, route: str | None, client: str | None, scheme: str | None, background: bool) -> bool: ...

class Core:
    def __init__(
        self,
        *,
        request_type: type[RequestBase],
        inst: Any,
        methods: dict[str, str],
        fields: frozenset[bytes],
        extract: Callable[[Any], Any],
        redact: Callable[[str], str],
        start_span: Callable[[str, Any, dict[str, Any]], Any],
        attach: Callable[[Any, Any], Any],
        detach: Callable[[Any], None],
        current_task: Callable[[], Any],
        active: dict[Any, Any],
        metrics: Any,
        perf_counter: Callable[[], float],
        time_ns: Callable[[], int],
        trace_header: bytes | None,
        send_last: Callable[[Any, Any], Awaitable[None]],
        span_key: str,
        span_type: type,
        make_root: RootMaker | None,
        end_span: Ender | None,
        decisions: dict[int, bool] | None,
        background_min: float,
    ) -> None: ...
    def start(self, scope: Any, send: Any) -> RequestBase: ...
    def start_request(
        self,
        raw_method: str,
        scheme: str,
        path: str,
        query: str,
        parent: Any,
        user_agent: str | None,
        http_version: str,
        request_bytes: int | None,
        peer: str | None,
    ) -> RequestBase: ...

class HistogramBase:
    bounds: Any
    buckets: list[int]
    sum: float
    min: float
    max: float
    exemplars: list[Any] | None
    def __init__(self, bounds: Any) -> None: ...
    def record(self, value: float) -> None: ...
    def record_sampled(self, value: float, span_context: Any, end_ns: int) -> None: ...

class RootMaker:
    def __init__(
        self,
        *,
        tracer: Any,
        span_type: type,
        prototype: dict[str, Any],
        attributes_type: type,
        attributes_prototype: dict[str, Any],
        span_context_type: type,
        trace_state: Any,
        flags: Any,
        random: Any,
        allocate_lock: Callable[[], Any],
        time_ns: Callable[[], int],
        on_start: Callable[..., None],
        multi: Any,
        quiet: tuple[Any, ...] | None,
        fallback: Callable[[str, Any, dict[str, Any]], Any],
    ) -> None: ...
    def __call__(self, name: str, attributes: dict[str, Any]) -> Any: ...

def trace_header_value(span: Any) -> bytes: ...
def fast_span_context(span_type: type | None) -> None: ...
def fast_kit_attributes(function: Callable[..., None] | None) -> None: ...
def fast_context(attach: Any, detach: Any, var: Any, key: Any, context_type: Any) -> None: ...

class Ender:
    def __init__(
        self,
        *,
        span_type: type,
        multi: Any,
        processors: tuple[Any, ...],
        resource: Any,
        scope: Any,
        steps: tuple[tuple[Any, ...], ...],
    ) -> None: ...
    def __call__(self, span: Any, end_ns: int) -> None: ...

class LogDirect:
    def __init__(
        self,
        *,
        record_type: type,
        handler: Any,
        multi: Any,
        processors: tuple[Any, ...],
        provider: Any,
        names: dict[str, Any],
        levels: dict[int, Any],
        access: Any,
        emitting: Any,
        span_context: Any,
        encode: Any,
        encode_python: Any,
        time_ns: Any,
        batch: Any,
        emit: Any,
        report: Any,
        plain_size: int,
    ) -> None: ...
    def __call__(self, record: Any) -> bool | None: ...

class EcsLine:
    def __init__(
        self,
        *,
        record_type: type,
        heads: dict[tuple[str, str], tuple[str, str]],
        escape: Any,
        span_context: Any,
        access: Any,
        plain_size: int,
    ) -> None: ...
    def __call__(self, record: Any) -> str | None: ...
