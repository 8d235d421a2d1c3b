"""Replicas behind a round-robin nginx, found by Prometheus service discovery: sums exact, a new one found live."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.infra import replicas, services

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

ROUTE = "/items/{item_id}"
COUNT = f'http_server_request_duration_seconds_count{{job="app", http_route="{ROUTE}"}}'
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
FOURTH = "127.0.0.5"


def _eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns a truthy value; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"{what}: still {last!r} after {timeout:.0f}s")


def _per_instance(prometheus: replicas.Prometheus) -> dict[str, int]:
    return {r["metric"]["instance"]: int(float(r["value"][1])) for r in prometheus.query(COUNT)}


def _send(proxy: replicas.Nginx, n: int, first_id: int) -> None:
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for i in range(n):
            assert client.get(f"/items/{first_id + i}").status_code == 200


@pytest.fixture
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kit-replicas-") as path:
        yield Path(path)


def test_prometheus_discovers_replicas_and_sums_exactly(work: Path) -> None:
    """sum() over discovered replicas equals the requests sent through nginx; a 4th is found with no restart."""
    app_port, admin_port = services.free_port(), services.free_port()
    with ExitStack() as stack:
        prometheus = stack.enter_context(replicas.run_prometheus_file_sd(work, "app"))
        # Same ports on every replica, as in compose: only the address differs.
        started = stack.enter_context(replicas.run_replicas(HOSTS, app_port, admin_port, work))
        proxy = replicas.Nginx(replicas.nginx_binary(), work, services.free_port())
        stack.callback(proxy.stop)
        proxy.start([f"{r.host}:{r.app_port}" for r in started])
        prometheus.set_targets([r.target for r in started], {"service": "shop"})
        config_loaded_at = prometheus.api("status/runtimeinfo")["lastConfigTime"]

        _eventually(lambda: len(prometheus.query('up{job="app"} == 1')) == 3, "three replicas up")
        _send(proxy, 60, first_id=0)
        per_instance = _eventually(
            lambda: (found := _per_instance(prometheus)) and sum(found.values()) == 60 and found, "sum of 60"
        )
        # nginx's round-robin (one worker) splits them exactly.
        assert per_instance == {r.target: 20 for r in started}
        total = prometheus.query(f"sum({COUNT})")
        assert float(total[0]["value"][1]) == 60

        (fourth,) = stack.enter_context(replicas.run_replicas([FOURTH], app_port, admin_port, work))
        prometheus.set_targets([r.target for r in [*started, fourth]], {"service": "shop"})
        proxy.set_upstreams([f"{r.host}:{r.app_port}" for r in [*started, fourth]])
        _eventually(lambda: len(prometheus.query('up{job="app"} == 1')) == 4, "four replicas up")
        _send(proxy, 40, first_id=100)
        per_instance = _eventually(
            lambda: (found := _per_instance(prometheus)) and sum(found.values()) == 100 and found, "sum of 100"
        )
        assert per_instance[fourth.target] == 10
        assert float(prometheus.query(f"sum({COUNT})")[0]["value"][1]) == 100
        # Found by file discovery, not by a restart or a config reload of Prometheus.
        assert prometheus.process.poll() is None
        assert prometheus.api("status/runtimeinfo")["lastConfigTime"] == config_loaded_at
        active = prometheus.api("targets?state=active")["activeTargets"]
        assert sorted(t["discoveredLabels"]["__address__"] for t in active) == sorted(
            r.target for r in [*started, fourth]
        )
        assert {t["discoveredLabels"]["__meta_filepath"] for t in active} == {str(prometheus.targets_file)}
