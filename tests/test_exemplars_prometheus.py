"""A real Prometheus stores the admin port's exemplars; each names a trace the OTLP receiver got."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.infra.services import run_prometheus
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import kit_env, run_server

pytestmark = pytest.mark.server

BUCKETS = "http_server_request_duration_seconds_bucket"


def _exemplars(prometheus_url: str) -> list[dict[str, Any]]:
    now = time.time()
    body = httpx.get(
        f"{prometheus_url}/api/v1/query_exemplars",
        params={"query": BUCKETS, "start": now - 600, "end": now + 60},
        timeout=10,
    ).json()
    assert body["status"] == "success", body
    return [e for series in body["data"] for e in series["exemplars"]]


def test_prometheus_returns_exemplars_of_exported_traces(receiver: OtlpReceiver) -> None:
    """2 uvicorn workers (the parent serves the admin port, so every exemplar went through a worker's snapshot
    file); Prometheus' query_exemplars gives trace and span ids of SERVER spans the OTLP receiver holds."""
    env = kit_env(
        receiver.endpoint,
        OTEL_LOGS_EXPORTER="none",
        OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL="200",
    )
    with run_server("uvicorn", "examples.starlette_app:app", env, workers=2) as srv:
        with run_prometheus(
            [f"127.0.0.1:{srv.admin_port}"], scrape_interval="1s", flags=["--enable-feature=exemplar-storage"]
        ) as prom:
            paths = [f"/items/{i}" for i in range(40)] + ["/fail"] * 5
            with ThreadPoolExecutor(4) as pool:
                codes = list(pool.map(lambda p: httpx.get(srv.base_url + p, timeout=10).status_code, paths))
            assert codes.count(200) == 40 and codes.count(500) == 5
            exemplars = wait_for(lambda: len(_exemplars(prom.url)) >= 2 and _exemplars(prom.url), timeout=30)
            spans = wait_for(lambda: len(receiver.spans()) >= 45 and receiver.spans(), timeout=20)
    assert exemplars, "Prometheus stored no exemplar"
    exported = {(s.trace_id, s.span_id) for s in spans if s.kind == 2}  # SPAN_KIND_SERVER
    for exemplar in exemplars:
        ids = (exemplar["labels"]["trace_id"], exemplar["labels"]["span_id"])
        assert ids in exported, f"{ids} was not exported"
