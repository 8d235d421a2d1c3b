"""In-process A/B: the kit's CPU per request without a server, for savings smaller than run.py's noise.

    python benchmarks/inprocess.py [--base-src DIR | --base-kit-python PY] [--tail] [--path /items/1] [--rounds 5]
                                   [--framework aiohttp]

Each run is a fresh interpreter pinned to the server core that sends
``--requests`` requests straight into ``app.py``'s ASGI callable (no
sockets, no HTTP parsing) and reports its process CPU per request (all
threads: the export threads too, with the OTLP sink of ``sink.py`` on the
other core). Variants, interleaved round by round: ``bare`` (the app alone),
``kit`` (under ``opentelemetry-instrument``, the benchmark's kit settings)
and, with ``--base-src``, ``kit-base``: the same venv with another checkout's
``otel_asgi_kit`` first on PYTHONPATH (only while the installed compiled part
still fits that checkout), or with ``--base-kit-python`` another venv's own
install; ``--tail`` adds ``kit-tail`` (``run.py``'s tail-sampling settings).
A kit run whose ``configure()`` failed is an error, not a figure. Runs start in a temporary directory,
because ``opentelemetry-instrument`` puts its working directory first on
PYTHONPATH; each kit run reports which ``otel_asgi_kit`` it imported, and a
kit-base that imported the kit's own file is an error. The minimum over
rounds is the figure (noise on a shared machine only adds time).

With ``--framework aiohttp`` the requests go to ``aiohttp_app.py`` instead:
aiohttp's own ``RequestHandler`` (from ``AppRunner``, access log off) on a
transport that keeps nothing, fed the request's bytes with
``data_received`` — aiohttp's parser, routing, response and keep-alive loop
all run, the kit through its aiohttp hooks; only the socket is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median
from typing import Any

from harness import (
    BENCH,
    SERVER_CORE,
    TAIL_ENV,
    Sink,
    base_env,
    default_kit_python,
    exit_cleanly_on_sigterm,
    free_port,
    pinned,
)

_MARK = "inprocess:"
DURATION_METRIC = "http.server.request.duration"


WARM_UP = 2000  # requests before the measured ones: caches, first export batches


def _kit_file() -> str:
    """The ``otel_asgi_kit`` this kit run imported (configured by ``opentelemetry-instrument``), or "-" for bare."""
    if os.environ.get("INPROCESS_KIT") != "1":
        return "-"
    import otel_asgi_kit
    from otel_asgi_kit import _state

    if _state.current_instrumentation() is None:  # configure() failed: this run would measure nothing
        raise SystemExit("the kit did not configure itself in this run (see the lines above)")
    return otel_asgi_kit.__file__ or "-"


async def _cpu_per_request(one: Callable[[], Awaitable[None]], requests: int) -> float:
    """µs of process CPU (all threads, at clock_gettime's resolution) per call of ``one``, after the warm-up."""
    for _ in range(WARM_UP):
        await one()
    before = time.process_time()
    for _ in range(requests):
        await one()
    return (time.process_time() - before) / requests * 1e6


def child(path: str, requests: int) -> None:
    """The measured loop, in the child interpreter."""
    sys.path.insert(0, str(BENCH))
    import app as bench

    kit_file = _kit_file()
    application: Any = bench.app
    if kit_file != "-":
        import otel_asgi_kit

        application = otel_asgi_kit.instrument(application)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"inprocess")],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def one() -> None:
        await application(dict(scope), receive, send)

    cpu_us = asyncio.run(_cpu_per_request(one, requests))
    print(f"{_MARK} {cpu_us:.2f} {kit_file}", file=sys.stderr, flush=True)


class _NullTransport:
    """The transport of one keep-alive connection: writes are dropped; the first one of a response wakes the client."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def child_aiohttp(path: str, requests: int) -> None:
    """The measured loop for aiohttp.web, in the child interpreter."""
    sys.path.insert(0, str(BENCH))
    kit_file = _kit_file()
    import aiohttp_app
    from aiohttp import web

    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: inprocess\r\n\r\n".encode()

    async def main() -> float:
        runner = web.AppRunner(aiohttp_app.make_app(), access_log=None)
        await runner.setup()
        protocol = runner.server()
        transport = _NullTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()

        async def one() -> None:
            transport.waiter = loop.create_future()
            protocol.data_received(raw)
            await transport.waiter
            await asyncio.sleep(0)  # the server's task ends the request in the step that wrote it

        spent = await _cpu_per_request(one, requests)
        if kit_file != "-":  # the kit's hooks really recorded these requests (not aiohttp alone, measured as "kit")
            from otel_asgi_kit import _state

            inst = _state.current_instrumentation()
            http = inst.http if inst is not None else None
            data = [m.data for m in (http.collect() if http is not None else []) if m.name == DURATION_METRIC]
            counted = sum(point.count for d in data for point in d.data_points)  # type: ignore[attr-defined]
            if counted < requests:
                raise SystemExit(f"the kit counted {counted} of {requests + WARM_UP} requests in this run")
        protocol.connection_lost(None)
        await runner.cleanup()
        return spent

    cpu_us = asyncio.run(main())
    print(f"{_MARK} {cpu_us:.2f} {kit_file}", file=sys.stderr, flush=True)


def _run(
    python: str, kit: bool, env: dict[str, str], path: str, requests: int, cwd: str, framework: str
) -> tuple[float, str]:
    script = [python, str(Path(__file__).resolve()), "--child", "--path", path, "--requests", str(requests)]
    script += ["--framework", framework]
    cmd = [str(Path(python).parent / "opentelemetry-instrument"), *script] if kit else script
    done = subprocess.run(
        pinned(SERVER_CORE, cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    found = [line for line in done.stderr.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    _, value, kit_file = found[-1].split(" ", 2)
    return float(value), kit_file


def main() -> int:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/items/1", help="/items/1 (plain) or /log/1 (one log line)")
    parser.add_argument("--framework", choices=("starlette", "aiohttp"), default="starlette")
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kit-python", default=None)
    parser.add_argument("--base-src", default=None, help="a checkout of another revision (its otel_asgi_kit/)")
    parser.add_argument(
        "--base-kit-python",
        default=None,
        help="instead of --base-src: the python of a venv with another revision installed (its own accel/ too)",
    )
    parser.add_argument(
        "--tail", action="store_true", help="add kit-tail: the kit with run.py's tail-sampling settings"
    )
    args = parser.parse_args()
    if args.child:
        (child_aiohttp if args.framework == "aiohttp" else child)(args.path, args.requests)
        return 0
    python = args.kit_python or default_kit_python()
    if args.base_src and not (Path(args.base_src) / "otel_asgi_kit" / "__init__.py").is_file():
        print(f"error: {args.base_src} has no otel_asgi_kit/", file=sys.stderr)
        return 2
    results: dict[str, list[float]] = {"bare": [], "kit": []}
    if args.base_src and args.base_kit_python:
        print("error: --base-src or --base-kit-python, not both", file=sys.stderr)
        return 2
    if args.base_src or args.base_kit_python:
        results["kit-base"] = []
    if args.tail:
        results["kit-tail"] = []
    with Sink(python) as sink, tempfile.TemporaryDirectory(prefix="inprocess-") as cwd:
        kit_env = {
            **base_env(),
            "INPROCESS_KIT": "1",
            "OTEL_SERVICE_NAME": "bench-kit",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        }
        files: dict[str, str] = {}
        for round_no in range(1, args.rounds + 1):
            for name in results:
                env = {**kit_env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port())} if name != "bare" else base_env()
                if name == "kit-base" and args.base_src:
                    env["PYTHONPATH"] = str(Path(args.base_src).resolve())
                if name == "kit-tail":
                    env.update(TAIL_ENV)
                runs_with = args.base_kit_python if name == "kit-base" and args.base_kit_python else python
                value, kit_file = _run(runs_with, name != "bare", env, args.path, args.requests, cwd, args.framework)
                results[name].append(value)
                files[name] = kit_file
                print(f"round {round_no} {name:8s} {value:7.1f} µs CPU/request  ({kit_file})", flush=True)
            time.sleep(0.2)
    if "kit-base" in files and files["kit-base"] == files["kit"]:
        print(f"error: kit-base imported the kit's own {files['kit']}", file=sys.stderr)
        return 2
    bare = min(results["bare"])
    heading = f"{args.framework} {args.path}, {args.requests} requests per run, {args.rounds} rounds"
    print(f"\n{heading} (minimum; median in brackets):")
    for name, values in results.items():
        extra = "" if name == "bare" else f"  overhead +{min(values) - bare:.1f} µs"
        print(f"  {name:8s} {min(values):7.1f} µs ({median(values):.1f}){extra}")
    if "kit-base" in results:
        now, before = min(results["kit"]) - bare, min(results["kit-base"]) - bare
        print(f"  kit overhead ÷ kit-base overhead: {now / before:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
