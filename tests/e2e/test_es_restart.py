"""Elasticsearch stopped and started under traffic: the collector loses nothing it accepted.

Its own Elasticsearch and collector (the shared pair must not be restarted).
The collector's in-memory sending queue holds the bulk requests and the
exporter's retries (collector/otel-collector-config.yaml: connection errors,
429 and 503, 120 times up to 5 s apart) carry them over the outage. Select
with ``-m e2e``; about 2 minutes, most of it Elasticsearch starting twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e import kibana
from tests.e2e.conftest import skip_if_unavailable
from tests.e2e.traffic import Traffic
from tests.infra import services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

OUTAGE_SECONDS = 10.0
"""How long Elasticsearch stays stopped (its restart then adds 20-60 s of not answering)."""


@pytest.fixture(scope="module")
def pipeline() -> Iterator[tuple[services.Elasticsearch, services.Collector]]:
    with skip_if_unavailable(), services.run_elasticsearch() as es:
        with services.run_collector({"OTELCOL_ES_ENDPOINT": es.url}) as collector:
            yield es, collector


def _count(es: services.Elasticsearch, pattern: str, services_: list[str]) -> int:
    query = {"terms": {"service.name": services_}}
    try:
        answer = services.http_json("POST", f"{es.url}/{pattern}/_count", {"query": query})
    except OSError:
        return -1
    return int(answer["count"])


def test_nothing_accepted_is_lost_when_elasticsearch_restarts_under_traffic(
    pipeline: tuple[services.Elasticsearch, services.Collector],
) -> None:
    """Spans and logs sent before, during and after an Elasticsearch stop/start all arrive, each once."""
    es, collector = pipeline
    assert es.node is not None
    traffic = Traffic([collector.otlp_http_url], traces_per_second=10, spans_per_trace=4).start()
    time.sleep(5)
    es.node.stop()
    stopped_at = time.monotonic()
    time.sleep(OUTAGE_SECONDS)
    es.node.start()
    outage = time.monotonic() - stopped_at
    time.sleep(3)
    accepted = traffic.stop()
    assert accepted.failed_exports == 0, f"the collector refused {accepted.failed_exports} exports"
    assert accepted.spans > 1000 and accepted.logs == accepted.spans, accepted

    names = traffic.service_names
    try:
        spans = kibana.eventually(
            lambda: ((n := _count(es, "traces-*", names)) >= accepted.spans and n) or None,
            f"{accepted.spans} spans",
            timeout=120,
        )
        logs = kibana.eventually(
            lambda: ((n := _count(es, "logs-*", names)) >= accepted.logs and n) or None,
            f"{accepted.logs} logs",
            timeout=60,
        )
    except AssertionError as exc:
        stored = (_count(es, "traces-*", names), _count(es, "logs-*", names))
        raise AssertionError(
            f"{exc}; outage {outage:.0f}s, stored {stored}; collector errors:\n{_errors(collector)}"
        ) from None
    time.sleep(2)  # anything late would be a duplicate
    counted = (_count(es, "traces-*", names), _count(es, "logs-*", names))
    print(f"outage {outage:.1f}s: accepted {accepted.spans} spans / {accepted.logs} logs, stored {counted}")
    assert (spans, logs) == (accepted.spans, accepted.logs)
    assert counted == (accepted.spans, accepted.logs)


def _errors(collector: services.Collector, lines: int = 15) -> str:
    text = collector.log_file.read_text(errors="replace").splitlines()
    return "\n".join([line[:400] for line in text if "error" in line.lower() or "drop" in line.lower()][-lines:])
