"""Fallback load generator for machines without wrk: keep-alive HTTP/1.1 GETs on N connections.

    python benchmarks/loadgen.py URL --connections 32 --duration 10

Prints the same ``LOAD_JSON {...}`` line as ``wrk_report.lua``. It is much
weaker than wrk (one Python process), so req/s measured with it understates
what the server can do; CPU µs per request on the server side stays comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def _connection(host: str, port: int, request: bytes, state: dict, latencies: list[int]) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        state["errors"] += 1
        return
    try:
        while time.monotonic() < state["deadline"]:
            start = time.perf_counter_ns()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter_ns() - start) // 1000)
            if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3")):
                state["status_errors"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        state["errors"] += 1
    finally:
        writer.close()


def _percentile(ordered: list[int], q: float) -> int:
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


async def run(url: str, connections: int, duration: float) -> dict:
    parts = urlsplit(url)
    path = parts.path or "/"
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    state = {"deadline": time.monotonic() + duration, "errors": 0, "status_errors": 0}
    latencies: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(parts.hostname or "127.0.0.1", parts.port or 80, request, state, latencies)
            for _ in range(connections)
        )
    )
    elapsed_us = (time.perf_counter() - started) * 1e6
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "duration_us": round(elapsed_us),
        "p50_us": _percentile(ordered, 50),
        "p90_us": _percentile(ordered, 90),
        "p99_us": _percentile(ordered, 99),
        "max_us": ordered[-1] if ordered else 0,
        "errors": state["errors"],
        "status_errors": state["status_errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    try:
        from uvloop import run as runner
    except ImportError:
        runner = asyncio.run
    result = runner(run(args.url, args.connections, args.duration))
    print("LOAD_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
