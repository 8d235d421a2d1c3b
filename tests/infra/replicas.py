"""App replicas on their own loopback addresses, a real nginx in front, Prometheus finding them by file SD.

The docker-compose stack runs the app as replicas that Prometheus finds by
DNS (``dns_sd_configs`` on the service name) behind nginx. Docker's DNS is
not here, so the tests give each replica its own address (127.0.0.2, .3, ...:
the whole 127/8 is loopback on Linux), with the same ports on each as in
compose, and Prometheus learns them from a file (``file_sd_configs``, the
same discovery machinery, with the target list written by the test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra import services

BIN = Path(sys.executable).parent


@dataclass
class Replica:
    host: str
    app_port: int
    admin_port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def target(self) -> str:
        return f"{self.host}:{self.admin_port}"


@contextmanager
def run_replicas(
    hosts: Sequence[str], app_port: int, admin_port: int, work: Path, *, timeout: float = 30.0
) -> Iterator[list[Replica]]:
    """``opentelemetry-instrument uvicorn examples.starlette_app:app`` on each host, admin port on the same address.

    All start at once (start-up is mostly imports), then each is waited for.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_SERVICE_NAME="shop",
        # No collector in these tests: metrics are pulled, traces and logs stay local.
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(admin_port),
        PYTHONUNBUFFERED="1",
    )
    started: list[Replica] = []
    try:
        for host in hosts:
            command = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "examples.starlette_app:app"]
            command += ["--host", host, "--port", str(app_port), "--no-access-log"]
            log_file = work / f"app-{host}.log"
            process = services._start(
                command, log_file, {**env, "OTEL_EXPORTER_PROMETHEUS_HOST": host}, services.REPO_ROOT
            )
            started.append(Replica(host, app_port, admin_port, process, log_file))
        for r in started:
            services._wait_until(f"http://{r.target}/healthz", r.process, r.log_file, f"app on {r.host}", timeout)
        yield started
    finally:
        for r in started:
            services._stop(r.process)


class Nginx:
    """Debian's nginx as a round-robin reverse proxy; ``set_upstreams`` reloads it (SIGHUP), as an operator would."""

    def __init__(self, binary: Path, work: Path, port: int) -> None:
        self.binary, self.work, self.port = binary, work, port
        self.config = work / "nginx.conf"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{services.HOST}:{self.port}"

    def write_config(self, upstreams: Sequence[str]) -> None:
        servers = "".join(f"    server {u};\n" for u in upstreams)
        temp = "".join(
            f"  {k}_temp_path {self.work / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # One worker: round-robin state is per worker, and one makes the split exact.
        text = (
            f"worker_processes 1;\npid {self.work / 'nginx.pid'};\nerror_log stderr warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n  access_log off;\n{temp}"
            f"  upstream app {{\n{servers}  }}\n"
            f"  server {{\n    listen {services.HOST}:{self.port};\n"
            "    location / { proxy_pass http://app; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }\n"
            # Readiness of nginx itself, so waiting for it sends no request to the apps.
            "    location = /nginx-ready { return 204; }\n"
            "  }\n}\n"
        )
        self.config.write_text(text)

    def start(self, upstreams: Sequence[str]) -> None:
        self.write_config(upstreams)
        self._run()

    def start_compose_config(self, config: Path, app: str) -> None:
        """Run compose's nginx.conf, with the service address ``app:8000`` and the listen port made local."""
        text = config.read_text()
        for old, new in (("http://app:8000", f"http://{app}"), ("listen 8000;", f"listen {self.url[7:]};")):
            assert old in text, f"{config} no longer has {old!r}"
            text = text.replace(old, new)
        text = re.sub(r"^pid .*;$", f"pid {self.work / 'nginx.pid'};", text, flags=re.M)
        self.config.write_text(text)
        self._run()

    def _run(self) -> None:
        command = [str(self.binary), "-p", str(self.work), "-c", str(self.config), "-e", "stderr", "-g", "daemon off;"]
        self.process = services._start(command, self.work / "nginx.out", os.environ, self.work)
        self._wait_listening()

    def set_upstreams(self, upstreams: Sequence[str]) -> None:
        assert self.process is not None
        self.write_config(upstreams)
        check = subprocess.run(
            [str(self.binary), "-t", "-p", str(self.work), "-c", str(self.config), "-e", "stderr"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise services.ServiceFailed(f"nginx -t: {check.stderr}")
        os.kill(self.process.pid, signal.SIGHUP)
        # The reload is done when the old worker has gone and a new one answers.
        time.sleep(0.5)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 15.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise services.ServiceFailed(f"nginx exited: {(self.work / 'nginx.out').read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.url}/nginx-ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise services.ServiceFailed(f"nginx not answering on {self.url}")

    def stop(self) -> None:
        if self.process is not None:
            services._stop(self.process)


def nginx_binary() -> Path:
    """Debian's nginx (Makefile `services` installs it); a missing one fails the test."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise services.ServiceUnavailable(
            "nginx is not installed (apt-get install nginx; see the Makefile's services target)"
        )
    return Path(found)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    targets_file: Path

    def set_targets(self, targets: Sequence[str], labels: dict[str, str]) -> None:
        """Write the file SD target list atomically (Prometheus watches the file and re-reads it)."""
        temp = self.targets_file.with_suffix(".tmp")
        temp.write_text(json.dumps([{"targets": list(targets), "labels": labels}]))
        temp.replace(self.targets_file)

    def api(self, path: str) -> Any:
        answer = services.http_json("GET", f"{self.url}/api/v1/{path}")
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = services.http_json("GET", url)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


@contextmanager
def run_prometheus_file_sd(work: Path, job: str, *, startup_timeout: float = 60.0) -> Iterator[Prometheus]:
    """Prometheus with one job whose targets come from ``file_sd_configs``, scraping every second."""
    binary = services.ensure_prometheus()
    port = services.free_port()
    targets_file = work / "targets.json"
    targets_file.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "file_sd_configs": [{"files": [str(work / "*.json")], "refresh_interval": "1s"}]}
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))
    command = [
        str(binary),
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address={services.HOST}:{port}",
    ]
    log_file = work / "prometheus.out"
    process = services._start(command, log_file, os.environ, work)
    try:
        url = f"http://{services.HOST}:{port}"
        services._wait_until(f"{url}/-/ready", process, log_file, "Prometheus", startup_timeout)
        yield Prometheus(url, process, targets_file)
    finally:
        services._stop(process)
