"""Real servers: a scrape Prometheus' linter accepts, only serving processes in it, clean shutdowns,
WebSocket message rates while the connection is open."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.infra import run_prometheus
from tests.support.servers import kit_env, run_server, stop

pytestmark = pytest.mark.server


def _kit_dirs(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if "otel-asgi-kit" in p.name)


def test_a_live_scrape_passes_promtool(tmp_path: Path) -> None:
    """`promtool check metrics` exits 0 on the admin port's /metrics, which also parses as exposition text."""
    with run_server("uvicorn", "examples.starlette_app:app", kit_env(None, TMPDIR=str(tmp_path))) as srv:
        for path in ("/items/1", "/nope", "/fail"):
            httpx.get(srv.base_url + path)
        time.sleep(1.5)  # one snapshot interval
        text = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
    assert "process_threads" in text and "process_open_fds" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "http_server_request_duration_seconds" in names


CASES = {
    "uvicorn-sigterm": ("uvicorn", 1, (), signal.SIGTERM, 1),
    "uvicorn-sigint": ("uvicorn", 1, (), signal.SIGINT, 1),
    "uvicorn-workers": ("uvicorn", 2, (), signal.SIGTERM, 2),
    "uvicorn-reload": ("uvicorn", 1, ("--reload", "--reload-dir", "examples"), signal.SIGTERM, 1),
    "gunicorn-workers": ("gunicorn", 2, (), signal.SIGTERM, 2),
}


@pytest.mark.parametrize("case", CASES)
def test_shutdown_is_clean_and_only_servers_report(case: str, tmp_path: Path) -> None:
    """Only the processes serving requests write a metric snapshot (no supervisor, no resource tracker);
    stopping prints no contained failure and leaves no otel-asgi-kit directory behind."""
    server, workers, extra, sig, writers = CASES[case]
    env = kit_env(None, TMPDIR=str(tmp_path))
    with run_server(server, "examples.starlette_app:app", env, workers=workers, extra_args=extra) as srv:
        for _ in range(10):
            httpx.get(srv.base_url + "/items/3")
        (snapshot_dir,) = [tmp_path / name for name in _kit_dirs(tmp_path)]
        deadline = time.monotonic() + 10
        while len(list(snapshot_dir.glob("*-*.json"))) < writers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # a helper process would have written its snapshot by now too
        snapshots = sorted(p.name for p in snapshot_dir.glob("*-*.json"))
        code = stop(srv.process, sig)
        stderr, stdout = srv.stderr(), srv.stdout()
    assert len(snapshots) == writers, snapshots
    assert code is not None
    assert "failed and was contained" not in stderr + stdout
    assert "Traceback" not in stderr
    assert _kit_dirs(tmp_path) == []


def test_websocket_message_rate_is_live(tmp_path: Path) -> None:
    """Prometheus sees rate(websocket_server_messages_total) above zero while the connection is open."""
    env = kit_env(None, TMPDIR=str(tmp_path), OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL="200")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        with run_prometheus([f"127.0.0.1:{srv.admin_port}"], scrape_interval="1s") as prom:
            url = srv.base_url.replace("http://", "ws://") + "/ws/lobby"
            stop_sending = threading.Event()
            with connect(url) as ws:

                def chatter() -> None:
                    while not stop_sending.is_set():
                        ws.send("ping")
                        ws.recv(timeout=5)
                        time.sleep(0.2)

                thread = threading.Thread(target=chatter, daemon=True)
                thread.start()
                query = 'sum(rate(websocket_server_messages_total{websocket_message_direction="received"}[5s]))'
                rate = 0.0
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and rate <= 0:
                    time.sleep(1)
                    answer = httpx.get(f"{prom.url}/api/v1/query", params={"query": query}).json()
                    result = answer["data"]["result"]
                    rate = float(result[0]["value"][1]) if result else 0.0
                open_connections = httpx.get(
                    f"{prom.url}/api/v1/query", params={"query": "sum(websocket_server_active_connections)"}
                ).json()["data"]["result"]
                stop_sending.set()
                thread.join(5)
    assert rate > 0
    assert float(open_connections[0]["value"][1]) == 1
