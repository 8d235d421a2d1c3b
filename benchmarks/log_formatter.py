"""CPU per log record: the kit's ECS JSON formatter against ecs-logging and python-json-logger.

    .venv/bin/python benchmarks/log_formatter.py

Same uvicorn access record for each, inside a recording span (the kit adds
trace ids; the others do not). Interleaved: 7 rounds, each formatter 20,000
times per round, best round kept. Prints µs per record.
"""

from __future__ import annotations

import logging
import timeit

from opentelemetry.sdk.trace import TracerProvider

from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter


def formatters() -> dict[str, logging.Formatter]:
    found: dict[str, logging.Formatter] = {"otel_asgi_kit EcsJsonFormatter": EcsJsonFormatter("shop")}
    try:
        import ecs_logging

        found["ecs-logging StdlibFormatter"] = ecs_logging.StdlibFormatter(
            exclude_fields=["process", "log.origin", "log.original"]
        )
    except ImportError:
        pass
    try:
        from pythonjsonlogger.json import JsonFormatter

        found["python-json-logger JsonFormatter"] = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    except ImportError:
        pass
    return found


def main() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/items/1", "1.1", 200),
        None,
    )
    tracer = TracerProvider().get_tracer("bench")
    n = 20_000
    candidates = formatters()
    best = dict.fromkeys(candidates, float("inf"))
    with tracer.start_as_current_span("request"):
        for _ in range(7):
            for name, formatter in candidates.items():
                elapsed = timeit.timeit(lambda f=formatter: f.format(record), number=n)
                best[name] = min(best[name], elapsed)
    for name, seconds in best.items():
        print(f"{name:36s} {seconds / n * 1e6:6.1f} µs/record")


if __name__ == "__main__":
    main()
