"""Redaction, client address from trusted proxies, and security events."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from ipaddress import ip_network
from typing import Any

import httpx
import pytest

from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.core.client_address import client_address
from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter
from otel_asgi_kit.redaction import DEFAULT_QUERY_PARAMS, AccessLogRedaction, QueryRedactor
from tests.conftest import make_telemetry

REDACTOR = QueryRedactor(DEFAULT_QUERY_PARAMS)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("token=abc&page=2", "token=REDACTED&page=2"),
        ("page=2&ACCESS_TOKEN=abc", "page=2&ACCESS_TOKEN=REDACTED"),
        ("X-Amz-Signature=f00&X-Amz-Date=1", "X-Amz-Signature=REDACTED&X-Amz-Date=REDACTED"),
        (
            "sig=1&signature=2&key=3&password=4&api_key=5",
            "sig=REDACTED&signature=REDACTED&key=REDACTED&password=REDACTED&api_key=REDACTED",
        ),
        ("q=tokenize&monkey=1", "q=tokenize&monkey=1"),
        ("my_refresh_token=x", "my_refresh_token=REDACTED"),
        ("plain", "plain"),
    ],
)
def test_query_values_are_redacted_by_name(query: str, expected: str) -> None:
    """Sensitive parameter values go, names and other parameters stay."""
    assert REDACTOR.redact(query) == expected


def test_query_list_is_extendable() -> None:
    """OTEL_ASGI_KIT_REDACT_QUERY_PARAMS adds names to the kit's list."""
    telemetry = make_telemetry({"OTEL_ASGI_KIT_REDACT_QUERY_PARAMS": "tenant,ticket_.*"})
    redactor = telemetry.instrumentation.query
    assert (
        redactor.redact("tenant=a&ticket_id=b&token=c&x=d") == "tenant=REDACTED&ticket_id=REDACTED&token=REDACTED&x=d"
    )


def test_access_log_url_is_redacted() -> None:
    """uvicorn's access record carries the redacted URL to every handler."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/a?token=hunter2&x=1", "1.1", 200),
        None,
    )
    AccessLogRedaction(REDACTOR).filter(record)
    assert "hunter2" not in record.getMessage()
    assert json.loads(EcsJsonFormatter("s").format(record))["url.original"] == "/a?token=REDACTED&x=1"


TRUSTED = (ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.9", [(b"x-forwarded-for", b"1.1.1.1")], "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", [(b"x-forwarded-for", b"1.1.1.1")], "1.1.1.1"),
        ("10.0.0.2", [(b"x-forwarded-for", b"6.6.6.6, 1.1.1.1, 10.0.0.3")], "1.1.1.1"),  # forged left part
        ("10.0.0.2", [(b"forwarded", b'for="[2001:db8::1]:443";proto=https')], "2001:db8::1"),
        ("10.0.0.2", [(b"forwarded", b"for=192.0.2.60:8080")], "192.0.2.60"),
        ("10.0.0.2", [(b"x-forwarded-for", b"not-an-ip")], None),
        ("10.0.0.2", [], "10.0.0.2"),
    ],
)
def test_client_address_trusts_only_configured_proxies(peer: str, headers: list, expected: str | None) -> None:
    """Forwarding headers count only from trusted peers, read right to left."""
    assert client_address(peer, headers, TRUSTED) == expected


def test_401_is_a_security_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 401 is counted by route and logged as an ECS authentication failure without the credential."""
    telemetry = make_telemetry({"OTEL_ASGI_KIT_TRUSTED_PROXIES": "127.0.0.1"})
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def admin(request: Any) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=401)

    app = KitMiddleware(Starlette(routes=[Route("/admin/{x}", admin)]), instrumentation=telemetry.instrumentation)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EcsJsonFormatter("shop"))
    logger = logging.getLogger("otel_asgi_kit.security")
    logger.addHandler(handler)
    try:

        async def run() -> None:
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.get(
                    "/admin/1", headers={"authorization": "Bearer hunter2", "x-forwarded-for": "198.51.100.7"}
                )

        asyncio.run(run())
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert event["event.category"] == "authentication" and event["event.outcome"] == "failure"
    assert event["http.route"] == "/admin/{x}" and event["http.response.status_code"] == 401
    assert event["client.address"] == "198.51.100.7"
    assert "trace.id" in event
    assert "hunter2" not in line
    (point,) = telemetry.points("http.server.auth.failures")
    assert point.value == 1 and point.attributes["http.route"] == "/admin/{x}"


def test_text_format_cannot_be_forged() -> None:
    """The plain-text format escapes CR, LF and ESC too."""
    from otel_asgi_kit.logs.ecs_json import TextFormatter

    record = logging.LogRecord("x", logging.INFO, "", 0, "%s", ("a\r\nFAKE\x1b[31m",), None)
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
