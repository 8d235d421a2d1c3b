"""Start a real server process (ASGI servers, aiohttp) under ``opentelemetry-instrument`` and stop it by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.infra.services import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# How long a test's gunicorn may take to stop its workers. It once covered a worker that lingered
# until the graceful timeout: a stop signal sent while the kit set the worker up reached the master's
# inherited handler and was lost (fixed: bootstrap._drop_supervisor_stop_handlers, tested in
# tests/test_shutdown.py). Kept as a bound: a stop in a test never takes gunicorn's default 30 s.
GUNICORN_GRACE = ("--graceful-timeout", "5")


def server_command(server: str, app: str, port: int, workers: int = 1) -> list[str]:
    if server == "uvicorn":
        cmd = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port)]
        return cmd + (["--workers", str(workers)] if workers > 1 else [])
    if server == "hypercorn":
        cmd = [str(BIN / "hypercorn"), app, "--bind", f"127.0.0.1:{port}"]
        return cmd + (["--workers", str(workers)] if workers > 1 else [])
    if server == "gunicorn":
        return [
            str(BIN / "gunicorn"),
            app,
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            *GUNICORN_GRACE,
        ]
    if server == "granian":
        cmd = [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
        return [*cmd, "--workers", str(workers), app]
    if server == "tiny":  # an ASGI server the kit does not know
        return [str(BIN / "python"), "-m", "tests.support.tiny_asgi_server", app, str(port)]
    if server == "daphne":
        if workers > 1:
            raise ValueError("daphne runs one process")
        return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), app]
    if server == "aiohttp":  # web.run_app (or an AppRunner) in the app's own script: ``app`` is its path
        return [sys.executable, app, str(port)]
    if server == "aiohttp-module":  # python -m aiohttp.web module:factory
        return [sys.executable, "-m", "aiohttp.web", "-H", "127.0.0.1", "-P", str(port), app]
    if server == "gunicorn-aiohttp":
        return [
            str(BIN / "gunicorn"),
            app,
            "-k",
            "aiohttp.GunicornWebWorker",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            *GUNICORN_GRACE,
        ]
    raise ValueError(server)


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    admin_port: int
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def kit_env(receiver_endpoint: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_SERVICE_NAME="shop",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_BLRP_SCHEDULE_DELAY="100",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        PYTHONUNBUFFERED="1",
    )
    if receiver_endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver_endpoint
    env.update(extra)
    return env


@contextmanager
def run_server(
    server: str,
    app: str,
    env: Mapping[str, str],
    *,
    workers: int = 1,
    launcher: bool = True,
    ready_path: str = "/healthz",
    startup_timeout: float = 30.0,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RunningServer]:
    port = free_port()
    admin_port = int(env.get("OTEL_EXPORTER_PROMETHEUS_PORT") or free_port())
    full_env = {**env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(admin_port)}
    cmd = [*server_command(server, app, port, workers), *extra_args]
    if launcher:
        cmd = [str(BIN / "opentelemetry-instrument"), *cmd]
    workdir = Path(tempfile.mkdtemp(prefix="kit-server-"))
    out, err = workdir / "stdout.log", workdir / "stderr.log"
    with open(out, "wb") as out_f, open(err, "wb") as err_f:
        process = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out_f, stderr=err_f, start_new_session=True)
    running = RunningServer(process, f"http://127.0.0.1:{port}", admin_port, out, err)
    try:
        _wait_ready(running, ready_path, startup_timeout)
        yield running
    finally:
        stop(process)


def _wait_ready(running: RunningServer, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{running.stdout()}\n{running.stderr()}")
        try:
            httpx.get(running.base_url + path, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s:\n{running.stdout()}\n{running.stderr()}")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal the process we started (by PID), then kill its group if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout)
