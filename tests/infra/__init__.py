"""Helpers that run the real telemetry backends for end-to-end tests."""

from tests.infra.processes import ServiceFailed
from tests.infra.services import (
    Collector,
    Elasticsearch,
    Prometheus,
    ServiceUnavailable,
    ensure_collector,
    ensure_elasticsearch,
    ensure_prometheus,
    http_json,
    run_collector,
    run_elasticsearch,
    run_prometheus,
)

__all__ = [
    "Collector",
    "Elasticsearch",
    "Prometheus",
    "ServiceFailed",
    "ServiceUnavailable",
    "ensure_collector",
    "ensure_elasticsearch",
    "ensure_prometheus",
    "http_json",
    "run_collector",
    "run_elasticsearch",
    "run_prometheus",
]
