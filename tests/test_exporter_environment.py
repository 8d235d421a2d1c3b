"""The OTLP/HTTP exporters read proxy, CA-bundle and netrc settings for the collector once, with the answers
``requests`` itself gives on every POST (``trust_env``), and still deliver."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from otel_asgi_kit.sdk.otlp_http import DirectLogExporter, DirectSpanExporter
from tests.support.otlp_receiver import OtlpReceiver, wait_for


@pytest.fixture(autouse=True)
def _machine_settings_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy and CA settings out of the way (in requests, lowercase names win)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "curl_ca_bundle", "requests_ca_bundle"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _session(exporter: object) -> requests.Session:
    session = exporter._client._transport._session  # type: ignore[attr-defined]
    assert isinstance(session, requests.Session)
    return session


@pytest.mark.parametrize("endpoint", ["http://collector.example:4318/v1/traces", "http://10.1.2.3:4318/v1/traces"])
def test_settings_are_what_requests_reads_per_request(
    endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector.example login otel password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    stock = requests.Session()
    expected = stock.merge_environment_settings(endpoint, {}, None, None, None)
    expected_auth = requests.utils.get_netrc_auth(endpoint)

    exporter = DirectSpanExporter(endpoint=endpoint)
    try:
        assert exporter.environment_read_once
        session = _session(exporter)
        assert session.trust_env is False  # no environment scan per POST
        assert session.proxies == expected["proxies"]
        assert session.verify == expected["verify"] == str(tmp_path / "ca.pem")
        assert session.auth == expected_auth
        # With trust_env off, what a POST would use is what the environment gave.
        assert session.merge_environment_settings(endpoint, {}, None, None, None) == expected
    finally:
        exporter.shutdown()
    if "10.1.2.3" in endpoint:
        assert expected["proxies"] == {} and expected_auth is None  # NO_PROXY matched; no netrc machine
    else:
        assert expected["proxies"]["http"] == "http://proxy.example:3128"
        assert expected_auth == ("otel", "s3cret")


def test_exports_still_arrive(receiver: OtlpReceiver) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = DirectSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
    logs = DirectLogExporter(endpoint=f"{receiver.endpoint}/v1/logs")
    assert exporter.environment_read_once and logs.environment_read_once
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("sent").end()
    assert [s.name for s in wait_for(lambda: receiver.spans())] == ["sent"]
    provider.shutdown()
    logs.shutdown()
