"""The collector gateway tier, run for real: two agents load-balancing by trace id onto two gateways.

Agents: collector/gateway/agent.yaml (loadbalancing exporter, static
resolver listing both gateways). Gateways: otel-collector-config.yaml with
the collector/gateway/gateway.yaml overlay (span_metrics, Elasticsearch,
each record stamped with its gateway). All four are the otelcol-kit binary
of our builder manifest; the gateways share the session's Elasticsearch.
Traces cross two services, each exporting through its own agent. Select
with ``-m e2e``.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from tests.e2e import kibana
from tests.e2e.conftest import skip_if_unavailable
from tests.e2e.traffic import Accepted, Traffic
from tests.infra import services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

GATEWAYS = ("gateway-a", "gateway-b")


@dataclass(frozen=True)
class Tier:
    agents: tuple[services.Collector, ...]
    gateways: dict[str, services.Collector]


@pytest.fixture(scope="module")
def tier(elasticsearch: services.Elasticsearch) -> Iterator[Tier]:
    with skip_if_unavailable(), ExitStack() as stack:
        gateways = {
            name: stack.enter_context(
                services.run_collector(
                    {"OTELCOL_ES_ENDPOINT": elasticsearch.url, "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
                     "OTELCOL_GATEWAY_NAME": name},
                    configs=(services.COLLECTOR_CONFIG, services.GATEWAY_OVERLAY),
                    name=name,
                )
            )
            for name in GATEWAYS
        }  # fmt: skip
        ring = "[" + ", ".join(gateway.otlp_grpc_endpoint for gateway in gateways.values()) + "]"
        agents = tuple(
            stack.enter_context(services.run_collector({"OTELCOL_GATEWAYS": ring},
                                                       configs=(services.GATEWAY_AGENT_CONFIG,), name=f"agent-{i}"))
            for i in (1, 2)
        )  # fmt: skip
        yield Tier(agents, gateways)


def _spans_by_trace(es: services.Elasticsearch, service_names: list[str]) -> dict[str, set[tuple[str, str]]]:
    """trace id -> {(service, gateway)} of every stored span of these services."""
    query = {"terms": {"service.name": service_names}}
    docs = kibana.search(es, "traces-*", query, size=10_000)
    by_trace: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for doc in docs:
        resource = doc["resource"]["attributes"]
        by_trace[doc["trace_id"]].add((resource["service.name"], resource["otelcol.gateway"]))
    return by_trace


def _count(es: services.Elasticsearch, pattern: str, service_names: list[str]) -> int:
    query = {"query": {"terms": {"service.name": service_names}}}
    try:
        return int(services.http_json("POST", f"{es.url}/{pattern}/_count", query)["count"])
    except OSError:
        return -1


def _span_metric_calls(gateway: services.Collector, service_name: str) -> float:
    """Sum of traces_span_metrics_calls_total for one service on one gateway's Prometheus exporter."""
    with urllib.request.urlopen(f"http://{gateway.prometheus_target}/metrics", timeout=10) as response:
        text = response.read().decode()
    needle = f'service_name="{service_name}"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("traces_span_metrics_calls_total{") and needle in line
    )


def _wait_stored(es: services.Elasticsearch, traffic: Traffic, accepted: Accepted) -> None:
    """Wait until the accepted spans and logs are all stored; then there must be exactly that many."""
    names = traffic.service_names
    for pattern, expected in (("traces-*", accepted.spans), ("logs-*", accepted.logs)):

        def stored(pattern: str = pattern, expected: int = expected) -> bool | None:
            return _count(es, pattern, names) >= expected or None

        kibana.eventually(stored, f"{expected} documents in {pattern}", timeout=90)
    time.sleep(2)  # anything late would be a duplicate
    assert (_count(es, "traces-*", names), _count(es, "logs-*", names)) == (accepted.spans, accepted.logs)


def test_traces_crossing_two_agents_land_whole_on_one_gateway_with_exact_span_metrics(
    elasticsearch: services.Elasticsearch, tier: Tier
) -> None:
    """Each trace's spans (two services, two agents) are all stored by one gateway; span-metric sums are exact."""
    traffic = Traffic([agent.otlp_http_url for agent in tier.agents], traces_per_second=20, spans_per_trace=4)
    traffic.start()
    time.sleep(5)
    accepted = traffic.stop()
    assert accepted.failed_exports == 0 and accepted.spans >= 200, accepted
    assert accepted.spans == len(traffic.trace_ids) * traffic.spans_per_trace
    _wait_stored(elasticsearch, traffic, accepted)

    by_trace = _spans_by_trace(elasticsearch, traffic.service_names)
    assert len(by_trace) == len(traffic.trace_ids)
    gateway_of = {}
    for trace_id, seen in by_trace.items():
        assert {service for service, _ in seen} == set(traffic.service_names), trace_id
        (gateway_of[trace_id],) = {gateway for _, gateway in seen}
    # Both gateways took a share (trace ids hash onto the ring).
    shares = {name: list(gateway_of.values()).count(name) for name in GATEWAYS}
    print(f"{len(by_trace)} traces, {accepted.spans} spans, {accepted.logs} logs; traces per gateway {shares}")
    assert set(gateway_of.values()) == set(GATEWAYS)

    # Span metrics: every span counted once, on the gateway that got its trace.
    expected = {name: float(count) for name, count in traffic.spans_per_service().items()}

    def totals() -> dict[str, float] | None:
        sums = {name: sum(_span_metric_calls(g, name) for g in tier.gateways.values()) for name in expected}
        return sums if sums == expected else None

    kibana.eventually(totals, f"span-metric totals {expected}", timeout=20)


def test_a_gateway_restart_loses_nothing_the_agents_held(elasticsearch: services.Elasticsearch, tier: Tier) -> None:
    """With one gateway stopped under traffic and started again, every span and log arrives once, traces whole."""
    stopped = tier.gateways[GATEWAYS[1]]
    assert stopped.node is not None
    stopped.node.stop()
    # New services, so the restarted gateway's span metrics (reset by the restart) count all of theirs.
    traffic = Traffic([agent.otlp_http_url for agent in tier.agents], traces_per_second=20, spans_per_trace=4).start()
    time.sleep(8)
    stopped.node.start()
    time.sleep(3)
    accepted = traffic.stop()
    assert accepted.failed_exports == 0 and accepted.spans >= 400, accepted
    _wait_stored(elasticsearch, traffic, accepted)

    by_trace = _spans_by_trace(elasticsearch, traffic.service_names)
    assert len(by_trace) == len(traffic.trace_ids)
    assert all(len({gateway for _, gateway in seen}) == 1 for seen in by_trace.values())
    print(f"gateway restart: {len(by_trace)} traces, {accepted.spans} spans, {accepted.logs} logs, all stored once")
    assert {gateway for seen in by_trace.values() for _, gateway in seen} == set(GATEWAYS)
    # The restarted gateway's counters start at its restart, before anything of these services reached it.
    expected = {name: float(count) for name, count in traffic.spans_per_service().items()}

    def totals() -> dict[str, float] | None:
        sums = {name: sum(_span_metric_calls(g, name) for g in tier.gateways.values()) for name in expected}
        return sums if sums == expected else None

    kibana.eventually(totals, f"span-metric totals {expected}", timeout=20)
