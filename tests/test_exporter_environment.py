"""The OTLP/HTTP exporters read proxy, CA-bundle and netrc settings for the collector once, with the answers
``requests`` itself gives on every POST (``trust_env``), and still deliver."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from otel_asgi_kit.sdk.http_transport import HTTPClientTransport
from otel_asgi_kit.sdk.otlp_http import DirectLogExporter, DirectSpanExporter
from tests.support.otlp_receiver import OtlpReceiver, wait_for


@pytest.fixture(autouse=True)
def _machine_settings_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy and CA settings out of the way (in requests, lowercase names win)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "curl_ca_bundle", "requests_ca_bundle"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _session(exporter: object) -> requests.Session:
    transport = exporter._client._transport  # type: ignore[attr-defined]
    if isinstance(transport, HTTPClientTransport):
        transport = transport._fallback  # the requests transport it replaced, with the settings read once
    session = transport._session
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
        assert exporter.http_client_transport  # nothing requests would add: http.client sends
    else:
        assert expected["proxies"]["http"] == "http://proxy.example:3128"
        assert expected_auth == ("otel", "s3cret")
        assert not exporter.http_client_transport  # a proxy and netrc credentials: requests keeps sending


def test_exports_still_arrive(receiver: OtlpReceiver) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = DirectSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
    logs = DirectLogExporter(endpoint=f"{receiver.endpoint}/v1/logs")
    assert exporter.environment_read_once and logs.environment_read_once
    assert exporter.http_client_transport and logs.http_client_transport
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("sent").end()
    assert [s.name for s in wait_for(lambda: receiver.spans())] == ["sent"]
    provider.shutdown()
    logs.shutdown()


def _spans_to(
    endpoint: str, names: list[str], timeout: float = 5, **kwargs: object
) -> tuple[DirectSpanExporter, list[bool]]:
    from opentelemetry.sdk.trace import TracerProvider

    exporter = DirectSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=timeout, **kwargs)  # type: ignore[arg-type]
    results = []
    tracer = TracerProvider().get_tracer("t")
    for name in names:
        span = tracer.start_span(name)
        span.end()
        results.append(exporter.export([span]).name == "SUCCESS")  # type: ignore[list-item]
    return exporter, results


def test_one_connection_is_kept_and_a_closed_one_is_reopened() -> None:
    """Against an HTTP/1.1 collector the POSTs share one connection; once the collector closed it (idle),
    the next export opens a new one (the stock client's one immediate retry) and arrives."""
    import time

    with OtlpReceiver(keep_alive=1.5) as receiver:
        exporter, results = _spans_to(receiver.endpoint, ["a", "b"])
        assert exporter.http_client_transport and results == [True, True]
        assert receiver.connections == 1
        time.sleep(3.0)  # the collector closes the idle connection
        assert exporter.export(_ended("c")).name == "SUCCESS"  # type: ignore[arg-type]
        assert receiver.connections == 2
        assert [s.name for s in receiver.spans()] == ["a", "b", "c"]
        exporter.shutdown()


def _ended(name: str) -> list[object]:
    from opentelemetry.sdk.trace import TracerProvider

    span = TracerProvider().get_tracer("t").start_span(name)
    span.end()
    return [span]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def test_https_verifies_against_the_configured_certificate(certificate: tuple[str, str], tmp_path: Path) -> None:
    """``OTEL_EXPORTER_OTLP_CERTIFICATE`` (the exporter's ``certificate_file``) is the CA the POST verifies
    against: with it the spans arrive; without it (the default CA bundle) the export fails, never unverified."""
    with OtlpReceiver(tls=certificate) as receiver:
        trusted, results = _spans_to(receiver.endpoint, ["over tls"], certificate_file=certificate[0])
        assert trusted.http_client_transport and results == [True]
        assert [s.name for s in receiver.spans()] == ["over tls"]
        untrusted, refused = _spans_to(receiver.endpoint, ["refused"], timeout=1)  # retried until then
        assert untrusted.http_client_transport and refused == [False]
        assert [s.name for s in receiver.spans()] == ["over tls"]
        trusted.shutdown()
        untrusted.shutdown()


def test_an_error_status_is_the_clients_to_handle() -> None:
    """A 400 from the collector: the stock client's answer (no retry, failure), through the new transport."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = []

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            calls.append(self.path)
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exporter, results = _spans_to(f"http://127.0.0.1:{server.server_address[1]}", ["x"])
        assert exporter.http_client_transport and results == [False] and calls == ["/v1/traces"]
        exporter.shutdown()
    finally:
        server.shutdown()
        server.server_close()
