"""Environment parsing: one typed Settings, bad values named and survived."""

from __future__ import annotations

import pytest

from otel_asgi_kit.settings import VARS, load_settings


def test_defaults_suit_a_container() -> None:
    """With no environment: OTLP/HTTP to the local collector, Prometheus on 9464."""
    s = load_settings({})
    assert s.problems == ()
    assert s.metrics_exporters == ("prometheus",)
    assert s.traces_exporters == ("otlp",) and s.logs_exporters == ("otlp",)
    assert s.otlp["traces"].endpoint == "http://localhost:4318/v1/traces"
    assert s.otlp["logs"].endpoint == "http://localhost:4318/v1/logs"
    assert s.admin_port == 9464
    assert s.sampler == "parentbased_always_on"
    assert s.sources["OTEL_METRICS_EXPORTER"] == "kit default"
    assert s.sources["OTEL_TRACES_EXPORTER"] == "default"


def test_user_values_win() -> None:
    """Explicit values replace kit defaults, and per-signal values replace general ones."""
    s = load_settings(
        {
            "OTEL_METRICS_EXPORTER": "prometheus,otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:9999/custom",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret,x-tenant=a%20b",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_PYTHON_EXCLUDED_URLS": "^/internal",
        }
    )
    assert s.problems == ()
    assert s.metrics_exporters == ("prometheus", "otlp")
    assert s.otlp["metrics"].endpoint == "http://collector:4318/v1/metrics"
    assert s.otlp["logs"].endpoint == "http://logs:9999/custom"
    assert s.otlp["traces"].protocol == "grpc"
    assert s.otlp["traces"].endpoint == "http://collector:4317"
    assert s.otlp["logs"].headers == {"api-key": "s3cret", "x-tenant": "a b"}
    assert s.otlp["logs"].timeout_s == 2.5
    assert (s.sampler, s.sampler_arg) == ("traceidratio", 0.25)
    assert s.excluded_urls == ("^/internal",)
    assert s.sources["OTEL_METRICS_EXPORTER"] == "env"


def test_bad_values_are_named_and_defaulted() -> None:
    """Each bad value gives one line with the variable, the value and what was expected."""
    s = load_settings(
        {
            "OTEL_TRACES_SAMPLER_ARG": "abc",
            "OTEL_BSP_MAX_QUEUE_SIZE": "-5",
            "OTEL_METRICS_EXPORTER": "prometheus,statsd",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "99999",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",
            "OTEL_SDK_DISABLED": "maybe",
        }
    )
    assert len(s.problems) == 6
    joined = "\n".join(s.problems)
    assert "OTEL_TRACES_SAMPLER_ARG='abc' is not a number between 0 and 1" in joined
    assert "OTEL_BSP_MAX_QUEUE_SIZE='-5' is not a whole number" in joined
    assert "OTEL_METRICS_EXPORTER='prometheus,statsd'" in joined
    assert "OTEL_EXPORTER_PROMETHEUS_PORT='99999'" in joined
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' is not an http:// or https:// URL" in joined
    assert "OTEL_SDK_DISABLED='maybe' is not true or false" in joined
    assert s.sampler_arg == 1.0
    assert s.span_batch.max_queue_size == 2048
    assert s.metrics_exporters == ("prometheus",)
    assert s.admin_port == 9464
    assert s.otlp["traces"].endpoint == "http://localhost:4318/v1/traces"
    assert s.sdk_disabled is False


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:", "http://127.0.0.1:0", "http://[::1]:", "https://h:99999"])
def test_an_endpoint_with_an_empty_or_impossible_port_is_named(endpoint: str) -> None:
    """``http://host:`` would quietly export to the default port; it is refused with the variable named."""
    s = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert s.problems == (
        f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} is not an http:// or https:// URL with a valid port (1-65535) "
        "after ':'; ignoring it",
    )
    assert s.otlp["traces"].endpoint == "http://localhost:4318/v1/traces"
    assert load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}).problems == ()


def test_secrets_are_never_printed() -> None:
    """A malformed OTLP header value is reported without the value itself."""
    s = load_settings(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization Bearer-hunter2",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "broken-hunter3",
        }
    )
    assert len(s.problems) == 2
    assert all("hunter" not in line for line in s.problems)
    assert "OTEL_EXPORTER_OTLP_HEADERS=<hidden>" in s.problems[0]
    assert "hunter2" not in repr(s)


def test_batch_larger_than_queue_is_capped() -> None:
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE above the queue size is clamped and reported."""
    s = load_settings({"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "500"})
    assert s.span_batch.max_export_batch_size == 100
    assert len(s.problems) == 1 and "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=500" in s.problems[0]


def test_every_var_default_parses() -> None:
    """Each documented default is itself a valid value of its variable."""
    for var in VARS:
        if var.default:
            var.parse(var.default)
    assert len({v.name for v in VARS}) == len(VARS)


def test_every_declared_setting_is_used_by_the_kit() -> None:
    """Each setting field (groups included) is read somewhere in the package: none is declared for nothing."""
    import dataclasses
    import re
    from pathlib import Path

    from otel_asgi_kit import setting_groups, settings

    package = Path(settings.__file__).parent
    declaring = {"setting_groups.py", "declaring.py", "env_table.py"}  # settings.py derives targets: a read
    code = "\n".join(p.read_text() for p in package.rglob("*.py") if p.name not in declaring)
    found = ("problems", "sources", "rejected")  # what loading found, not variables
    fields = [f.name for f in dataclasses.fields(settings.Settings) if f.name not in found]
    for group in (setting_groups.OtlpOverrides, setting_groups.BatchLimits, setting_groups.SpoolSettings):
        fields += [f.name for f in dataclasses.fields(group)]
    unused = [name for name in fields if not re.search(rf"\.{name}\b", code)]
    assert unused == []
