"""WebSocket: one span per connection, no span per message, connection and message metrics."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect

from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import kit_env, run_server

pytestmark = pytest.mark.server


@pytest.mark.parametrize("framework", ["fastapi", "starlette", "litestar", "quart", "nexios", "bare"])
def test_five_message_session_is_one_span(framework: str, receiver: OtlpReceiver) -> None:
    """A 5-message echo session: exactly one SERVER span `WS /ws/{room}` and the WebSocket metrics."""
    env = kit_env(receiver.endpoint, OTEL_METRICS_EXPORTER="prometheus,otlp")
    with run_server("uvicorn", f"examples.{framework}_app:app", env) as srv:
        url = srv.base_url.replace("http://", "ws://") + "/ws/lobby"
        with connect(url) as ws:
            trace_id = ws.response.headers["traceresponse"].split("-")[1]
            for i in range(5):
                ws.send(f"message {i}")
                assert ws.recv(timeout=5) == f"message {i}"
        spans = wait_for(lambda: [s for s in receiver.spans() if s.trace_id == trace_id])
        metrics = wait_for(
            lambda: (
                (text := httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text)
                and "websocket_server_connection_duration_seconds_count" in text
                and text
            ),
            timeout=10,
        )
    assert len(receiver.spans()) == 1, [s.name for s in receiver.spans()]
    (span,) = spans
    assert span.kind == 2
    assert span.name == ("WS" if framework == "bare" else "WS /ws/{room}")
    assert span.attributes["websocket.close.code"] in (1000, 1005)
    assert span.attributes["websocket.messages.received"] == 5
    assert span.attributes["websocket.messages.sent"] == 5
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line[:1] != "#"}

    def value(prefix: str, direction: str) -> float:
        return sum(v for k, v in lines.items() if k.startswith(prefix) and f'direction="{direction}"' in k)

    assert value("websocket_server_messages_total", "received") == 5
    assert value("websocket_server_messages_total", "sent") == 5
    assert value("websocket_server_message_bytes_total", "received") == 5 * len("message 0")
    assert sum(v for k, v in lines.items() if k.startswith("websocket_server_connection_duration_seconds_count")) == 1
    assert sum(v for k, v in lines.items() if k.startswith("websocket_server_active_connections")) == 0
