"""µs per server span to end it: the SDK's ``span.end()`` against the kit's compiled span end (``sdk.span_end``).

    .venv/bin/python benchmarks/span_end.py [--spans 3000] [--rounds 7]

The kit's own span processors, as ``configure()`` builds them: the encoding
batch processor (its exporter keeps what it gets, nothing is sent) and the
trace pages' recorder; with ``--tail`` behind the tail sampler (10 %, slow
at 1 s). Each round starts ``--spans`` server spans with the kit's starter,
then ends them all one way, then the same number the other way (alternating
which goes first), and reports the main thread's wall time per span, the
minimum over rounds (a shared machine only adds time). The export thread's
work is not in it. Needs ``otel-asgi-kit-accel`` (``pip install ./accel``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_asgi_kit.export.tail_sampling import TailSampler
from otel_asgi_kit.pages.recorder import TraceRecorder
from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import accel, span_end
from otel_asgi_kit.sdk.encoded import EncodingSpanProcessor
from otel_asgi_kit.sdk.server_span import ServerSpanStarter


class _Keep(SpanExporter):
    def export(self, batch: Any) -> Any:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _pipeline(tail: bool) -> tuple[TracerProvider, ServerSpanStarter, Any]:
    provider = TracerProvider(resource=StableResource({"service.name": "bench"}))
    batch = EncodingSpanProcessor(_Keep(), max_queue_size=8192, max_export_batch_size=512)
    provider.add_span_processor(TailSampler([batch], 0.1, 1.0) if tail else batch)
    provider.add_span_processor(TraceRecorder())
    starter = ServerSpanStarter(provider.get_tracer("otel_asgi_kit", "0.1.0"))
    ender = span_end.compiled_ender(starter)
    if ender is None:
        raise SystemExit("the compiled span end is not available here (pip install ./accel)")
    return provider, starter, ender


def _spans(starter: ServerSpanStarter, n: int) -> list[Any]:
    spans = []
    for i in range(n):
        span: Any = starter.start("GET", None, {"http.request.method": "GET", "url.path": f"/items/{i}"})
        span.set_kit_attributes({"http.route": "/items/{id}", "http.response.status_code": 200}, "GET /items/{id}")
        spans.append(span)
    return spans


def _time(starter: ServerSpanStarter, ender: Any, n: int) -> float:
    spans = _spans(starter, n)
    start = time.perf_counter()
    if ender is None:
        for span in spans:
            span.end(span._start_time + 1000)
    else:
        for span in spans:
            ender(span, span._start_time + 1000)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tail", action="store_true", help="behind the tail sampler (10 %%, slow at 1 s)")
    args = parser.parse_args()
    accel.use(True)
    if not accel.compiled():
        raise SystemExit(f"the compiled writers are not on: {accel.status()}")
    provider, starter, ender = _pipeline(args.tail)
    found: dict[str, list[float]] = {"span.end()": [], "compiled": []}
    for round_no in range(args.rounds):
        order = [("span.end()", None), ("compiled", ender)]
        for name, how in order if round_no % 2 == 0 else order[::-1]:
            found[name].append(_time(starter, how, args.spans))
    provider.shutdown()
    label = "behind the tail sampler" if args.tail else "encoding processor + trace pages"
    print(f"µs per span ended ({label}; {args.spans} spans, minimum of {args.rounds} rounds):")
    for name, values in found.items():
        print(f"  {name:11s} {min(values):5.2f}  (rounds: {' '.join(f'{v:.2f}' for v in values)})")
    print(f"  compiled ÷ span.end(): {min(found['compiled']) / min(found['span.end()']):.2f}")


if __name__ == "__main__":
    main()
