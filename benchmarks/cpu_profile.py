"""Where the kit's CPU per request goes: py-spy samples of the kit server under wrk, summed by component.

    pip install py-spy                                  # into the kit's venv
    python benchmarks/cpu_profile.py [--scenario plain] [--framework aiohttp] [--seconds 15] [--svg kit.svg]

Starts the kit variant of ``run.py`` (same app, env, pinning and OTLP sink),
loads it with wrk, samples it with ``py-spy record --format raw --gil`` (only
the thread holding the GIL, so samples approximate CPU, not wall time) and
prints, per component, the share of samples and the estimated µs per request
(the server's utime+stime over the sampled window, split by those shares):
server, app, kit middleware, SDK spans, metrics, logging, and the export
threads (protobuf encoding, HTTP POST). Then the top self-time functions.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from harness import (
    CLIENT_CORE,
    ROOT,
    Server,
    Sink,
    cpu_seconds,
    default_kit_python,
    exit_cleanly_on_sigterm,
    free_port,
    make_variants,
    pinned,
    started,
)
from load import find_wrk
from run import SCENARIOS

Rule = tuple[str, Callable[[str, str], bool]]

# Main thread: a sample belongs to the innermost frame that matches one of these (first rule wins per frame).
MAIN_RULES: list[Rule] = [
    ("kit pages recorder", lambda fn, fi: "otel_asgi_kit/pages" in fi),
    ("logging: kit formatter/handlers", lambda fn, fi: "otel_asgi_kit/logs" in fi or "otel_asgi_kit/redaction" in fi),
    ("logging: OTLP handler + SDK log record", lambda fn, fi: "/_logs/" in fi or "instrumentation/logging" in fi),
    (
        "logging: stdlib (records, stdout write/flush)",
        lambda fn, fi: fi.endswith(("logging/__init__.py", "json/encoder.py")),
    ),
    ("metrics recording", lambda fn, fi: "sdk/metrics" in fi or "otel_asgi_kit/metrics" in fi),
    ("SDK span start/end + processors", lambda fn, fi: "opentelemetry/sdk/trace" in fi or "opentelemetry/trace" in fi),
    ("SDK util/attributes/resources", lambda fn, fi: "opentelemetry/attributes" in fi or "opentelemetry/sdk/" in fi),
    ("OTel context/propagation", lambda fn, fi: "opentelemetry/context" in fi or "opentelemetry/propagat" in fi),
    ("kit middleware", lambda fn, fi: "otel_asgi_kit/asgi" in fi),
    ("kit aiohttp adapter", lambda fn, fi: "otel_asgi_kit/aiohttp" in fi or "otel_asgi_kit/core" in fi),
    ("kit other", lambda fn, fi: "otel_asgi_kit/" in fi),
    ("app (starlette)", lambda fn, fi: "/starlette/" in fi),
    ("server (uvicorn/httptools)", lambda fn, fi: "/uvicorn/" in fi or "httptools" in fi),
    ("app and server (aiohttp)", lambda fn, fi: any(p in fi for p in ("/aiohttp/", "/yarl/", "/multidict/"))),
    ("event loop (asyncio/uvloop)", lambda fn, fi: "/asyncio/" in fi or "uvloop" in fi),
]
# Other threads: labelled by thread name and the first of these found anywhere in the stack.
THREAD_RULES: list[Rule] = [
    ("protobuf encoding", lambda fn, fi: "exporter/otlp/proto/common" in fi or "_pb2" in fi or "/protobuf/" in fi),
    ("HTTP POST", lambda fn, fi: any(p in fi for p in ("/requests/", "/urllib3/", "http/client", "socket.py"))),
]
_FRAME = re.compile(r"(.*) \((.*):(\d+)\)$")


def parse_frame(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    return (m.group(1), m.group(2)) if m else (frame, "")


def _short(path: str) -> str:
    """The path below site-packages, the stdlib or this repo."""
    for marker in ("/site-packages/", f"{ROOT}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    if "/lib/python3" in path:
        return path.split("/lib/python3", 1)[1].split("/", 1)[1]
    return path


def summarize(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    components: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        thread = frames[0].split(": ", 1)[-1]
        body = [parse_frame(f) for f in frames[1:]]
        if body:
            fn, fi = body[-1]
            leaves[f"{fn} ({_short(fi)})"] += n
        if thread != "MainThread":
            label = next((name for name, rule in THREAD_RULES if any(rule(*f) for f in body)), "other")
            components[f"thread {thread}: {label}"] += n
            continue
        label = "main thread: other"
        for fn, fi in reversed(body):
            hit = next((name for name, rule in MAIN_RULES if rule(fn, fi)), None)
            if hit:
                label = hit
                break
        components[label] += n
    return components, leaves, sum(components.values())


def main() -> int:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="plain")
    parser.add_argument("--variant", choices=("kit", "bare"), default="kit", help="bare: the same app uninstrumented")
    parser.add_argument("--framework", choices=("starlette", "aiohttp"), default="starlette")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--kit-python", default=None)
    parser.add_argument("--raw", type=Path, default=None, help="keep the collapsed stacks here")
    parser.add_argument("--svg", type=Path, default=None, help="also record a flame graph (second window)")
    args = parser.parse_args()
    kit_python = args.kit_python or default_kit_python()
    spy = shutil.which("py-spy", path=str(Path(kit_python).parent)) or shutil.which("py-spy")
    wrk = find_wrk(install=True)
    if spy is None or wrk is None:
        print("needs py-spy (pip install py-spy) and wrk", file=sys.stderr)
        return 2
    scenario = SCENARIOS[args.scenario]
    kit = make_variants(kit_python, None, framework=args.framework)[args.variant]
    raw = args.raw or Path(tempfile.mkdtemp(prefix="kit-profile-")) / "kit.raw"
    windows = 2 if args.svg else 1
    with Sink(kit_python) as sink:
        port = free_port()
        server = Server(kit.command(port, access_log=scenario.access_log), kit.env(sink.endpoint, free_port()), port)
        with started(server, "/items/0"):
            seconds = 4 + windows * (args.seconds + 2)
            cmd = [wrk, "-t1", "-c32", f"-d{seconds}s", server.url + scenario.path]
            load = subprocess.Popen(pinned(CLIENT_CORE, cmd), stdout=subprocess.PIPE, text=True)
            time.sleep(4)  # warm-up
            record = [spy, "record", "-p", str(server.pid), "--duration", str(args.seconds), "--rate", str(args.rate)]
            # --gil: only the thread holding the GIL is sampled, so a thread waiting for the GIL (after a
            # write, a stat, a socket read) is not counted as busy: samples approximate CPU, not wall time.
            record += ["--nonblocking", "--threads", "--gil", "--full-filenames"]
            cpu_before = cpu_seconds(server.pid)
            spans_before = sink.stats()["spans"] or 0
            subprocess.run(pinned(CLIENT_CORE, [*record, "--format", "raw", "-o", str(raw)]), capture_output=True)
            cpu = cpu_seconds(server.pid) - cpu_before
            # kit: one span per request (exports lag slightly); bare: wrk's rate over the window (below)
            requests = (sink.stats()["spans"] or 0) - spans_before
            if args.svg:
                subprocess.run(pinned(CLIENT_CORE, [*record, "-o", str(args.svg)]), capture_output=True)
            wrk_out = load.communicate()[0]
    components, leaves, total = summarize(raw)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
    if args.variant == "bare" and rps:
        requests = int(float(rps.group(1)) * args.seconds)
    per_req = cpu * 1e6 / requests if requests else 0.0
    print(f"{args.variant}, scenario {scenario.name}: {rps.group(1) if rps else '?'} req/s under wrk -c32")
    print(f"server CPU {cpu:.2f} s over {args.seconds} s, ~{requests} requests: {per_req:.0f} µs CPU/request")
    print(f"{total} samples (py-spy --gil: the thread holding the GIL); raw stacks: {raw}")
    print("\n   share  µs/req  component")
    for name, n in components.most_common():
        print(f"  {n / total:6.1%}  {n / total * per_req:6.0f}  {name}")
    print("\n   share  µs/req  top self time")
    for name, n in leaves.most_common(25):
        print(f"  {n / total:6.1%}  {n / total * per_req:6.0f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
