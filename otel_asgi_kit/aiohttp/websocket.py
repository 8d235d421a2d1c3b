"""aiohttp WebSockets: one core ``Connection`` per upgrade request, messages counted as they flow.

The connection is accepted when ``WebSocketResponse`` wrote its 101; from
then on the response itself points at its connection, so a message sent to
it from another client's task (a broadcast) is counted on the right one.
Counting is one attribute read per message on a response the kit never saw.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_ws import WebSocketResponse
from opentelemetry.context import Context

from otel_asgi_kit.core.connection import Connection
from otel_asgi_kit.core.instrumentation import Instrumentation

CONNECTION_ATTR = "_otel_asgi_kit_connection"  # on WebSocketResponse; the class holds the default None
_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)
_CLOSING = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


def start_connection(inst: Instrumentation, request: BaseRequest, parent: Context | None) -> Connection:
    return Connection(inst, request.path, "wss" if request.secure else "ws", parent)


def accept(conn: Connection, response: StreamResponse, route: str | None) -> None:
    if isinstance(response, WebSocketResponse):
        conn.accept(route)
        setattr(response, CONNECTION_ATTR, conn)


def finish_connection(
    conn: Connection, response: StreamResponse | None, route: str | None, exc: BaseException | None
) -> None:
    if isinstance(response, WebSocketResponse) and response.close_code is not None:
        conn.closed(int(response.close_code))
    # A handler that answered the upgrade request with a plain response never accepted it.
    conn.finish(route if conn.accepted else None, exc)


def _size(data: Any) -> int:
    if isinstance(data, str):
        return len(data.encode("utf-8", "replace"))
    return len(data) if data is not None else 0


async def receive(original: Callable[..., Awaitable[Any]], ws: WebSocketResponse, *args: Any, **kwargs: Any) -> Any:
    message = await original(ws, *args, **kwargs)
    conn: Connection | None = getattr(ws, CONNECTION_ATTR)
    if conn is not None:
        kind = message.type
        if kind in _DATA:
            conn.message_received(_size(message.data))
        elif kind in _CLOSING:
            code = ws.close_code
            conn.closed(int(code) if code is not None else 1005)
    return message


async def send_data(
    original: Callable[..., Awaitable[None]], ws: WebSocketResponse, data: Any, *args: Any, **kwargs: Any
) -> None:
    """``send_str`` / ``send_bytes`` (``send_json`` goes through ``send_str``): one message each."""
    await original(ws, data, *args, **kwargs)
    conn: Connection | None = getattr(ws, CONNECTION_ATTR)
    if conn is not None:
        conn.message_sent(_size(data))


async def send_frame(
    original: Callable[..., Awaitable[None]],
    ws: WebSocketResponse,
    message: Any,
    opcode: Any,
    *args: Any,
    **kwargs: Any,
) -> None:
    await original(ws, message, opcode, *args, **kwargs)
    conn: Connection | None = getattr(ws, CONNECTION_ATTR)
    if conn is not None and opcode in _DATA:
        conn.message_sent(_size(message))
