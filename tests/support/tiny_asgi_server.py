"""An ASGI server the kit does not know: HTTP/1.1, one GET per connection, enough for the tests.

``python -m tests.support.tiny_asgi_server MODULE:APP PORT [--instrument]``; with
``--instrument`` the app is wrapped by ``otel_asgi_kit.instrument`` as the kit's message advises.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any


async def _serve_one(app: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target, _ = head[0].split(" ", 2)
    headers = [(k.strip().lower().encode(), v.strip().encode()) for k, v in (h.split(":", 1) for h in head[1:] if h)]
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": writer.get_extra_info("peername")[:2],
        "server": writer.get_extra_info("sockname")[:2],
    }
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.append(b"HTTP/1.1 %d X\r\n" % message["status"])
            out.extend(b"%s: %s\r\n" % (k, v) for k, v in message.get("headers", ()) if k.lower() != b"content-length")
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    finally:
        body = b"".join(out[-1:]) if len(out) > 1 else b""
        head_part = b"".join(out[:-1]) if len(out) > 1 else b"HTTP/1.1 500 X\r\n"
        writer.write(head_part + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()


async def main(spec: str, port: int, instrument: bool) -> None:
    module, _, name = spec.partition(":")
    app = getattr(importlib.import_module(module), name)
    if instrument:
        import otel_asgi_kit

        app = otel_asgi_kit.instrument(app)
    server = await asyncio.start_server(lambda r, w: _serve_one(app, r, w), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), "--instrument" in sys.argv[3:]))
