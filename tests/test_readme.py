"""The README is the front door: small, its tables and commands match the code; the docs' tables too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from otel_asgi_kit.env_table import BEGIN, END, env_table
from otel_asgi_kit.settings import VARS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
METRICS = (ROOT / "docs" / "metrics.md").read_text()


def test_env_table_matches_the_settings_source() -> None:
    """The variable table in docs/configuration.md is exactly what the settings declarations generate."""
    section = CONFIGURATION.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == env_table()
    assert all(f"`{var.name}`" in section for var in VARS)


def test_readme_variables_exist_with_their_defaults() -> None:
    """Each variable the README's short table names is declared, with the default the README states."""
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in row.split("|")[1:-1]] for row in table.splitlines() if row.startswith("| `")]
    declared = {v.name: v for v in VARS}
    assert len(rows) >= 8
    for name, default, _ in rows:
        var = declared[name.strip("`")]
        if default.startswith("`") and name != "`OTEL_EXPORTER_OTLP_ENDPOINT`":
            assert default.strip("`") == var.default, name


def test_readme_is_a_five_minute_read() -> None:
    """The front door stays under 15 KB; the details live in docs/."""
    assert len(README.encode()) < 15_000
    for link in ("docs/configuration.md", "docs/architecture.md", "benchmarks/README.md", "docs/pipeline.md"):
        assert link in README and (ROOT / link).exists()


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls the test command the README gives, and the README gives two commands."""
    commands = README.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in commands.strip().splitlines()]
    assert lines == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci


def test_metric_names_in_the_readme_are_the_exposed_ones(tmp_path: Path) -> None:
    """Every http_/websocket_ name docs/metrics.md lists is one the kit's /metrics path produces."""
    import asyncio

    import httpx
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry, generate_latest

    from otel_asgi_kit.asgi.middleware import KitMiddleware
    from otel_asgi_kit.core.instrumentation import Instrumentation
    from otel_asgi_kit.export.health import ExportHealth
    from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
    from otel_asgi_kit.metrics.injector import MetricsInjector
    from otel_asgi_kit.metrics.prometheus import MergedPrometheusReader
    from otel_asgi_kit.metrics.websocket_aggregator import WebSocketMetrics
    from otel_asgi_kit.providers import build_meter_provider
    from otel_asgi_kit.settings import load_settings

    settings = load_settings({})
    resource = Resource({"service.name": "readme"})
    http = HttpServerMetrics(settings.duration_buckets)
    ws = WebSocketMetrics()
    meter_provider, own = build_meter_provider(
        settings, resource, tmp_path, ExportHealth(), MetricsInjector(resource, http.collect, ws.collect)
    )
    inst = Instrumentation(settings, TracerProvider(), meter_provider, http, ws)
    registry = CollectorRegistry()
    MergedPrometheusReader(tmp_path, resource, registry, own)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": message["text"]})
            await receive()
            return
        status = 401 if scope["path"] == "/private" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def websocket_session(wrapped: Any) -> None:
        incoming = [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hi"},
            {"type": "websocket.disconnect", "code": 1000},
        ]

        async def receive() -> dict:
            return incoming.pop(0)

        async def send(message: dict) -> None:
            pass

        await wrapped({"type": "websocket", "path": "/ws", "headers": []}, receive, send)

    async def run() -> None:
        wrapped = KitMiddleware(app, instrumentation=inst)
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post("/x", content=b"abc")
            await client.get("/private")
        await websocket_session(wrapped)

    asyncio.run(run())
    exposed = generate_latest(registry).decode()
    table = METRICS.split("# Metrics", 1)[1].split("\n##", 1)[0]
    cells = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    names = [name.strip("` ") for cell in cells for name in cell.split(",")]
    checked = [name for name in names if name.startswith(("http_", "websocket_"))]
    assert len(checked) == 9
    for name in checked:
        assert f"\n{name}" in exposed, name
