"""A tiny OTLP/HTTP receiver that counts what arrives: requests, bytes, spans, log records, metric points.

    python benchmarks/sink.py [--port 0]

Prints one JSON line ``{"port": N}`` when it listens on 127.0.0.1, then serves
``POST /v1/{traces,logs,metrics}`` (protobuf, optionally gzip) and
``GET /stats`` (the counts as JSON). Items are counted by decoding with
``opentelemetry-proto`` when it is importable; otherwise only requests and
bytes are counted and the item counts are ``null``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    DECODES = True
except ImportError:  # counting requests and bytes still tells whether anything arrived
    DECODES = False

SIGNALS = ("traces", "logs", "metrics")


def count_items(signal: str, body: bytes) -> int:
    if signal == "traces":
        request = ExportTraceServiceRequest.FromString(body)
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        request = ExportLogsServiceRequest.FromString(body)
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    request = ExportMetricsServiceRequest.FromString(body)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = dict.fromkeys(SIGNALS, 0)
        self.bytes = dict.fromkeys(SIGNALS, 0)
        self.items: dict[str, int | None] = dict.fromkeys(SIGNALS, 0 if DECODES else None)
        self.errors = 0

    def add(self, signal: str, size: int, items: int | None) -> None:
        with self.lock:
            self.requests[signal] += 1
            self.bytes[signal] += size
            current = self.items[signal]
            if current is not None and items is not None:
                self.items[signal] = current + items

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "decodes": DECODES,
                "requests": dict(self.requests),
                "bytes": dict(self.bytes),
                "spans": self.items["traces"],
                "log_records": self.items["logs"],
                "metric_points": self.items["metrics"],
                "errors": self.errors,
            }


def make_handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signal = self.path.rstrip("/").rsplit("/", 1)[-1]
            if signal not in SIGNALS:
                self._reply(404, b"")
                return
            try:
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                counts.add(signal, len(body), count_items(signal, body) if DECODES else None)
            except Exception:
                with counts.lock:
                    counts.errors += 1
                self._reply(400, b"")
                return
            self._reply(200, b"", "application/x-protobuf")

        def do_GET(self) -> None:
            if self.path != "/stats":
                self._reply(404, b"")
                return
            self._reply(200, json.dumps(counts.snapshot()).encode(), "application/json")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Counts()))
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
