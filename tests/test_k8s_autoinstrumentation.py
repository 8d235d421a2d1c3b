"""The kit injected the OpenTelemetry Operator's way (copied tree + PYTHONPATH, no opentelemetry-instrument) works."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.infra import autoinstrumentation, processes, services
from tests.support.otlp_receiver import OtlpReceiver, wait_for

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]  # a cold cache pip-installs two trees

OVERLAY = services.REPO_ROOT / "deploy" / "k8s" / "overlays" / "otel-operator"


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A pod's view after injection: the init container's copy of the image tree and the app container's env."""
    mount = tmp_path_factory.mktemp("otel-auto-instrumentation-python")
    # The init container's exact command.
    subprocess.run(["cp", "-r", f"{autoinstrumentation.kit_tree()}/.", str(mount)], check=True, timeout=120)
    instrumentation = yaml.safe_load((OVERLAY / "instrumentation.yaml").read_text())["spec"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHON"))}
    # What the operator sets from the Instrumentation and its defaults, python.env first.
    env.update({e["name"]: e["value"] for e in instrumentation["python"]["env"]})
    env.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    env.setdefault("OTEL_TRACES_EXPORTER", "otlp")
    env.setdefault("OTEL_LOGS_EXPORTER", "otlp")
    env.update(
        OTEL_SERVICE_NAME="shop",
        OTEL_PROPAGATORS=",".join(instrumentation["propagators"]),
        OTEL_TRACES_SAMPLER=instrumentation["sampler"]["type"],
        PYTHONPATH=f"{mount / autoinstrumentation.MOUNT_PATH_PREFIX}:{autoinstrumentation.app_tree()}:{mount}",
        # Tests bind loopback only; in the pod the Instrumentation's 0.0.0.0 applies.
        OTEL_EXPORTER_PROMETHEUS_HOST=services.HOST,
        OTEL_EXPORTER_PROMETHEUS_PORT=str(services.free_port()),
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    yield mount, env


def _python() -> str:
    """The interpreter this virtualenv was made from: none of our site-packages, only the trees on PYTHONPATH."""
    # sys._base_executable names the venv's own python on 3.10; base_prefix is right on every version.
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert base.is_file(), f"no base interpreter at {base}"
    return str(base)


def test_the_injected_tree_provides_the_kit(pod: tuple[Path, dict[str, str]]) -> None:
    """The operator's PYTHONPATH makes Python import the kit from the copied tree."""
    mount, env = pod
    probe = "import otel_asgi_kit, uvicorn; print(otel_asgi_kit.__file__); print(uvicorn.__file__)"
    result = subprocess.run([_python(), "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True)
    kit, server = map(Path, result.stdout.split())
    assert kit.is_relative_to(mount)
    assert server.is_relative_to(autoinstrumentation.app_tree())  # the app image's packages, not this venv


def test_plain_uvicorn_is_instrumented_by_sitecustomize(pod: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Started as the overlay starts it (plain uvicorn), the app has the kit: admin port, RED metrics, OTLP spans."""
    _, env = pod
    port = services.free_port()
    admin = f"http://{services.HOST}:{env['OTEL_EXPORTER_PROMETHEUS_PORT']}"
    command = [_python(), "-m", "uvicorn", "examples.starlette_app:app", "--host", services.HOST, "--port", str(port)]
    log_file = tmp_path / "app.log"
    with OtlpReceiver() as receiver:
        env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        process = processes.start(command, log_file, env, services.REPO_ROOT)
        try:
            processes.wait_until(f"{admin}/healthz", process, log_file, "injected app's admin port", 60)
            # The admin port opens at configure(), before uvicorn binds the app's port: wait for that too.
            processes.wait_until(f"http://{services.HOST}:{port}/healthz", process, log_file, "injected app", 60)
            assert httpx.get(f"http://{services.HOST}:{port}/items/7", timeout=10).status_code == 200
            scrape = httpx.get(f"{admin}/metrics", timeout=10).text
            assert "http_server_request_duration_seconds_count{" in scrape
            assert 'http_route="/items/{item_id}"' in scrape
            spans = wait_for(lambda: [s for s in receiver.spans() if s.kind == 2])
            assert spans[0].name == "GET /items/{item_id}"
            assert spans[0].resource["service.name"] == "shop"
        finally:
            processes.stop(process)
