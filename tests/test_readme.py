"""The README is the front door: its table and commands match the code."""

from __future__ import annotations

from pathlib import Path

from otel_asgi_kit.reference import BEGIN, END, env_table
from otel_asgi_kit.settings import VARS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_env_table_matches_the_settings_source() -> None:
    """The variable table between the markers is exactly what settings.VARS generates."""
    section = README.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == env_table()
    assert all(f"`{var.name}`" in section for var in VARS)


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run calls the test command the README gives, and the README gives two commands."""
    commands = README.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in commands.strip().splitlines()]
    assert lines == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci


def test_metric_names_in_the_readme_are_the_exposed_ones() -> None:
    """Every Prometheus name the README lists is one the kit's exposition produces."""
    import asyncio

    import httpx
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry, generate_latest

    from otel_asgi_kit.asgi.middleware import Instrumentation, KitMiddleware
    from otel_asgi_kit.settings import load_settings

    registry = CollectorRegistry()
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    inst = Instrumentation(load_settings({}), TracerProvider(), meter_provider)

    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    async def run() -> None:
        transport = httpx.ASGITransport(app=KitMiddleware(app, instrumentation=inst))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post("/x", content=b"abc")

    asyncio.run(run())
    exposed = generate_latest(registry).decode()
    table = README.split("## Metrics", 1)[1].split("##", 1)[0]
    names = [cell.strip("` ") for cell in (row.split("|")[1] for row in table.splitlines() if row.startswith("| `"))]
    assert len(names) == 4
    for name in names:
        assert f"\n{name}" in exposed or exposed.startswith(name), name
