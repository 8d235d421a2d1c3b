"""The load generator: wrk (``-t1``, with ``wrk_report.lua``) or ``loadgen.py``, pinned to the client core."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from harness import BENCH, CLIENT_CORE, pinned


@dataclass(frozen=True)
class Load:
    requests: int
    duration_s: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    errors: int
    status_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def find_wrk(install: bool) -> str | None:
    """wrk from PATH; as root with apt-get, Debian's package is installed once when missing."""
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    for cmd in (install_cmd, ["apt-get", "update", "-qq"], install_cmd):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


class LoadGenerator:
    """wrk (``-t1``) with ``wrk_report.lua``, or ``loadgen.py`` when wrk cannot be had; pinned to the client core."""

    def __init__(self, wrk: str | None, python: str, connections: int) -> None:
        self.wrk = wrk
        self.python = python
        self.connections = connections
        self.tool = "wrk" if wrk else "python (loadgen.py)"

    def run(self, url: str, duration_s: float) -> Load:
        if self.wrk:
            cmd = [
                self.wrk,
                "-t1",
                f"-c{self.connections}",
                f"-d{max(1, round(duration_s))}s",
                "--timeout",
                "10s",
                "-s",
                str(BENCH / "wrk_report.lua"),
                url,
            ]
        else:
            cmd = [
                self.python,
                str(BENCH / "loadgen.py"),
                url,
                "--connections",
                str(self.connections),
                "--duration",
                str(duration_s),
            ]
        out = subprocess.run(
            pinned(CLIENT_CORE, cmd), capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
        for line in out.stdout.splitlines():
            if line.startswith("LOAD_JSON "):
                data = json.loads(line[len("LOAD_JSON ") :])
                return Load(
                    requests=int(data["requests"]),
                    duration_s=data["duration_us"] / 1e6,
                    p50_us=data["p50_us"],
                    p90_us=data["p90_us"],
                    p99_us=data["p99_us"],
                    max_us=data["max_us"],
                    errors=int(data["errors"]),
                    status_errors=int(data["status_errors"]),
                )
        raise RuntimeError(f"load generator gave no result ({out.returncode}):\n{out.stdout}\n{out.stderr}")
