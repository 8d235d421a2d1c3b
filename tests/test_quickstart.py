"""The README's install and quickstart commands, run as written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import BIN, ROOT, kit_env

pytestmark = pytest.mark.server
README = (ROOT / "README.md").read_text()


def _block(heading: str, index: int = 0) -> list[str]:
    """Command lines of the ``index``-th bash block under ``heading`` (comments dropped)."""
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", index + 1)[index + 1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.strip().splitlines() if line.strip()]


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    """The quickstart command serves on :8000 with the trace header, a JSON log line of that trace and the
    request counted on :9464 — with no collector anywhere — and Ctrl-C ends it within a second."""
    (command,) = _block("## Quickstart")
    env = {**kit_env(None), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    out = tmp_path / "stdout.log"
    with open(out, "wb") as stdout:
        process = subprocess.Popen(
            ["bash", "-c", f"exec env {command}"], cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get("http://localhost:8000/items/1", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert response is not None and response.status_code == 200, out.read_text()
        trace_id = response.headers["traceresponse"].split("-")[1]
        time.sleep(1.5)  # one metrics snapshot
        metrics = httpx.get("http://localhost:9464/metrics").text
        assert 'http_route="/items/{item_id}"' in metrics
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(10)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("trace.id") == trace_id and "looking up item 1" in line["message"] for line in lines)
    assert elapsed < 1.0, f"Ctrl-C took {elapsed:.2f}s"


@pytest.mark.timeout(600)
def test_install_command_installs_the_kit(tmp_path: Path) -> None:
    """`pip install .`, as the README writes it, installs a kit whose launcher and doctor work."""
    (command,) = _block("## Install")
    assert command == "pip install ."
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_QUIET": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, check=True, timeout=540)
    version = subprocess.run(
        [str(venv / "bin" / "otel-asgi-kit"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("otel-asgi-kit ")
    assert (venv / "bin" / "opentelemetry-instrument").exists()
