"""The main job, locally and without Docker: an example app under the kit, traffic, telemetry.

    make demo            (DEMO_SECONDS=0 to stop right after the traffic)

Starts `opentelemetry-instrument uvicorn examples.starlette_app:app`, sends a
little traffic, and shows what the kit produced: JSON log lines with trace ids
on this terminal, the trace id in every response header, and the RED metrics
scraped from the admin port, and the live dashboard's URL: while the demo
waits, light traffic keeps its charts moving. Traces and logs go over OTLP to
localhost:4318 exactly as in a real run; with no collector there they wait in
the kit's spool and the demo says how to send them to one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP_PORT = int(os.environ.get("DEMO_PORT", "8000"))
ADMIN_PORT = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
SECONDS = float(os.environ.get("DEMO_SECONDS", "30"))


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def traffic(base: str, until: float) -> None:
    """A few requests a second, some slow or failing, so the dashboard has something to draw."""
    paths = ["/items/1", "/items/2", "/v1/items/3", "/items/4", "/nope", "/fail"]
    i = 0
    while time.monotonic() < until:
        try:
            get(base + paths[i % len(paths)])
        except OSError:  # the app went away (Ctrl-C reaches it too): stop quietly
            return
        i += 1
        time.sleep(0.2)


def main() -> int:
    for port in (APP_PORT, ADMIN_PORT):
        if listening(port):
            print(f"demo: port {port} is taken; set DEMO_PORT / OTEL_EXPORTER_PROMETHEUS_PORT", file=sys.stderr)
            return 1
    env = {**os.environ, "OTEL_SERVICE_NAME": os.environ.get("OTEL_SERVICE_NAME", "shop")}
    env["OTEL_EXPORTER_PROMETHEUS_PORT"] = str(ADMIN_PORT)
    collector = listening(4318) or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    cmd = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "uvicorn"),
        "examples.starlette_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(APP_PORT),
    ]
    print("demo: $ OTEL_SERVICE_NAME=shop " + " ".join(Path(c).name if i < 2 else c for i, c in enumerate(cmd)))
    app = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not listening(APP_PORT):
            if app.poll() is not None or time.monotonic() > deadline:
                print("demo: the app did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        base = f"http://127.0.0.1:{APP_PORT}"
        for path in ["/items/1", "/items/2", "/v1/items/3", "/nope", "/fail", "/healthz"]:
            status, headers, _ = get(base + path)
            time.sleep(0.05)
            print(f"demo: GET {path} -> {status}  traceresponse: {headers.get('traceresponse', '-')}", flush=True)
        _, _, metrics = get(f"http://127.0.0.1:{ADMIN_PORT}/metrics")
        print(f"demo: RED metrics on http://127.0.0.1:{ADMIN_PORT}/metrics (request counts by route):")
        for line in metrics.splitlines():
            if line.startswith("http_server_request_duration_seconds_count"):
                print("   ", line)
        if not collector:
            print(
                "demo: no collector on localhost:4318: traces and logs wait in the kit's spool (one stderr line "
                "said so); start one (docker compose up collector) or set OTEL_EXPORTER_OTLP_ENDPOINT to send them"
            )
        if SECONDS > 0:
            print(f"demo: live dashboard (rate, errors, latency per route): http://127.0.0.1:{ADMIN_PORT}/kit/")
            print(
                f"demo: recent, slowest and failed requests with their spans and log lines: "
                f"http://127.0.0.1:{ADMIN_PORT}/kit/traces"
            )
            print(f"demo: app on {base}, metrics on :{ADMIN_PORT}; stopping in {SECONDS:.0f}s (Ctrl-C to stop now)")
            traffic(base, time.monotonic() + SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGINT)
            try:
                app.wait(15)
            except subprocess.TimeoutExpired:
                app.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
