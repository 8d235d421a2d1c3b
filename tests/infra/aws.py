"""The CloudWatch collector build and moto's AWS API emulator, as child processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.infra import processes
from tests.infra.services import HOST, REPO_ROOT, Collector, ServiceUnavailable, ensure_collector, free_port

CLOUDWATCH_MANIFEST = REPO_ROOT / "collector" / "cloudwatch" / "builder-config.yaml"
CLOUDWATCH_CONFIG = REPO_ROOT / "collector" / "cloudwatch" / "otel-collector-cloudwatch.yaml"
REGION = "us-east-1"
# moto accepts any credentials; the AWS SDK in the collector needs some.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}


@dataclass(frozen=True)
class Moto:
    endpoint: str
    log_file: Path


def ensure_cloudwatch_collector() -> Path:
    """Build (or reuse) otelcol-kit-cloudwatch from collector/cloudwatch/builder-config.yaml."""
    return ensure_collector(CLOUDWATCH_MANIFEST)


def _moto_server() -> list[str]:
    found = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not os.access(found, os.X_OK):
        raise ServiceUnavailable("moto_server not found; install the test extra (`moto[server]`)")
    return [found]


@contextmanager
def run_moto(startup_timeout: float = 60.0) -> Iterator[Moto]:
    """moto's server mode: CloudWatch Logs and X-Ray (among others) on one local port."""
    port = free_port()
    with processes.workdir("otel-kit-moto-") as work:
        log_file = work / "moto.out"
        endpoint = f"http://{HOST}:{port}"
        node = processes.Restartable(
            "moto",
            [*_moto_server(), "-H", HOST, "-p", str(port)],
            log_file,
            {**os.environ, **FAKE_CREDENTIALS},
            work,
            f"{endpoint}/moto-api/",
            startup_timeout,
        )
        try:
            node.start()
            yield Moto(endpoint=endpoint, log_file=log_file)
        finally:
            node.stop()


@contextmanager
def run_cloudwatch_collector(moto: Moto, env: Mapping[str, str] | None = None) -> Iterator[Collector]:
    """otelcol-kit-cloudwatch with collector/cloudwatch/otel-collector-cloudwatch.yaml, AWS calls to ``moto``."""
    binary = ensure_cloudwatch_collector()
    ports = {key: free_port() for key in ("GRPC", "HTTP", "HEALTH", "TELEMETRY")}
    variables = {
        **FAKE_CREDENTIALS,
        "OTELCOL_BIND_HOST": HOST,
        "OTELCOL_OTLP_GRPC_PORT": str(ports["GRPC"]),
        "OTELCOL_OTLP_HTTP_PORT": str(ports["HTTP"]),
        "OTELCOL_HEALTH_PORT": str(ports["HEALTH"]),
        "OTELCOL_TELEMETRY_PORT": str(ports["TELEMETRY"]),
        "OTELCOL_AWS_ENDPOINT_LOGS": moto.endpoint,
        "OTELCOL_AWS_ENDPOINT_XRAY": moto.endpoint,
        **(env or {}),
    }
    with processes.workdir("otel-kit-cw-collector-") as work:
        log_file = work / "collector.out"
        health_url = f"http://{HOST}:{ports['HEALTH']}/"
        node = processes.Restartable(
            "cloudwatch collector",
            [str(binary), "--config", str(CLOUDWATCH_CONFIG)],
            log_file,
            {**os.environ, **variables},
            work,
            health_url,
            60.0,
        )
        try:
            node.start()
            yield Collector(
                otlp_http_url=f"http://{HOST}:{ports['HTTP']}",
                otlp_grpc_endpoint=f"{HOST}:{ports['GRPC']}",
                health_url=health_url,
                prometheus_target="",
                telemetry_target=f"{HOST}:{ports['TELEMETRY']}",
                log_file=log_file,
                node=node,
            )
        finally:
            node.stop()
