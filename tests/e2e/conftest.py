"""The real Elasticsearch and collector the end-to-end modules share (one pair per session).

Every module sends under its own service name or trace ids, so sharing one
pair saves an Elasticsearch start (30-60 s on two cores) per module. Tests
that stop or restart a backend start their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.infra import services


@contextmanager
def skip_if_unavailable() -> Iterator[None]:
    try:
        yield
    except services.ServiceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[services.Elasticsearch]:
    with skip_if_unavailable(), services.run_elasticsearch() as es:
        yield es


@pytest.fixture(scope="session")
def collector(elasticsearch: services.Elasticsearch) -> Iterator[services.Collector]:
    # A 1 s span-metrics flush so the Prometheus checks wait seconds, not 15 s.
    env = {"OTELCOL_ES_ENDPOINT": elasticsearch.url, "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s"}
    with skip_if_unavailable(), services.run_collector(env) as collector:
        yield collector
