"""The SDK shortcuts: each private name relied on exists in the installed releases, and a missing one
turns its shortcut off — the app still starts and serves, with the SDK's own path."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

from otel_asgi_kit.sdk import shortcuts
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import ROOT, kit_env


def _resolve(dotted: str) -> bool:
    """Whether ``module.path.Name.attr`` resolves (the longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_every_relied_on_name_exists_here() -> None:
    """The module-qualified private names listed in RELIED_ON exist in the installed SDK and exporters."""
    qualified = [
        name for names in shortcuts.RELIED_ON.values() for name in names if " " not in name and "," not in name
    ]
    assert len(qualified) >= 6
    assert [name for name in qualified if not _resolve(name)] == []


def test_every_shortcut_is_on_with_the_pinned_releases() -> None:
    """With the releases this kit pins, every shortcut applies (doctor prints the same list)."""
    found = shortcuts.status()
    assert set(found) == set(shortcuts.RELIED_ON)
    assert [name for name, on in found.items() if not on] == []


def test_a_renamed_private_name_keeps_the_app_serving(receiver: OtlpReceiver) -> None:
    """A process whose exporter package renamed a relied-on private helper configures, serves and exports
    its span through the stock encoder; doctor's list says the shortcut is off."""
    script = textwrap.dedent(
        """
        import asyncio, importlib, json
        # The stock exporters bind the helper when imported; then the name goes, as after a rename.
        importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        importlib.import_module("opentelemetry.exporter.otlp.proto.http._log_exporter")
        common = importlib.import_module("opentelemetry.exporter.otlp.proto.http._common")
        common._is_request_too_large_renamed = common._is_request_too_large
        del common._is_request_too_large

        import httpx
        import otel_asgi_kit
        from otel_asgi_kit.sdk import shortcuts

        kit = otel_asgi_kit.configure()

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"served"})

        async def main():
            transport = httpx.ASGITransport(app=otel_asgi_kit.instrument(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (await client.get("/x")).text

        body = asyncio.run(main())
        status = shortcuts.status()
        kit.shutdown()
        print(json.dumps({"body": body, "status": status}))
        """
    )
    env = kit_env(receiver.endpoint, OTEL_METRICS_EXPORTER="none", OTEL_ASGI_KIT_PAGES="false")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["body"] == "served"
    assert report["status"]["span encoding"] is False
    assert report["status"]["server span start"] is True
    spans = wait_for(lambda: receiver.spans())
    assert [s.name for s in spans] == ["GET"]


def test_a_reader_without_the_private_hook_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``_receive_metrics`` on the SDK's reader, the stock reader is used and one line says so."""
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    from otel_asgi_kit.sdk import periodic_reader

    monkeypatch.setattr(periodic_reader, "fast", lambda: False)
    monkeypatch.setattr(periodic_reader, "_warned", False)
    readers = [periodic_reader.make_periodic_reader(ConsoleMetricExporter()) for _ in range(2)]
    assert all(type(r) is PeriodicExportingMetricReader for r in readers)
    assert capsys.readouterr().err.count("_receive_metrics") == 1
    for reader in readers:
        reader.shutdown()
