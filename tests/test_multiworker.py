"""Exact Prometheus totals under several workers, checked by scrape and by a real Prometheus."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.infra.services import run_prometheus
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import kit_env, run_server

pytestmark = pytest.mark.server

COUNT = "http_server_request_duration_seconds_count"


def _env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    settings = {
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_ASGI_KIT_METRICS_SNAPSHOT_INTERVAL": "200",
        **extra,
    }
    return kit_env(receiver.endpoint, **settings)


def _send(base_url: str, paths: list[str], threads: int = 6) -> list[int]:
    """One connection per request so the server's workers all get a share."""

    def one(path: str) -> int:
        for _ in range(20):  # a recycled worker may drop a connection: retry
            try:
                return httpx.get(base_url + path, timeout=10).status_code
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"{path} never answered")

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, paths))


def _scrape(admin_port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).text


def _total(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(COUNT + "{"))


def _query(prometheus_url: str, expr: str) -> float | None:
    body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn", "hypercorn", "granian"])
def test_one_scrape_sums_every_worker(server: str, receiver: OtlpReceiver) -> None:
    """3 workers, 300 requests: one scrape of the admin port and Prometheus itself both say 300."""
    with run_server(server, "examples.starlette_app:app", _env(receiver), workers=3) as srv:
        with run_prometheus([f"127.0.0.1:{srv.admin_port}"], scrape_interval="1s") as prom:
            codes = _send(srv.base_url, [f"/items/{i}" for i in range(300)])
            assert codes == [200] * 300
            time.sleep(0.5)  # one snapshot interval (200 ms) and some
            assert _total(_scrape(srv.admin_port)) == 300
            seen = wait_for(lambda: _query(prom.url, f"sum({COUNT})") == 300, timeout=20)
            assert seen, _query(prom.url, f"sum({COUNT})")
            p50 = _query(
                prom.url,
                "histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket))",
            )
            assert p50 is not None and 0 < p50 < 1
        spans = wait_for(lambda: len(receiver.spans()) >= 300 and receiver.spans(), timeout=20)
        otlp_instances = {
            rm.resource.attributes[i].value.string_value
            for request in receiver.received.metrics
            for rm in request.resource_metrics
            for i, kv in enumerate(rm.resource.attributes)
            if kv.key == "service.instance.id"
        }
    instances = {s.resource["service.instance.id"] for s in spans}
    assert len(spans) == 300
    assert len(instances) >= 2, "requests should have reached several workers, each its own instance"
    assert instances <= otlp_instances  # OTLP metrics keep working, one instance id per worker


def test_recycled_workers_never_make_counters_go_backwards(receiver: OtlpReceiver) -> None:
    """gunicorn max_requests recycles workers mid-load; every scrape is >= the last, the end is exact."""
    env = _env(receiver, OTEL_TRACES_EXPORTER="none")
    with run_server(
        "gunicorn",
        "examples.starlette_app:app",
        env,
        workers=3,
        extra_args=("--max-requests", "40", "--max-requests-jitter", "0"),
    ) as srv:
        totals = []
        for batch in range(6):
            _send(srv.base_url, [f"/items/{batch}-{i}" for i in range(50)])
            totals.append(_total(_scrape(srv.admin_port)))
        time.sleep(0.5)
        totals.append(_total(_scrape(srv.admin_port)))
    assert totals == sorted(totals), totals
    assert totals[-1] == 300


def test_random_flood_adds_no_series(receiver: OtlpReceiver) -> None:
    """10,000 requests with random paths, hosts and made-up methods leave the series count unchanged."""
    env = _env(receiver, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="prometheus")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        with httpx.Client(base_url=srv.base_url) as client:
            client.get("/items/1")
            client.get("/not-a-route")
            client.post("/not-a-route")
            client.request("PROPFIND", "/not-a-route")  # a real method, but not one semconv knows: _OTHER
            before = [line for line in _scrape(srv.admin_port).splitlines() if line.startswith(COUNT + "{")]
            rng = random.Random(42)
            traced = 0
            for _ in range(10_000):
                # Made-up methods are refused by uvicorn's parser (400, never reaching the
                # app); the ones that reach the app carry a trace header and are counted.
                response = client.request(
                    rng.choice(["GET", "POST", "BREW", "PROPFIND", "X-" + str(rng.getrandbits(16))]),
                    f"/{rng.getrandbits(64):x}/{rng.getrandbits(32)}",
                    headers={"host": f"h{rng.getrandbits(40)}.example", "user-agent": str(rng.random())},
                )
                traced += "traceresponse" in response.headers
        after = [line for line in _scrape(srv.admin_port).splitlines() if line.startswith(COUNT + "{")]
    assert len(before) == 4  # GET 200 by route; GET, POST and _OTHER 404 without one
    assert [line.rsplit(" ", 1)[0] for line in after] == [line.rsplit(" ", 1)[0] for line in before]
    assert traced > 5_000
    assert _total("\n".join(after)) == 4 + traced
