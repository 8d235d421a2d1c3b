"""Real backends for end-to-end tests: collector, Elasticsearch, Prometheus.

Each runs as a plain child process on 127.0.0.1 with free ports and is stopped
by its PID when the context manager exits. Binaries are built or downloaded
once into the cache dir (see ``cache_dir``); tests turn ``ServiceUnavailable``
into ``pytest.skip``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra import processes

CACHE_ENV = "OTEL_ASGI_KIT_CACHE"
"""Cache root; default ``~/.cache/otel-asgi-kit``. Shared with collector/build.sh."""

ES_VERSION = "8.19.21"
"""Newest 8.x integ-test-zip on Maven Central; 8.x runs on Java 17 (9.x needs 21)."""

ES_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_BUILD_SCRIPT = REPO_ROOT / "collector" / "build.sh"
COLLECTOR_CONFIG = REPO_ROOT / "collector" / "otel-collector-config.yaml"
GATEWAY_AGENT_CONFIG = REPO_ROOT / "collector" / "gateway" / "agent.yaml"
GATEWAY_OVERLAY = REPO_ROOT / "collector" / "gateway" / "gateway.yaml"
OTEL_INDEX_TEMPLATE = Path(__file__).with_name("otel_index_template.json")

HOST = "127.0.0.1"


class ServiceUnavailable(RuntimeError):
    """A backend cannot be built, downloaded or found on this machine."""


@dataclass(frozen=True)
class Elasticsearch:
    url: str
    http_port: int
    home: Path
    log_file: Path
    node: processes.Restartable | None = field(default=None, repr=False, compare=False)
    """Stop and start the node (same data directory and port) with ``node.stop()`` / ``node.start()``."""


@dataclass(frozen=True)
class Collector:
    otlp_http_url: str
    otlp_grpc_endpoint: str
    health_url: str
    prometheus_target: str
    """host:port of the prometheus exporter (what a scrape config lists)."""
    telemetry_target: str
    """host:port of the collector's own metrics."""
    log_file: Path
    node: processes.Restartable | None = field(default=None, repr=False, compare=False)
    """Stop and start this collector (same config and ports) with ``node.stop()`` / ``node.start()``."""


@dataclass(frozen=True)
class Prometheus:
    url: str
    port: int
    log_file: Path


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    default = Path(environ.get("HOME", str(Path.home()))) / ".cache" / "otel-asgi-kit"
    return Path(environ.get(CACHE_ENV) or default)


_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before in this test process.

    Racy by nature (the port is free now, not at bind time), but the window is milliseconds and
    every service fails loudly if it loses the race. The kernel may give the same port to two
    ``bind(0)`` calls in a row once the first socket is closed, so a test taking one port for the
    app and one for the admin server could get one port twice (CI saw the admin server answer
    ``/healthz`` where the app should have been); ports already given are never given again.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """Send JSON, return the decoded JSON answer; HTTP errors raise ``HTTPError``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


# --- binaries ---------------------------------------------------------------


def ensure_collector(manifest: Path | None = None) -> Path:
    """Build (or reuse) a collector with collector/build.sh (our manifest, or ``manifest``); return its path."""
    if shutil.which("go") is None:
        raise ServiceUnavailable("`go` is not on PATH; collector/build.sh needs Go >= 1.25")
    extra = [str(manifest)] if manifest is not None else []
    result = subprocess.run(
        ["bash", str(COLLECTOR_BUILD_SCRIPT), *extra],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=45 * 60,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        what = " ".join([str(COLLECTOR_BUILD_SCRIPT), *extra])
        raise ServiceUnavailable(f"{what} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return Path(lines[-1])


def ensure_elasticsearch(version: str = ES_VERSION) -> Path:
    """Download and unpack Elasticsearch's integ-test-zip once; return ES_HOME."""
    root = cache_dir() / "elasticsearch"
    home = root / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").is_file():
        return home
    if shutil.which("mvn") is None:
        raise ServiceUnavailable("`mvn` is not on PATH; it fetches Elasticsearch from Maven Central")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        command = [
            "mvn", "--batch-mode", "--quiet",
            f"-Dmaven.repo.local={cache_dir() / 'm2'}",
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={ES_ARTIFACT.replace(ES_VERSION, version)}",
            f"-DoutputDirectory={scratch}",
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900, check=False
        )
        archive = Path(scratch) / f"elasticsearch-{version}.zip"
        if result.returncode != 0 or not archive.is_file():
            raise ServiceUnavailable(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}")
        unpacked = Path(scratch) / "unpacked"
        _unzip_keeping_modes(archive, unpacked)
        # Rename into place last: a half-unpacked tree never looks usable, and
        # a concurrent worker that got there first simply wins.
        try:
            (unpacked / home.name).rename(home)
        except OSError:
            if not (home / "bin" / "elasticsearch").is_file():
                raise
    return home


def _unzip_keeping_modes(archive: Path, target: Path) -> None:
    # zipfile drops Unix permissions; bin/elasticsearch must stay executable.
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, target))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                path.chmod(mode & 0o777)


def ensure_prometheus() -> Path:
    """Locate the prometheus binary (CI installs Debian's ``prometheus`` package)."""
    found = shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ServiceUnavailable(
            "prometheus binary not found on PATH; install it with "
            "`apt-get install -y --no-install-recommends prometheus`"
        )
    return Path(found)


def _java_home(environ: Mapping[str, str] = os.environ) -> Path:
    # The integ-test-zip bundles no JDK and only honours ES_JAVA_HOME.
    for key in ("ES_JAVA_HOME", "JAVA_HOME"):
        if environ.get(key):
            return Path(environ[key])
    java = shutil.which("java")
    if java is None:
        raise ServiceUnavailable("no Java found (ES_JAVA_HOME, JAVA_HOME, PATH); Elasticsearch 8 needs Java >= 17")
    return Path(java).resolve().parent.parent


@contextmanager
def run_elasticsearch(*, heap: str = "512m", startup_timeout: float = 180.0) -> Iterator[Elasticsearch]:
    """Single-node Elasticsearch, security off, OTel data-stream template installed."""
    home = ensure_elasticsearch()
    port, transport_port = free_port(), free_port()
    with processes.workdir("otel-kit-es-") as work:
        config = work / "config"
        shutil.copytree(home / "config", config)
        # Only settings of the server and the zip's x-pack modules: an unknown
        # setting (e.g. from ingest-geoip or ml, not in this zip) stops the node.
        settings = {
            "cluster.name": "otel-asgi-kit-test",
            "node.name": "node-1",
            "path.data": str(work / "data"),
            "path.logs": str(work / "logs"),
            "network.host": HOST,
            "http.port": port,
            "transport.port": transport_port,
            "discovery.type": "single-node",
            # Disk watermarks would block writes on a nearly full CI disk.
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }
        if (home / "modules" / "x-pack-security").is_dir():
            settings["xpack.security.enabled"] = False
        (config / "elasticsearch.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
        (work / "tmp").mkdir()
        env = {
            **os.environ,
            "ES_PATH_CONF": str(config),
            "ES_TMPDIR": str(work / "tmp"),
            "ES_JAVA_HOME": str(_java_home()),
            "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
        }
        env.pop("JAVA_HOME", None)  # ES warns that it ignores it
        command = [str(home / "bin" / "elasticsearch")]
        if os.geteuid() == 0:
            # Elasticsearch refuses to run as root. In a user namespace it sees
            # uid 65534 while files stay root's, so the cache needs no chown.
            if shutil.which("unshare") is None:
                raise ServiceUnavailable("running as root needs `unshare` (util-linux) to start Elasticsearch")
            command = ["unshare", "--user", "--map-user=65534", "--map-group=65534", *command]
        log_file = work / "elasticsearch.out"
        url = f"http://{HOST}:{port}"
        node = processes.Restartable("Elasticsearch", command, log_file, env, work,
                           f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", startup_timeout)  # fmt: skip
        try:
            node.start()
            install_otel_index_template(url)
            yield Elasticsearch(url=url, http_port=port, home=home, log_file=log_file, node=node)
        finally:
            node.stop()


def install_otel_index_template(url: str) -> None:
    """Let the exporter's ``require_data_stream=true`` writes create data streams.

    A full distribution gets ``logs-*.otel-*`` / ``traces-*.otel-*`` templates
    from its otel-data and x-pack-stack modules; the integ-test-zip has neither,
    so without these every bulk item fails with index_not_found_exception.
    Component templates first: an index template naming a missing one is refused.
    """
    templates = json.loads(OTEL_INDEX_TEMPLATE.read_text())
    for name, body in templates["component_templates"].items():
        http_json("PUT", f"{url}/_component_template/{name}", body)
    for name, body in templates["index_templates"].items():
        http_json("PUT", f"{url}/_index_template/{name}", body)


@contextmanager
def run_collector(
    env: Mapping[str, str] | None = None,
    *,
    configs: Sequence[Path] = (COLLECTOR_CONFIG,),
    name: str = "collector",
    startup_timeout: float = 60.0,
) -> Iterator[Collector]:
    """otelcol-kit with ``configs`` (merged in order; default the one config); ``env`` overrides its variables."""
    binary = ensure_collector()
    ports = {key: free_port() for key in ("GRPC", "HTTP", "HEALTH", "PROMETHEUS", "TELEMETRY")}
    variables = {
        "OTELCOL_BIND_HOST": HOST,
        "OTELCOL_OTLP_GRPC_PORT": str(ports["GRPC"]),
        "OTELCOL_OTLP_HTTP_PORT": str(ports["HTTP"]),
        "OTELCOL_HEALTH_PORT": str(ports["HEALTH"]),
        "OTELCOL_PROMETHEUS_PORT": str(ports["PROMETHEUS"]),
        "OTELCOL_TELEMETRY_PORT": str(ports["TELEMETRY"]),
        **(env or {}),
    }
    command = [str(binary), *(arg for config in configs for arg in ("--config", str(config)))]
    with processes.workdir("otel-kit-collector-") as work:
        log_file = work / "collector.out"
        health_url = f"http://{HOST}:{variables['OTELCOL_HEALTH_PORT']}/"
        node = processes.Restartable(name, command, log_file, {**os.environ, **variables}, work, health_url,
                                     startup_timeout)  # fmt: skip
        try:
            node.start()
            yield Collector(
                otlp_http_url=f"http://{HOST}:{variables['OTELCOL_OTLP_HTTP_PORT']}",
                otlp_grpc_endpoint=f"{HOST}:{variables['OTELCOL_OTLP_GRPC_PORT']}",
                health_url=health_url,
                prometheus_target=f"{HOST}:{variables['OTELCOL_PROMETHEUS_PORT']}",
                telemetry_target=f"{HOST}:{variables['OTELCOL_TELEMETRY_PORT']}",
                log_file=log_file,
                node=node,
            )
        finally:
            node.stop()


@contextmanager
def run_prometheus(
    scrape_targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    startup_timeout: float = 60.0,
    flags: Sequence[str] = (),
) -> Iterator[Prometheus]:
    """Prometheus scraping ``host:port`` targets (path /metrics) into a throwaway TSDB.

    ``flags``: more command-line flags, e.g. ``--enable-feature=exemplar-storage``.
    """
    binary = ensure_prometheus()
    port = free_port()
    with processes.workdir("otel-kit-prometheus-") as work:
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "targets", "static_configs": [{"targets": list(scrape_targets)}]}],
        }
        # JSON is valid YAML, so no YAML library is needed here.
        (work / "prometheus.yml").write_text(json.dumps(config))
        command = [
            str(binary),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            *flags,
        ]
        log_file = work / "prometheus.out"
        process = processes.start(command, log_file, os.environ, work)
        try:
            url = f"http://{HOST}:{port}"
            processes.wait_until(f"{url}/-/ready", process, log_file, "Prometheus", startup_timeout)
            yield Prometheus(url=url, port=port, log_file=log_file)
        finally:
            processes.stop(process)
