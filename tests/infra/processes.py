"""Child processes for the test backends: started in their own session, stopped by PID, restartable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


class ServiceFailed(RuntimeError):
    """A backend was started but did not become healthy in time."""


class Restartable:
    """A backend process that a test may stop and start again, same command, same data, same ports."""

    def __init__(self, name: str, command: Sequence[str], log_file: Path, env: Mapping[str, str], cwd: Path,
                 health_url: str, startup_timeout: float) -> None:  # fmt: skip
        self.name, self.command, self.log_file, self.env, self.cwd = name, list(command), log_file, env, cwd
        self.health_url, self.startup_timeout = health_url, startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until its health URL answers 200."""
        self.process = start(self.command, self.log_file, self.env, self.cwd)
        wait_until(self.health_url, self.process, self.log_file, self.name, self.startup_timeout)

    def stop(self) -> None:
        """SIGTERM to the process group (SIGKILL after 30 s), as a deploy or a node restart would."""
        if self.process is not None:
            stop(self.process)


def start(command: Sequence[str], log_file: Path, env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    # Appending: a restarted process keeps the earlier run's output above its own.
    with log_file.open("ab") as log:
        # Own session: the group id is our child's PID, so stopping signals
        # exactly the processes we started (ES's launcher forks the server JVM).
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def wait_until(healthy: str, process: subprocess.Popen[bytes], log_file: Path, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceFailed(f"{name} exited with {process.returncode}:\n{tail(log_file)}")
        try:
            with urllib.request.urlopen(healthy, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServiceFailed(f"{name} not healthy at {healthy} after {timeout:.0f}s:\n{tail(log_file)}")


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
